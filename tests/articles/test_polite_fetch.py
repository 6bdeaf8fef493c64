"""Feeds fetched politely from a real HTTP server on loopback: a feed that has not changed
is not downloaded again, and a server that asks us to wait is not asked before then."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from newsletter.db.models import Article, FeedState
from newsletter.extensions import db

ETAG = '"v1"'
MODIFIED = "Thu, 03 Dec 2026 08:00:00 GMT"
FEED = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Ledger</title><link>https://ledger.example/</link>
<item><title>Bridge reopens</title><link>https://ledger.example/local/bridge</link>
<guid>urn:polite:1</guid><category>Politics</category>
<pubDate>Thu, 03 Dec 2026 07:00:00 GMT</pubDate></item>
</channel></rss>"""


@dataclass
class Server:
    """Serves FEED with validators, honouring them; or answers ``busy`` with Retry-After."""

    busy: str | None = None  # a Retry-After value to answer 503 with
    etag: str = ETAG  # the ETag the server sends
    requests: list[dict[str, str]] = field(default_factory=list)
    body_bytes: list[int] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append({key.lower(): value for key, value in self.headers.items()})
            if state.busy is not None:
                self.send_response(503)
                self.send_header("Retry-After", state.busy)
                self.send_header("Content-Length", "0")
                self.end_headers()
                state.body_bytes.append(0)
                return
            if self.headers.get("If-None-Match") == state.etag:
                self.send_response(304)
                self.send_header("ETag", ETAG)
                self.end_headers()
                state.body_bytes.append(0)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", state.etag)
            self.send_header("Last-Modified", MODIFIED)
            self.send_header("Content-Length", str(len(FEED)))
            self.end_headers()
            self.wfile.write(FEED)
            state.body_bytes.append(len(FEED))

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/feed.xml"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def fetch(runner: FlaskCliRunner, url: str) -> tuple[int, str]:
    result = runner.invoke(args=["articles", "fetch", "--feed", url])
    return result.exit_code, result.output


def test_an_unchanged_feed_is_asked_about_and_not_downloaded_again(
    app: Flask, runner: FlaskCliRunner, server: Server
) -> None:
    code, first = fetch(runner, server.url)
    assert code == 0 and "1 new, 0 already known" in first, first
    code, second = fetch(runner, server.url)
    assert code == 0 and "unchanged since the last fetch" in second, second

    assert "if-none-match" not in server.requests[0]
    assert server.requests[1]["if-none-match"] == ETAG
    assert server.requests[1]["if-modified-since"] == MODIFIED
    assert server.body_bytes == [len(FEED), 0]  # the second answer carried no body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Article)) == 1
        state = db.session.scalar(select(FeedState))
        assert state is not None and state.etag == ETAG and state.last_modified == MODIFIED


def test_a_server_that_asks_to_wait_is_not_asked_again_before_then(
    app: Flask, runner: FlaskCliRunner, server: Server
) -> None:
    server.busy = "120"
    code, first = fetch(runner, server.url)
    assert code == 0 and "HTTP 503" in first and "not asked again before" in first, first
    code, second = fetch(runner, server.url)
    assert code == 0 and "not asked again before" in second, second
    assert len(server.requests) == 1  # the second fetch sent nothing

    with app.app_context():
        state = db.session.scalar(select(FeedState))
        assert state is not None and state.retry_after is not None
        state.retry_after = None  # the wait is over
        db.session.commit()
    server.busy = None
    code, third = fetch(runner, server.url)
    assert code == 0 and "1 new" in third, third


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", 120.0),
        ("86400000000000", 86400.0),  # capped at a day, not an overflow
        ("9" * 5000, 86400.0),
        ("Thu, 03 Dec 2026 12:02:00 GMT", 120.0),
        ("Thu, 03 Dec 2026 12:02:00 -0000", 120.0),  # a zone-less date is GMT
        ("Thu, 03 Dec 2026 11:00:00 GMT", 0.0),  # already past: ask again now
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_capped(header: str, wait: float) -> None:
    from datetime import UTC, datetime

    from newsletter.articles.feeds import _retry_after

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    until = _retry_after(header, now)
    assert until is not None and (until - now).total_seconds() == wait


@pytest.mark.parametrize("header", ["", "soon", "²", "Fri, 31 Dec 99999 23:59:59 GMT"])
def test_a_retry_after_that_makes_no_sense_is_ignored_without_a_crash(header: str) -> None:
    from datetime import UTC, datetime

    from newsletter.articles.feeds import _retry_after

    assert _retry_after(header, datetime(2026, 12, 3, 12, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize("etag", ['"' + "x" * 2000 + '"', '"\u00fc"', '"a\tb"'])
def test_a_validator_that_cannot_be_sent_back_as_it_came_is_dropped(
    app: Flask, runner: FlaskCliRunner, server: Server, etag: str
) -> None:
    server.etag = etag
    code, first = fetch(runner, server.url)
    assert code == 0 and "1 new" in first, first
    code, second = fetch(runner, server.url)
    assert code == 0 and "0 new, 1 already known" in second, second
    assert "if-none-match" not in server.requests[1]  # plain, not a mangled ETag
    assert server.requests[1]["if-modified-since"] == MODIFIED
