"""A real Celery worker process for integration tests, mailing to a real SMTP server.

Fixtures (registered in tests/conftest.py):

- ``celery_worker`` (session): a ``CeleryWorker`` running
  ``python -m celery --app=worker:celery worker --pool=solo -Q newsletter,signup`` from the
  project root, configured only through NEWSLETTER_* variables: the test PostgreSQL database
  (``postgres_url``), Redis database 15 as broker (``tests.support.services.REDIS_URL``, flushed
  before the start), and ``MAIL_BACKEND=smtp`` at its own plain ``SMTPTestServer``
  (``celery_worker.smtp``). Skipped, or failed under NEWSLETTER_REQUIRE_SERVICES=1, when
  Redis or PostgreSQL cannot be reached.
- ``live_worker`` (function): that worker, reset for this test: it is idle, its queues are
  empty, and its SMTP server has no messages, faults or counters.
- ``worker_app`` (function): the web app in the test process wired to that worker (same
  database, broker, secret key, base URL and sender), with every table emptied. Its tasks
  go to the worker; its own mail backend stays ``memory``, so whatever reaches
  ``smtp`` was sent by the worker process.

A typical test::

    def test_x(live_worker: CeleryWorker, worker_app: Flask) -> None:
        signup(worker_app.test_client(), "reader@example.com")
        [received] = live_worker.smtp.wait_for(1)

``CeleryWorker`` also serves tests that need other settings::

    with CeleryWorker(postgres_url, smtp, extra_env={"NEWSLETTER_SMTP_TIMEOUT": "2"},
                      log_file=tmp_path / "worker.log") as worker: ...

Attributes: ``smtp``, ``database_url``, ``broker_url``, ``nodename``, ``environ`` (what the
process was given), ``process``; methods: ``app_config()`` (settings for ``create_app`` in
the test process), ``log()`` (the worker's output so far), ``ping()``, ``wait_idle()``,
``reset()``, ``start()``, ``stop()``, ``children()`` (a prefork pool's processes: start
one with ``pool="prefork"``, two children; ``beat=True`` embeds beat; ``clock_file`` makes
its app read the time a ``FakeClock`` writes, tests/support/clock.py). Tasks the worker
already holds (a retry waiting for its countdown) survive ``reset()``; rows they name are
usually gone by then.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis
from celery import Celery
from flask import Flask
from kombu import Queue

from newsletter import create_app
from newsletter.extensions import db, limiter
from newsletter.mail.backends import MemoryBackend
from tests.support import services
from tests.support.smtp_server import SMTPTestServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
QUEUES = ("newsletter", "signup")
SECRET_KEY = "worker-test-secret-key-0123456789"
BASE_URL = "https://news.example.test"
MAIL_FROM = "The Daily Ledger <newsletter@ledger.example>"


class WorkerFailed(RuntimeError):
    """The worker process exited or never became ready."""


class CeleryWorker:
    """One ``celery worker`` subprocess and the settings it was started with."""

    def __init__(
        self,
        database_url: str,
        smtp: SMTPTestServer,
        *,
        broker_url: str = services.REDIS_URL,
        log_file: Path,
        extra_env: Mapping[str, str] | None = None,
        pool: str = "solo",
        beat: bool = False,
        clock_file: Path | None = None,
    ) -> None:
        self.database_url = database_url
        self.pool = pool
        self.beat = beat
        # The worker's app reads the time from this file (tests/support/clock.py), if given.
        self.clock_file = clock_file
        self.smtp = smtp
        self.broker_url = broker_url
        self.log_file = log_file
        self.nodename = f"newsletter-test-{secrets.token_hex(4)}@localhost"
        self.environ = self._environ(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._control = Celery("newsletter-test-control", broker=broker_url, set_as_current=False)

    def _environ(self, extra: Mapping[str, str]) -> dict[str, str]:
        # Nothing from the developer's own NEWSLETTER_* settings leaks into the worker.
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "NEWSLETTER_SECRET_KEY": SECRET_KEY,
                "NEWSLETTER_SQLALCHEMY_DATABASE_URI": self.database_url,
                "NEWSLETTER_BROKER_URL": self.broker_url,
                "NEWSLETTER_BASE_URL": BASE_URL,
                "NEWSLETTER_MAIL_FROM": MAIL_FROM,
                "NEWSLETTER_RATELIMIT_STORAGE_URI": "memory://",
                # Workers logging into the same folder share a machine's journals.
                "NEWSLETTER_JOURNAL_DIR": str(self.log_file.parent / "journal"),
                **self.smtp.environ(),
                **extra,
            }
        )
        return env

    def app_config(self) -> dict[str, Any]:
        """Settings for an app in the test process that shares this worker's world.

        The mail backend is left alone (tests use ``memory``), so a message at ``smtp`` can
        only have come from the worker process.
        """
        return {
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "BROKER_URL": self.broker_url,
            "BASE_URL": BASE_URL,
            "MAIL_FROM": MAIL_FROM,
        }

    # ---- process

    def start(self, ready_within: float = 90.0) -> CeleryWorker:
        command = [
            sys.executable,
            "-m",
            "celery" if self.clock_file is None else "tests.support.clocked",
            # worker.py also holds the Flask app as ``app``, which ``-A worker`` would pick
            # before ``celery``; name the Celery app explicitly.
            "--app=worker:celery",
            "worker",
            f"--pool={self.pool}",
            *(["--concurrency=2"] if self.pool == "prefork" else []),
            *(["--beat", f"--schedule={self.log_file.with_suffix('.beat')}"] if self.beat else []),
            f"--queues={','.join(QUEUES)}",
            f"--hostname={self.nodename}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = self.environ
        if self.clock_file is not None:
            env = {**env, "TEST_CLOCK_FILE": str(self.clock_file)}
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + ready_within
        while not self.ping():
            if self.process.poll() is not None:
                raise WorkerFailed(
                    f"the worker exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise WorkerFailed(f"the worker did not answer a ping:\n{self.log()}")
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # warm shutdown: finish the current task
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._control.close()

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def children(self) -> list[int]:
        """The pool's child processes (prefork), by pid."""
        assert self.process is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # "pid (name) state ppid ...": the name may hold spaces, so split after it.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return sorted(found)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---- remote control

    def ping(self, timeout: float = 1.0) -> bool:
        replies = self._control.control.ping(destination=[self.nodename], timeout=timeout)
        return any(self.nodename in reply for reply in replies or [])

    def wait_idle(self, within: float = 60.0) -> None:
        """Wait until the worker runs, holds and schedules no task."""
        inspect = self._control.control.inspect(destination=[self.nodename], timeout=1.0)
        deadline = time.monotonic() + within
        while True:
            held = [inspect.active(), inspect.reserved(), inspect.scheduled()]
            if all(h and not h.get(self.nodename) for h in held):
                return
            if self.process is None or self.process.poll() is not None:
                raise WorkerFailed(f"the worker is not running:\n{self.log()}")
            if time.monotonic() > deadline:
                raise WorkerFailed(f"the worker stayed busy: {held}\n{self.log()}")
            time.sleep(0.1)

    def purge(self) -> None:
        """Drop the messages waiting in the worker's queues."""
        with self._control.connection_for_write() as connection:
            for name in QUEUES:
                Queue(name, channel=connection.default_channel).purge()

    def reset(self) -> None:
        self.wait_idle()
        self.purge()
        self.smtp.reset()


