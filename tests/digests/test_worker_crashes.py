"""Editions through worker crashes, a Redis restart and lost database connections.

Real worker processes (Celery, a prefork pool where the test kills children), a real SMTP
server, PostgreSQL; nobody runs ``digest send`` again: the edition must finish on its own.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import create_engine, select, text

from newsletter import create_app
from newsletter.db.models import Delivery, Subscriber
from newsletter.extensions import db
from tests.conftest import _fresh_schema, base_config
from tests.digests.test_worker_digest import copies_by_recipient, seed, wait_until_done
from tests.support import services
from tests.support.celery_worker import CeleryWorker
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.services

SECRET = "worker-test-secret-key-0123456789"
# Messages one kill may leave uncertain: the one whose content is on the wire, and with
# PIPELINING the next, whose envelope went out with it.
ON_THE_WIRE = 2


def app_for(postgres_url: str, tmp_path: Path, broker: str, **extra: object) -> Flask:
    app = create_app(
        {
            **base_config(postgres_url, tmp_path),
            "BROKER_URL": broker,
            "SECRET_KEY": SECRET,
            "LEASE_SECONDS": 3,
            "BATCH_SIZE": 100,
            **extra,
        }
    )
    _fresh_schema(app)
    return app


def start_edition(app: Flask) -> int:
    sent = app.test_cli_runner().invoke(
        args=["digest", "send", "--frequency", "daily", "--no-wait"]
    )
    assert sent.exit_code == 0, sent.output
    return int(re.search(r"Edition (\d+)", sent.output).group(1))  # type: ignore[union-attr]


def outcome(app: Flask, smtp: SMTPTestServer, readers: int) -> dict[str, int]:
    """Check every reader has one copy or an honest "unknown"; the figures for the note."""
    copies = copies_by_recipient(smtp)
    with app.app_context():
        rows = dict(
            db.session.execute(select(Subscriber.email, Delivery.state).join(Delivery)).all()
        )
        db.session.remove()
    assert len(rows) == readers
    twice = sorted(email for email, number in copies.items() if number > 1)
    assert not twice, f"{len(twice)} readers got a second copy: {twice[:5]}"
    for email, state in rows.items():
        if state == "sent":
            assert copies[email] == 1, f"{email} is recorded sent but got no copy"
        else:
            assert state == "unknown", (email, state)
    states = Counter(rows.values())
    return {
        "sent": states["sent"],
        "unknown": states["unknown"],
        "unknown that arrived": sum(1 for e, s in rows.items() if s == "unknown" and copies[e]),
    }


def wait_for_messages(smtp: SMTPTestServer, count: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while len(smtp.messages) < count:
        assert time.monotonic() < deadline, f"only {len(smtp.messages)} messages arrived"
        time.sleep(0.02)


def pool_children(worker: CeleryWorker, within: float = 30.0) -> list[int]:
    """Both children of the pool, once the one replacing a killed child has started."""
    deadline = time.monotonic() + within
    while len(children := worker.children()) < 2:
        assert time.monotonic() < deadline, f"the pool has {children} only"
        time.sleep(0.05)
    return children


def test_children_killed_mid_edition_leave_only_the_messages_on_the_wire_unknown(
    postgres_url: str, tmp_path: Path, smtp_server: SMTPTestServer
) -> None:
    broker = "redis://127.0.0.1:6379/14"
    redis.Redis.from_url(broker).flushdb()
    app = app_for(postgres_url, tmp_path, broker)
    seed(app, 1200)
    settings = {
        "NEWSLETTER_SEND_RATE": "200",  # per process: slow enough to kill children mid-chunk
        "NEWSLETTER_LEASE_SECONDS": "3",
        "NEWSLETTER_JOURNAL_EVERY": "100",
        "NEWSLETTER_BATCH_SIZE": "100",
    }
    kills = 4
    with CeleryWorker(
        postgres_url,
        smtp_server,
        broker_url=broker,
        log_file=tmp_path / "worker.log",
        extra_env=settings,
        pool="prefork",
    ) as worker:
        edition_id = start_edition(app)
        for kill in range(kills):
            # Mid-chunk: a chunk is 100 messages, the kill lands 150 messages apart.
            wait_for_messages(smtp_server, 150 * (kill + 1) + 50)
            victim = pool_children(worker)[kill % 2]
            subprocess.run(["kill", "-KILL", str(victim)], check=True)
        counts = wait_until_done(app, edition_id, within=120)
        assert worker.process is not None and worker.process.poll() is None
    figures = outcome(app, smtp_server, 1200)
    print(f"\n{kills} kills of a pool child, 1,200 readers: {figures}, ledger {counts}")
    assert figures["unknown"] <= ON_THE_WIRE * kills
    assert "killed" in worker.log() or "SIGKILL" in worker.log()


def test_a_whole_worker_killed_and_started_again_finishes_the_edition_itself(
    postgres_url: str, tmp_path: Path, smtp_server: SMTPTestServer
) -> None:
    broker = "redis://127.0.0.1:6379/14"
    redis.Redis.from_url(broker).flushdb()
    app = app_for(postgres_url, tmp_path, broker)
    seed(app, 400)
    settings = {"NEWSLETTER_SEND_RATE": "150", "NEWSLETTER_BATCH_SIZE": "40"}
    first = CeleryWorker(
        postgres_url,
        smtp_server,
        broker_url=broker,
        log_file=tmp_path / "w1.log",
        extra_env=settings,
    ).start()
    try:
        edition_id = start_edition(app)
        wait_for_messages(smtp_server, 130)
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    at_kill = len(smtp_server.messages)
    assert at_kill < 400, "the edition finished before the worker could be killed"
    # Same machine, same journal folder: the new worker reads the dead one's journal.
    with CeleryWorker(
        postgres_url,
        smtp_server,
        broker_url=broker,
        log_file=tmp_path / "w2.log",
        extra_env={**settings, "NEWSLETTER_SEND_RATE": "0"},
    ) as second:
        counts = wait_until_done(app, edition_id, within=60)
        assert "journal gave" in second.log()
    figures = outcome(app, smtp_server, 400)
    print(f"\nkill -9 of a whole worker, 400 readers: {figures}, ledger {counts}")
    assert figures["unknown"] <= ON_THE_WIRE
    assert not list((tmp_path / "journal").glob("*.journal")), "a journal was left behind"


# ---- a Redis restart and cut database connections, with beat running


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, so restarting it disturbs nobody else."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            services.unavailable("redis-server (to restart a broker)", FileNotFoundError())
        self.binary = str(binary)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill()  # a crash, not a shutdown: whatever it held is gone
            process.wait(10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def cut_database_connections(postgres_url: str) -> int:
    """What clients see when PostgreSQL restarts: every connection to the database dropped."""
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def test_an_edition_finishes_on_its_own_after_a_redis_restart_and_cut_database_connections(
    postgres_url: str,
    tmp_path: Path,
    smtp_server: SMTPTestServer,
    private_redis: PrivateRedis,
) -> None:
    app = app_for(postgres_url, tmp_path, private_redis.url)
    seed(app, 1000)
    settings = {
        "NEWSLETTER_SEND_RATE": "200",
        "NEWSLETTER_LEASE_SECONDS": "3",
        "NEWSLETTER_BATCH_SIZE": "100",
        "NEWSLETTER_RECOVER_EVERY_SECONDS": "1",
    }
    with CeleryWorker(
        postgres_url,
        smtp_server,
        broker_url=private_redis.url,
        log_file=tmp_path / "worker.log",
        extra_env=settings,
        pool="prefork",
        beat=True,
    ) as worker:
        edition_id = start_edition(app)
        wait_for_messages(smtp_server, 200)
        private_redis.stop()  # every queued task is lost with it (no persistence)
        time.sleep(2)
        private_redis.start()
        wait_for_messages(smtp_server, 500)
        assert cut_database_connections(postgres_url) > 0
        counts = wait_until_done(app, edition_id, within=120)
        log = worker.log()
    figures = outcome(app, smtp_server, 1000)
    print(f"\nRedis restart and cut connections, 1,000 readers: {figures}, ledger {counts}")
    assert figures["unknown"] <= ON_THE_WIRE * 2, log[-3000:]
