"""Choosing a mail backend, third-party backends, and the shared send-rate limit."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from newsletter import create_app
from newsletter.errors import ConfigError
from newsletter.mail.backends import MailBackend, get_backend
from newsletter.mail.message import OutgoingMessage, build, mailbox
from newsletter.mail.throttle import Throttle
from tests.conftest import base_config
from tests.support import services

SENT: list[OutgoingMessage] = []


class RecordingBackend(MailBackend):
    """A third-party backend, registered below through an entry point."""

    def send(self, message: OutgoingMessage) -> None:
        SENT.append(message)


def _register_entry_point(folder: Path) -> None:
    dist = folder / "newsletter_recording_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: newsletter-recording-backend\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[newsletter.mail_backends]\nrecording = tests.mail.test_mail_backends:RecordingBackend\n"
    )


def test_a_backend_from_the_entry_point_group_receives_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register_entry_point(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = create_app({**base_config("sqlite://", tmp_path), "MAIL_BACKEND": "recording"})
    with app.app_context():
        message = build(to=mailbox("reader@example.org"), subject="Hi", text="t", html="<p>h</p>")
        with get_backend() as backend:
            backend.send(message)
    assert SENT[-1].data == message.data


def test_an_unknown_backend_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'pigeon'"):
        create_app({**base_config("sqlite://", tmp_path), "MAIL_BACKEND": "pigeon"})


def test_file_backend_writes_one_readable_eml_per_message(tmp_path: Path) -> None:
    app = create_app({**base_config("sqlite://", tmp_path), "MAIL_BACKEND": "file"})
    with app.app_context(), get_backend() as backend:
        for subject in ("First", "Second"):
            backend.send(
                build(to=mailbox("reader@example.org"), subject=subject, text="t", html="<p>h</p>")
            )
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    assert {b"Subject: First\r\n" in f.read_bytes() for f in files} == {True, False}


def test_console_backend_prints_headers_and_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app({**base_config("sqlite://", tmp_path), "MAIL_BACKEND": "console"})
    with app.app_context(), get_backend() as backend:
        backend.send(
            build(
                to=mailbox("reader@example.org"), subject="Hello", text="Body text", html="<p>h</p>"
            )
        )
    out = capsys.readouterr().out
    assert "Subject: Hello" in out and "Body text" in out and "<p>" not in out


def test_send_rate_is_shared_by_every_worker_through_redis() -> None:
    client = redis.Redis.from_url(services.REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        services.unavailable(f"Redis at {services.REDIS_URL}", exc)
    key = f"newsletter:test-rate:{time.time_ns()}"
    # Two workers' throttles on one key: together they may not exceed 10 a second.
    first, second = Throttle(10, client, key), Throttle(10, client, key)
    granted: list[float] = []
    for index in range(25):
        (first if index % 2 else second).wait()
        granted.append(time.time())
    per_second = Counter(int(stamp) for stamp in granted)
    assert max(per_second.values()) <= 10, per_second
    assert len(per_second) >= 3
