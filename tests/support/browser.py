"""A real Chromium against the real app on a real HTTP server, for the browser tests.

Fixtures (import them into a test module to use them): ``start_service`` serves the app on a
free loopback port, ``browser`` launches Debian's Chromium through Playwright, ``new_page``
opens a page in a fresh context. ``screenshot`` writes to test-artifacts/.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
from flask import Flask
from flask_migrate import upgrade
from werkzeug.serving import BaseWSGIServer, make_server

from newsletter import create_app
from newsletter.extensions import db, limiter
from tests.support import services

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
MIN_SECONDS = 1.0  # the live service's SIGNUP_MIN_SECONDS
WAIT = 10_000  # milliseconds a page or element may take to appear


@dataclass
class LiveService:
    """The newsletter app served over HTTP on a free loopback port."""

    app: Flask
    url: str
    outbox: Path


@dataclass
class _Deferred:
    """A WSGI app chosen after the server is bound, so BASE_URL can name the real port."""

    target: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.target(environ, start_response)


def serve(server: BaseWSGIServer | ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def stop(server: BaseWSGIServer | ThreadingHTTPServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Start the app (file mail backend, migrated SQLite, both in tmp) on a real server."""
    started: list[tuple[BaseWSGIServer, threading.Thread, Flask]] = []

    def start(scheme: str = "http", **overrides: Any) -> LiveService:
        deferred = _Deferred()
        # Over https (a throwaway self-signed certificate) the CSRF check also wants a
        # same-origin Referer, which only a real browser following the page's policy shows.
        tls: Literal["adhoc"] | None = "adhoc" if scheme == "https" else None
        server = make_server("127.0.0.1", 0, deferred, threaded=True, ssl_context=tls)
        url = f"{scheme}://127.0.0.1:{server.server_port}"
        outbox = tmp_path / "outbox"
        app = create_app(
            {
                # Not TESTING: the production path, where the confirmation mail is sent after
                # the reader's answer has gone out.
                "SECRET_KEY": "browser-test-secret-key-0123456789abcdef",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'newsletter.db'}",
                "MAIL_BACKEND": "file",
                "MAIL_OUTBOX": str(outbox),
                "BASE_URL": url,
                "SIGNUP_MIN_SECONDS": MIN_SECONDS,
                "BROKER_URL": None,
                "RATELIMIT_STORAGE_URI": "memory://",
                **overrides,
            }
        )
        with app.app_context():
            upgrade()
        limiter.reset()
        deferred.target = app
        started.append((server, serve(server), app))
        return LiveService(app=app, url=url, outbox=outbox)

    yield start
    for server, thread, app in started:
        stop(server, thread)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright is only needed here; without it these tests skip (or fail in CI).
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:  # pragma: no cover
        services.unavailable("Playwright", exc)
    services.require_executable("Chromium", "chromium", CHROMIUM)
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:
            services.unavailable("Chromium", exc, f"check that {CHROMIUM} --headless runs")
        expect.set_options(timeout=WAIT)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    contexts = []

    def make(**options: Any) -> Page:
        defaults = {"viewport": {"width": 1024, "height": 768}, "ignore_https_errors": True}
        context = browser.new_context(**{**defaults, **options})
        context.set_default_timeout(WAIT)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under test-artifacts/ (``name`` may hold a folder)."""
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
