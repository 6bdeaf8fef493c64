"""Flask extensions, created unbound and joined to the app in ``create_app``."""

from __future__ import annotations

import time

from flask import Flask, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from limits.storage import MemoryStorage
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints so that Alembic migrations behave the same on SQLite and PostgreSQL.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process counters, expired ones given back once a minute rather than always.

    The original starts a thread 10 ms after a hit to scan every counter it holds. The
    signup limit keeps a counter per address for a day, so under load that scan ran almost
    without pause over thousands of counters, holding the GIL; it grows with the day's
    signups. Counters past their expiry are already ignored when read, so sweeping seldom
    only delays when their memory is freed. Registered for memory://, the default.
    """

    STORAGE_SCHEME = ["memory"]  # noqa: RUF012  (declared by limits as a plain attribute)
    SWEEP_SECONDS = 60.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **_: str) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **_)
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    def _MemoryStorage__schedule_expiry(self) -> None:
        # The hook limits calls on every hit (incr, decr, acquire_entry): sweep in line, seldom.
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            # Private to limits (3.13 to 5.x have it): should a release drop it, counters
            # are freed only with the process, and requests still get their answers.
            sweep = getattr(self, "_MemoryStorage__expire_events", None)
            if sweep is not None:
                sweep()


def client_ip() -> str:
    """The caller's address as seen after any configured proxy headers."""
    return request.remote_addr or "unknown"


db = SQLAlchemy(model_class=Base)


migrate = Migrate()
babel = Babel()
csrf = CSRFProtect()
limiter = Limiter(key_func=client_ip)


def check_limits_only_where_they_are(app: Flask) -> None:
    """Run Flask-Limiter's check before the requests of limited blueprints only (once every
    blueprint is registered).

    Its hook looks up default, application, meta, fallback and blueprint limits before
    every answer; each limited view's decorator checks that view's own limits itself. This
    app sets none of the former, and the API is the one blueprint with a limit of its own:
    elsewhere the look-up finds nothing, and it was about a tenth of a blank signup form's
    cost (bench/web.py, GET /subscribe). Should any of them be set (Flask-Limiter reads
    them from settings too), or this Flask-Limiter keep them elsewhere, the hook stays.
    """
    manager = limiter.limit_manager
    try:
        everywhere = (
            manager._application_limits,
            manager._default_limits,
            limiter._meta_limits,
            limiter._in_memory_fallback,
        )
        limited = list(manager._blueprint_limits)
    except AttributeError:
        return
    if any(everywhere) or any(name not in app.blueprints for name in limited):
        return
    check = limiter._check_request_limit
    hooks = app.before_request_funcs.get(None, [])
    if check in hooks:
        hooks.remove(check)
        for name in limited:
            app.before_request_funcs.setdefault(name, []).insert(0, check)
