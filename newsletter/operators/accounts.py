"""Console operators: accounts with argon2id password hashes, and signing in.

The one writer of the ``operator`` table. A wrong password and an unknown account take the
same time and give the same answer (``authenticate`` returns None for both).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from newsletter.clock import utcnow
from newsletter.db.dialect import sqlite_write_lock
from newsletter.db.models import Operator, Role, new_uid
from newsletter.errors import InvalidAddress, OperatorError
from newsletter.extensions import db
from newsletter.readers.addresses import normalize

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a denial of service

# argon2-cffi's defaults (RFC 9106's second recommended profile): 64 MiB, 3 passes.
_hasher = PasswordHasher()
# Verified when the account is unknown, so that the answer takes as long as for a known one.
_DUMMY_HASH = _hasher.hash(new_uid())


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"the password must have at most {MAX_PASSWORD} characters")


def _address(email: str) -> str:
    try:
        return normalize(email)
    except InvalidAddress as exc:
        raise OperatorError(f"{email!r} is not an address: {exc.reason}") from None


def add(email: str, role: str, password: str) -> Operator:
    """A new operator account, in the caller's transaction."""
    if role not in list(Role):
        raise OperatorError(f"the role must be one of {', '.join(Role)}")
    address = _address(email)
    check_password(password)
    if by_email(address) is not None:
        raise OperatorError(f"{address} already has an account")
    operator = Operator(email=address, role=role, password_hash=_hasher.hash(password))
    db.session.add(operator)
    db.session.flush()
    return operator


def set_password(operator: Operator, password: str) -> None:
    """A new password; every session signed in with the old one ends."""
    check_password(password)
    operator.password_hash = _hasher.hash(password)
    operator.session_key = new_uid()


def end_sessions(operator: Operator) -> None:
    """End every session of the account, on every device (signing out does this: a copy of
    the session cookie must not outlive it)."""
    operator.session_key = new_uid()


def set_role(operator: Operator, role: str) -> None:
    if role not in list(Role):
        raise OperatorError(f"the role must be one of {', '.join(Role)}")
    if operator.role == Role.OWNER and role != Role.OWNER and _owners_locked() <= 1:
        raise OperatorError("the last owner cannot stop being an owner")
    operator.role = role


def disable(operator: Operator) -> None:
    """Close the account (kept for the audit log); its sessions end."""
    if operator.role == Role.OWNER and operator.disabled_at is None and _owners_locked() <= 1:
        raise OperatorError("the last owner cannot be removed")
    operator.disabled_at = utcnow()
    operator.session_key = new_uid()


_ACTIVE_OWNER = (Operator.role == Role.OWNER, Operator.disabled_at.is_(None))


def owners() -> int:
    return int(
        db.session.scalar(select(func.count()).select_from(Operator).where(*_ACTIVE_OWNER)) or 0
    )


def _owners_locked() -> int:
    """The active owners, counted with their rows locked until the caller's transaction
    ends: two owners removing (or demoting) each other at the same moment are taken one
    after the other, and the second finds the first's change, so one owner always stays."""
    sqlite_write_lock("operator")
    return len(
        db.session.scalars(select(Operator.id).where(*_ACTIVE_OWNER).with_for_update()).all()
    )


def by_email(email: str) -> Operator | None:
    return db.session.scalar(select(Operator).where(Operator.email == email))


def by_id(operator_id: int) -> Operator | None:
    return db.session.get(Operator, operator_id)


def listing() -> list[Operator]:
    return list(db.session.scalars(select(Operator).order_by(Operator.email)))


def check(operator: Operator, password: str) -> bool:
    """Whether ``password`` is this operator's (asked again before a new one is set)."""
    try:
        return bool(_hasher.verify(operator.password_hash, password[:MAX_PASSWORD]))
    except (VerificationError, InvalidHashError):
        return False


def authenticate(email: str, password: str) -> Operator | None:
    """The active operator with this address and password, or None (the same for any miss)."""
    try:
        address = normalize(email)
    except InvalidAddress:
        address = None
    operator = by_email(address) if address else None
    stored = operator.password_hash if operator is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if operator is None or operator.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    operator.last_sign_in_at = utcnow()
    return operator
