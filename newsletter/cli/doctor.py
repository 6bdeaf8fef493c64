"""``newsletter doctor``: what is wrong with this configuration, and how to fix it."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.cli.output import plural
from newsletter.doctor import run

MARKS = {"ok": "ok     ", "warning": "warning", "error": "ERROR  "}


@click.command("doctor")
@click.option("--dkim-record", help="The published DKIM TXT record to compare the key with.")
@with_appcontext
def doctor(dkim_record: str | None) -> None:
    """Check the settings a sender needs before the first send."""
    findings = run(current_app, dkim_record)
    for finding in findings:
        click.echo(f"{MARKS[finding.level]}  {finding.check}: {finding.message}")
        if finding.fix and finding.level != "ok":
            click.echo(f"           fix: {finding.fix}")
    errors = sum(finding.level == "error" for finding in findings)
    warnings = sum(finding.level == "warning" for finding in findings)
    click.echo(f"{plural(errors, 'error')}, {plural(warnings, 'warning')}.")
    if errors:
        raise SystemExit(1)
