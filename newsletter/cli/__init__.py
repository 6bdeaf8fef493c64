"""The ``newsletter`` command: Flask's CLI over ``create_app`` plus the operators' groups."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup


def init_app(app: Flask) -> None:
    """Attach the operators' command groups to ``app.cli``."""
    from newsletter.cli.articles import articles
    from newsletter.cli.bounces import bounces
    from newsletter.cli.digest import digest
    from newsletter.cli.doctor import doctor
    from newsletter.cli.operators import api_tokens_group, operators
    from newsletter.cli.subscribers import subscribers

    app.cli.add_command(articles)
    app.cli.add_command(digest)
    app.cli.add_command(bounces)
    app.cli.add_command(subscribers)
    app.cli.add_command(doctor)
    app.cli.add_command(operators)
    app.cli.add_command(api_tokens_group)


def _create_app() -> Flask:
    from newsletter import create_app
    from newsletter.errors import ConfigError, ConfigErrors

    try:
        return create_app()
    except ConfigErrors as exc:
        # Every mistake at once, so the operator does not fix them one run at a time.
        lines = "\n".join(f"  {error}" for error in exc.errors)
        raise click.ClickException(f"{len(exc.errors)} settings are wrong:\n{lines}") from exc
    except ConfigError as exc:
        # An operator's settings mistake is a message naming the setting, not a traceback.
        raise click.ClickException(str(exc)) from exc


main = FlaskGroup(create_app=_create_app, help="Run and operate the newsletter service.")
