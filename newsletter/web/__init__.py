"""The web side: blueprints for readers, the console, the API and the error pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from newsletter.clock import local_date, local_iso_date
    from newsletter.web import archive, bounces, errors, health, manage, requests, security, signup

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
