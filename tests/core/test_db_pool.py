"""Pooled PostgreSQL connections: no ping while busy, and a dropped connection costs nobody
their request (newsletter/db/pool.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text

from newsletter.clock import utcnow
from newsletter.db import pool
from newsletter.db.models import Status, Subscriber
from newsletter.extensions import db
from newsletter.readers import roster
from newsletter.tokens import Purpose, sign
from tests.support import services

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _readers(app: Flask, count: int) -> list[str]:
    """Active readers' one-click unsubscribe paths."""
    with app.app_context():
        new = [roster.NewReader(f"r{i}@example.org", "", [], "weekly") for i in range(count)]
        roster.create(new, Status.ACTIVE, utcnow())
        db.session.commit()
        uids = db.session.scalars(select(Subscriber.uid).order_by(Subscriber.id)).all()
        return [f"/unsubscribe/{sign(Purpose.UNSUBSCRIBE, {'s': uid})}" for uid in uids]


def _statuses(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Subscriber.status).order_by(Subscriber.id)))


@pytest.fixture
def pings(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every ping the pool sends, as the dialect's ``do_ping`` sees it."""
    seen: list[Any] = []
    with app.app_context():
        dialect = db.engine.dialect
    original = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        seen.append(dbapi_connection)
        return bool(original(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counted)
    yield seen


def _one_click(client: Any, path: str) -> int:
    answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
    return int(answer.status_code)


@on_postgresql
def test_a_busy_connection_is_not_pinged(app: Flask, pings: list[Any]) -> None:
    paths = _readers(app, 5)
    client = app.test_client()
    assert [_one_click(client, path) for path in paths] == [200] * 5
    assert pings == []
    assert _statuses(app) == ["unsubscribed"] * 5


@on_postgresql
def test_a_one_click_after_the_database_dropped_every_connection_is_kept(
    app: Flask, pings: list[Any]
) -> None:
    first, second = _readers(app, 2)
    client = app.test_client()
    assert _one_click(client, first) == 200
    # What clients see when PostgreSQL restarts: every connection to the database dropped.
    admin = create_engine(services.POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with app.app_context():
        name = db.engine.url.database
    with admin.connect() as conn:
        dropped = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).scalar_one()
    admin.dispose()
    assert dropped >= 1

    assert _one_click(client, second) == 200
    assert len(pings) == 1  # the readable socket gave the dead connection away
    assert _statuses(app) == ["unsubscribed", "unsubscribed"]


@on_postgresql
def test_a_connection_that_rested_too_long_is_pinged(
    app: Flask, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _readers(app, 2)
    client = app.test_client()
    monkeypatch.setattr(pool, "PING_AFTER_IDLE_SECONDS", -1.0)
    assert [_one_click(client, path) for path in paths] == [200, 200]
    assert len(pings) == 2


def test_only_a_socket_with_something_to_read_or_a_long_rest_asks_for_a_ping() -> None:
    ours, server = socket.socketpair()
    with ours, server:
        assert not pool.needs_ping(ours, resting_since=100.0, now=101.0)
        assert pool.needs_ping(ours, resting_since=100.0, now=100.0 + 60)
        assert pool.needs_ping(ours, resting_since=None, now=101.0)
        server.sendall(b"E")  # the server's FATAL message on its way out
        assert pool.needs_ping(ours, resting_since=100.0, now=101.0)
    assert pool.needs_ping(ours, resting_since=100.0, now=101.0)  # closed: no socket left
