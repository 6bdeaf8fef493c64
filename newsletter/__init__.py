"""A newsletter service for news sites: double opt-in signup and article digests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from jinja2 import ChoiceLoader, FileSystemLoader
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter import config

PACKAGE = Path(__file__).resolve().parent
# The project keeps its templates at the top of the tree; ``newsletter/templates`` points
# there in a checkout and is a real folder in a wheel, so both find them the same way.
TEMPLATES = PACKAGE / "templates"
MIGRATIONS = PACKAGE / "db" / "migrations"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app from defaults, NEWSLETTER_* variables and ``test_config``."""
    app = Flask(__name__, template_folder=str(TEMPLATES), instance_relative_config=True)
    if test_config and test_config.get("TESTING"):
        app.testing = True
    config.load(app, test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    # A publisher's own templates (same names, same folders) win over the shipped ones.
    app.jinja_loader = ChoiceLoader(
        [FileSystemLoader(str(app.config["TEMPLATE_OVERRIDES"])), FileSystemLoader(str(TEMPLATES))]
    )

    hops = int(app.config["PROXY_FIX_X_FOR"])
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    from newsletter.extensions import csrf, db, limiter, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)

    from newsletter import i18n

    i18n.init_app(app)

    from newsletter import jobs
    from newsletter.celery_app import celery_init_app

    # Imported for what they register: the tables (for Alembic) and SQLite's settings.
    from newsletter.db import dialect, models  # noqa: F401

    celery_init_app(app)
    jobs.init_app(app)

    from newsletter import web

    web.init_app(app)

    from newsletter import cli

    cli.init_app(app)
    return app
