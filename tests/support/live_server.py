"""The app served over real HTTP on a free loopback port, for a real browser to use.

    server = LiveServer.start(lambda url: create_app({... "BASE_URL": url ...}))
    ...  # server.url, server.app
    server.stop()

The socket is bound first, so the app is built knowing its own origin (its links in mail and
its CSRF checks need it). Werkzeug's threaded server answers each request in a thread of its
own, as a production server would run several at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from newsletter.extensions import db

log = logging.getLogger(__name__)


class _Handler(WSGIRequestHandler):
    """Werkzeug's handler, saying when a browser dropped a connection (it says nothing)."""

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        where = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}" if environ else ""
        log.info("the browser dropped the connection of %s: %r", where, error)


@dataclass
class _Deferred:
    """A WSGI app chosen after the server is bound."""

    target: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.target(environ, start_response)


@dataclass
class LiveServer:
    app: Flask
    url: str
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @classmethod
    def start(cls, make_app: Callable[[str], Flask]) -> LiveServer:
        """Bind 127.0.0.1 on a free port, build the app for that origin and serve it."""
        deferred = _Deferred()
        server = make_server("127.0.0.1", 0, deferred, threaded=True, request_handler=_Handler)
        url = f"http://127.0.0.1:{server.server_port}"
        deferred.target = app = make_app(url)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        return cls(app, url, server, thread)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        with self.app.app_context():
            db.engine.dispose()
