"""Pooled PostgreSQL connections are checked before use without a round trip to the server.

A connection the server has closed (a restart, a failover, ``pg_terminate_backend``) has a
readable socket: the server's last words and the end of the stream wait in it, whereas an
idle connection is never written to otherwise. So a connection taken from the pool is
pinged, as ``pool_pre_ping`` would, only when its socket has something to read, or when it
has rested long enough for a firewall, or a host that went away without a word, to have
dropped it unseen. A busy web worker, whose connections go back and forth every few
milliseconds, pays a ``poll`` call instead of a round trip per request. A failed ping drops
every connection of the pool made before it and connects anew, as pre-ping does.
"""

from __future__ import annotations

import select
import time
from typing import Any

from flask import Flask
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from newsletter.extensions import db

# Longer than a busy worker's connections rest, shorter than the idle timeouts of
# firewalls and load balancers (minutes).
PING_AFTER_IDLE_SECONDS = 10.0

_RESTING_SINCE = "newsletter.resting_since"


def readable(fileno: int) -> bool:
    """Whether the socket has something to read, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return bool(select.select([fileno], [], [], 0)[0])


def needs_ping(dbapi_connection: Any, resting_since: float | None, now: float) -> bool:
    """Whether a pooled connection must be pinged before it is used."""
    if resting_since is None or now - resting_since > PING_AFTER_IDLE_SECONDS:
        return True
    try:
        return readable(dbapi_connection.fileno())
    except Exception:  # closed already (the driver's own error), or no socket: ping to know
        return True


def watch(engine: Engine) -> None:
    """Check ``engine``'s PostgreSQL connections when they are taken from the pool."""
    if engine.dialect.name != "postgresql":
        return  # SQLite's connections are files: nothing goes away under them
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _resting(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RESTING_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        if not needs_ping(dbapi_connection, record.info.get(_RESTING_SINCE), time.monotonic()):
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            raise exc.InvalidatePoolError()


def init_app(app: Flask) -> None:
    with app.app_context():
        for engine in db.engines.values():
            watch(engine)
