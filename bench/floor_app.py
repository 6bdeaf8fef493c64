"""The floor for ``bench/web.py``'s POST endpoints: the least a durable write must do.

One INSERT and its COMMIT on the same database, through the same settings as the app (the
database URL and SQLALCHEMY_ENGINE_OPTIONS, read by the app's own ``config.load``), per
request, under the same gunicorn settings. A signup or an unsubscribe that is durable before
its answer cannot be faster than this; the bench prints each endpoint's rate as a ratio to it.

Served as ``floor_app:create_app()``. The table is created by the bench before gunicorn
starts (``create_table``): two workers starting at once would race to create it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert

from newsletter import config

metadata = MetaData()
floor = Table(
    "bench_floor",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", String(2000), nullable=False),
)


def create_table(url: str) -> None:
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()


def create_app() -> Flask:
    app = Flask(__name__)
    config.load(app, None)
    options: dict[str, Any] = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], **options)
    statement = insert(floor)

    @app.get("/")
    def ready() -> str:
        return "ok"

    @app.post("/")
    def write() -> tuple[str, int]:
        body = request.get_data(cache=False, as_text=True)[:2000]
        with engine.begin() as connection:
            connection.execute(statement, {"body": body})
        return "ok", 200

    return app
