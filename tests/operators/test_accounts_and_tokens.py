"""Console accounts and API tokens, through the commands an operator types."""

from __future__ import annotations

import re
import threading
import time

from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from newsletter.db.models import ApiToken, AuditEvent, Operator
from newsletter.errors import OperatorError
from newsletter.extensions import db
from newsletter.operators import accounts, api_tokens

PASSWORD = "correct horse battery"


def _audit(app: Flask) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(row.actor.split(":")[0], row.action, row.target) for row in rows]


def test_an_operator_added_from_the_command_line_can_sign_in_with_that_password_only(
    app: Flask, runner: FlaskCliRunner
) -> None:
    result = runner.invoke(
        args=["operators", "add", "Ann@Example.com", "--role", "editor"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "ann@example.com can sign in as editor at http" in result.output
    with app.app_context():
        operator = db.session.scalars(select(Operator)).one()
        assert operator.password_hash.startswith("$argon2id$")
        assert PASSWORD not in operator.password_hash
        assert accounts.authenticate("ann@example.com", PASSWORD) is not None
        assert accounts.authenticate("ANN@example.com", PASSWORD) is not None
        assert accounts.authenticate("ann@example.com", PASSWORD + "!") is None
        assert accounts.authenticate("bob@example.com", PASSWORD) is None
        assert accounts.authenticate("not an address", PASSWORD) is None
    assert _audit(app) == [("cli", "operator.add", "ann@example.com")]


def test_a_short_password_or_a_second_account_for_an_address_is_refused_with_a_message(
    app: Flask, runner: FlaskCliRunner
) -> None:
    short = runner.invoke(
        args=["operators", "add", "ann@example.com", "--role", "owner", "--password", "short"]
    )
    assert short.exit_code != 0
    assert "at least 12 characters" in short.output
    assert "Traceback" not in short.output
    ok = ["operators", "add", "ann@example.com", "--role", "owner", "--password", PASSWORD]
    assert runner.invoke(args=ok).exit_code == 0
    again = runner.invoke(args=ok)
    assert again.exit_code != 0 and "already has an account" in again.output
    wrong_role = runner.invoke(
        args=["operators", "add", "c@example.com", "--role", "admin", "--password", PASSWORD]
    )
    assert wrong_role.exit_code == 2 and "admin" in wrong_role.output


def test_the_last_owner_cannot_be_removed_and_a_removed_account_cannot_sign_in(
    app: Flask, runner: FlaskCliRunner
) -> None:
    for email, role in (("ann@example.com", "owner"), ("bob@example.com", "editor")):
        runner.invoke(args=["operators", "add", email, "--role", role, "--password", PASSWORD])
    last = runner.invoke(args=["operators", "remove", "ann@example.com"])
    assert last.exit_code != 0 and "last owner" in last.output
    removed = runner.invoke(args=["operators", "remove", "bob@example.com"])
    assert removed.exit_code == 0, removed.output
    with app.app_context():
        assert accounts.authenticate("bob@example.com", PASSWORD) is None
        assert accounts.authenticate("ann@example.com", PASSWORD) is not None
    listing = runner.invoke(args=["operators", "list"]).output
    assert re.search(r"bob@example.com\s+removed", listing)
    assert re.search(r"ann@example.com\s+owner", listing)


def test_a_new_password_ends_the_sessions_signed_with_the_old_one(
    app: Flask, runner: FlaskCliRunner
) -> None:
    runner.invoke(
        args=["operators", "add", "ann@example.com", "--role", "owner", "--password", PASSWORD]
    )
    with app.app_context():
        before = db.session.scalars(select(Operator)).one().session_key
    new = PASSWORD + " staple"
    result = runner.invoke(args=["operators", "password", "ann@example.com", "--password", new])
    assert result.exit_code == 0, result.output
    with app.app_context():
        operator = db.session.scalars(select(Operator)).one()
        assert operator.session_key != before
        assert accounts.authenticate("ann@example.com", PASSWORD) is None
        assert accounts.authenticate("ann@example.com", new) is not None


def test_first_owner_is_created_once_and_prints_how_to_sign_in(
    app: Flask, runner: FlaskCliRunner
) -> None:
    first = runner.invoke(args=["operators", "first-owner", "owner@example.com"])
    assert first.exit_code == 0, first.output
    assert "/admin/sign-in" in first.output
    password = re.search(r"password (\S+)", first.output)
    assert password is not None
    with app.app_context():
        assert accounts.authenticate("owner@example.com", password.group(1)) is not None
    second = runner.invoke(args=["operators", "first-owner", "other@example.com"])
    assert second.exit_code == 0
    assert "an owner account exists" in second.output
    with app.app_context():
        assert db.session.scalars(select(Operator.email)).all() == ["owner@example.com"]


def test_an_api_token_is_shown_once_stored_hashed_and_refused_once_revoked(
    app: Flask, runner: FlaskCliRunner
) -> None:
    created = runner.invoke(args=["api-tokens", "create", "--name", "CMS", "--scope", "send"])
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert re.fullmatch(r"nl_[0-9a-f]{8}_[A-Za-z0-9_-]{40,}", secret)
    with app.app_context():
        token = db.session.scalars(select(ApiToken)).one()
        assert secret not in (token.secret_hash, token.prefix)
        assert token.scope == "send"
        found = api_tokens.verify(secret)
        assert found is not None and found.id == token.id
        assert api_tokens.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert api_tokens.verify("Bearer " + secret) is None
        token_id = token.id
    listing = runner.invoke(args=["api-tokens", "list"]).output
    assert "CMS" in listing and "live" in listing and secret not in listing

    revoked = runner.invoke(args=["api-tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0, revoked.output
    with app.app_context():
        assert api_tokens.verify(secret) is None
    assert "revoked" in runner.invoke(args=["api-tokens", "list"]).output
    missing = runner.invoke(args=["api-tokens", "revoke", "999"])
    assert missing.exit_code != 0 and "no API token 999" in missing.output
    assert [action for _, action, _ in _audit(app)] == ["api_token.create", "api_token.revoke"]


def test_a_token_scope_or_name_that_is_no_choice_is_refused(
    app: Flask, runner: FlaskCliRunner
) -> None:
    bad_scope = runner.invoke(args=["api-tokens", "create", "--name", "CMS", "--scope", "all"])
    assert bad_scope.exit_code == 2
    bad_name = runner.invoke(args=["api-tokens", "create", "--name", "a\nb", "--scope", "read"])
    assert bad_name.exit_code != 0 and "printable" in bad_name.output
    with app.app_context():
        assert db.session.scalars(select(ApiToken)).all() == []


def test_two_owners_removing_each_other_at_once_leave_one_owner(app: Flask) -> None:
    with app.app_context():
        first = accounts.add("ann@example.com", "owner", PASSWORD).id
        second = accounts.add("bob@example.com", "owner", PASSWORD).id
        db.session.commit()
    removing = threading.Event()
    outcome: dict[str, str] = {}

    def remove(actor: str, target: int, hold: bool) -> None:
        # Each owner's request in its own session, as two web processes would run them.
        with app.app_context():
            try:
                account = accounts.by_id(target)
                assert account is not None
                accounts.disable(account)
                db.session.flush()
                if hold:
                    removing.set()
                    time.sleep(0.5)  # the other removal comes in meanwhile
                db.session.commit()
                outcome[actor] = "removed"
            except OperatorError as exc:
                db.session.rollback()
                outcome[actor] = str(exc)
            finally:
                removing.set()

    ann = threading.Thread(target=remove, args=("ann", second, True))
    ann.start()
    assert removing.wait(10)
    remove("bob", first, False)
    ann.join(10)
    assert outcome == {"ann": "removed", "bob": "the last owner cannot be removed"}
    with app.app_context():
        assert accounts.owners() == 1
        remaining = accounts.by_id(first)
        assert remaining is not None and remaining.disabled_at is None