def _reachable_redis(url: str) -> None:
    """Skip (or fail) unless Redis answers, then empty the test database."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        with client:
            client.ping()
            client.flushdb()
    except redis.RedisError as exc:
        services.unavailable(f"Redis at {url}", exc)


# ---- fixtures (imported into tests/conftest.py)


@contextmanager
def running_worker(
    postgres_url: str,
    folder: Path,
    *,
    broker_url: str = services.REDIS_URL,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[CeleryWorker]:
    """A started worker with its own SMTP server, on a migrated database and a flushed broker."""
    from tests.conftest import _fresh_schema, base_config

    _reachable_redis(broker_url)
    # The schema must exist before the worker's first task looks for a row.
    app = create_app(base_config(postgres_url, folder))
    _fresh_schema(app)
    with app.app_context():
        db.engine.dispose()

    with SMTPTestServer() as smtp:
        worker = CeleryWorker(
            postgres_url,
            smtp,
            broker_url=broker_url,
            log_file=folder / "worker.log",
            extra_env=extra_env,
        )
        try:
            worker.start()
        except WorkerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield worker
        finally:
            worker.stop()


@pytest.fixture(scope="session")
def celery_worker(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    with running_worker(postgres_url, tmp_path_factory.mktemp("celery-worker")) as worker:
        yield worker


@pytest.fixture
def live_worker(celery_worker: CeleryWorker) -> CeleryWorker:
    celery_worker.reset()
    return celery_worker


@pytest.fixture
def worker_app(live_worker: CeleryWorker, tmp_path: Path) -> Iterator[Flask]:
    from tests.conftest import _fresh_schema, base_config

    app = create_app(
        {**base_config(live_worker.database_url, tmp_path), **live_worker.app_config()}
    )
    _fresh_schema(app)
    limiter.reset()
    MemoryBackend.outbox.clear()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    app.extensions["celery"].close()
