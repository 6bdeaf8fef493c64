"""The web side: blueprints for readers, the console, the API and the error pages."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

# The largest id any of the databases can hold (SQLite's and PostgreSQL's bigint).
ID_MAX = 2**63 - 1


class BoundedInt(IntegerConverter):
    """``<int:...>`` in every route: a number no database can hold matches nothing (a 404),
    instead of reaching a query that fails on it (SQLite cannot bind it)."""

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = ID_MAX,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def init_app(app: Flask) -> None:
    from newsletter.clock import local_date, local_iso_date
    from newsletter.web import archive, bounces, errors, health, manage, requests, security, signup

    # Before any route is added: each rule looks its converter up when it is made.
    app.url_map.converters["int"] = BoundedInt
    requests.init_app(app)
    app.add_template_filter(local_date, "local_date")
    app.add_template_filter(local_iso_date, "local_iso_date")

    app.register_blueprint(signup.bp)
    app.register_blueprint(manage.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(bounces.bp)
    from newsletter.web import admin, api

    admin.init_app(app)
    api.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    from newsletter.extensions import check_limits_only_where_they_are

    check_limits_only_where_they_are(app)
