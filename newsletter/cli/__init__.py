"""The ``newsletter`` command: Flask's CLI over ``create_app`` plus the operators' groups."""

from __future__ import annotations

from flask import Flask
from flask.cli import FlaskGroup


def init_app(app: Flask) -> None:
    """Attach the operators' command groups to ``app.cli``."""
    from .articles import articles
    from .digest import digest

    app.cli.add_command(articles)
    app.cli.add_command(digest)


def _create_app() -> Flask:
    from .. import create_app

    return create_app()


main = FlaskGroup(create_app=_create_app, help="Run and operate the newsletter service.")
