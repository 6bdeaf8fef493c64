"""The floor for ``bench/web.py``'s POST endpoints: the least a durable write must do.

One INSERT and its COMMIT on the same database, through the same SQLAlchemy pool settings
as the app, per request, under the same gunicorn settings. A signup or an unsubscribe that
is durable before its answer cannot be faster than this; the bench prints each endpoint's
rate as a ratio to it.
"""

from __future__ import annotations

import os

from flask import Flask, request
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert

URL = os.environ["NEWSLETTER_SQLALCHEMY_DATABASE_URI"]
engine = create_engine(URL, pool_pre_ping=True)
metadata = MetaData()
floor = Table(
    "bench_floor",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", String(2000), nullable=False),
)
metadata.create_all(engine)

app = Flask(__name__)


@app.get("/")
def ready() -> str:
    return "ok"


@app.post("/")
def write() -> tuple[str, int]:
    body = request.get_data(cache=False, as_text=True)[:2000]
    with engine.begin() as connection:
        connection.execute(insert(floor), {"body": body})
    return "ok", 200
