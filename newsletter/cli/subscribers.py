"""``newsletter subscribers``: list, add, import, export, count, and a reader's data rights."""

from __future__ import annotations

import json
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TextIO

import click
from flask.cli import AppGroup

from newsletter import jobs
from newsletter.cli.output import plural, progress, text_file, write_text
from newsletter.db.models import Frequency, Status
from newsletter.errors import ImportFileError, InvalidAddress, InvalidReaderField, ReaderRefused
from newsletter.extensions import db
from newsletter.readers import notices, privacy, roster, topics
from newsletter.readers.addresses import normalize
from newsletter.readers.export import ReaderRow, iter_readers, write_csv, write_json
from newsletter.readers.importing import CsvImport
from newsletter.readers.notices import Notice
from newsletter.readers.stats import WINDOW_DAYS, count_readers

subscribers = AppGroup("subscribers", help="List, add, import, export and count readers.")

status_option = click.option(
    "--status",
    type=click.Choice([s.value for s in Status]),
    default=None,
    help="Only readers in this state.",
)
topic_option = click.option(
    "--topic", default=None, metavar="TOPIC", help="Only readers of this topic (slug or name)."
)


def _address(value: str, hint: str = "ADDR") -> str:
    try:
        return normalize(value)
    except InvalidAddress as exc:
        raise click.BadParameter(exc.reason, param_hint=hint) from exc


def _topic(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        chosen = topics.resolve_topics(value)
    except InvalidReaderField as exc:
        raise click.BadParameter(exc.reason, param_hint="--topic") from exc
    if len(chosen) != 1:
        raise click.BadParameter("name one topic", param_hint="--topic")
    return chosen[0]


def _printable(text: str) -> str:
    """Text fit for a terminal: a name holding escape sequences must not drive it."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _cell(text: str, width: int) -> str:
    text = _printable(text)
    return (text if len(text) <= width else text[: width - 1] + "…").ljust(width)


COLUMNS = (("Email", 34), ("Name", 20), ("Status", 12), ("Frequency", 9), ("Topics", 36))


@subscribers.command("list")
@status_option
@topic_option
def list_(status: str | None, topic: str | None) -> None:
    """Show readers as a table, oldest first (streamed)."""
    click.echo("  ".join(title.ljust(width) for title, width in COLUMNS) + "  Created (UTC)")
    count = 0
    for row in iter_readers(status, _topic(topic)):
        # Fixed widths, so the table can be printed as the rows stream in; a long address
        # is not shortened (it would be useless), it only pushes its line out of line.
        cells = (
            _printable(row.email).ljust(34),
            _cell(row.name, 20),
            _cell(row.status, 12),
            _cell(row.frequency, 9),
            _cell(",".join(row.topics), 36),
        )
        click.echo("  ".join(cells) + f"  {row.created_at:%Y-%m-%d %H:%M}")
        count += 1
    click.echo(f"{plural(count, 'reader')}.")


@subscribers.command("add")
@click.argument("addr")
@click.option("--name", default="", help="The reader's name, as shown in greetings.")
@click.option(
    "--topics",
    "topic_list",
    default="",
    metavar="A,B",
    help="Topic slugs or names, comma-separated. Default: every topic.",
)
@click.option(
    "--frequency",
    type=click.Choice([f.value for f in Frequency]),
    default=Frequency.WEEKLY.value,
    show_default=True,
)
@click.option(
    "--confirmed",
    is_flag=True,
    help="The reader has already agreed elsewhere: active at once, no confirmation mail.",
)
def add(addr: str, name: str, topic_list: str, frequency: str, confirmed: bool) -> None:
    """Add one reader: pending with a confirmation mail, or active with --confirmed."""
    email = _address(addr)
    try:
        chosen = topics.resolve_topics(topic_list)
        display = roster.clean_name(name)
    except InvalidReaderField as exc:
        raise click.BadParameter(exc.reason, param_hint=f"--{exc.field}") from exc
    try:
        roster.add_reader(
            email, display, chosen, frequency, confirmed=confirmed, origin=roster.cli_origin()
        )
        db.session.commit()  # and with it, a pending reader's confirmation mail goes
    except ReaderRefused as exc:
        db.session.rollback()
        raise click.ClickException(f"not added: {exc}") from exc
    if confirmed:
        click.echo(f"Added {email}: active, {frequency}, topics {', '.join(chosen)}.")
        return
    click.echo(f"Added {email}: pending until they confirm; a confirmation mail is on its way.")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--confirmed/--pending",
    default=False,
    show_default=True,
    help="--confirmed: consent was obtained elsewhere, readers are active at once. "
    "--pending: each gets a confirmation mail.",
)
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option(
    "--skip-invalid", is_flag=True, help="Import the good rows even when some rows are bad."
)
def import_(file: Path, confirmed: bool, dry_run: bool, skip_invalid: bool) -> None:
    """Import readers from a CSV file (columns email, name, topics, frequency).

    Every row is checked before anything is written. Topics are slugs or names separated by
    commas or semicolons (empty: every topic); frequency is daily or weekly (empty: weekly).
    Addresses already on the list, suppressed or erased are skipped, never reactivated.
    """
    started = time.perf_counter()
    with CsvImport(file, confirmed=confirmed, source=f"import:{file.name}") as job:
        try:
            with progress(job.line_count(), "Checking ") as update:
                checked = job.check(update)
        except ImportFileError as exc:
            raise click.ClickException(f"{file}: nothing imported; {exc}") from exc
        # The check only read; ending its transaction lets the writes start from a fresh
        # snapshot (SQLite cannot turn a read snapshot that another writer has moved past
        # into a write transaction).
        db.session.rollback()
        for problem in job.problems():
            click.echo(str(problem), err=True)
        if checked.ignored_columns:
            ignored = _printable(", ".join(checked.ignored_columns))
            click.echo(f"Ignored columns: {ignored}", err=True)
        click.echo(
            f"{file}: {plural(checked.rows, 'row')}; {checked.valid:,} to import, "
            f"{checked.errors:,} invalid, {checked.skipped:,} skipped."
        )
        if checked.errors and not skip_invalid:
            raise click.ClickException(
                f"nothing imported: {plural(checked.errors, 'invalid row')} listed above; "
                "correct them, or pass --skip-invalid to import the others"
            )
        if dry_run:
            click.echo("Dry run: nothing was written.")
            return
        if not checked.valid:
            click.echo("Nothing to import.")
            return
        try:
            with progress(checked.valid, "Importing") as update:
                written = job.write(update)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    for problem in written.raced:
        click.echo(str(problem), err=True)
    state = Status.ACTIVE if confirmed else Status.PENDING
    click.echo(
        f"Imported {plural(written.imported, 'reader')} ({state}) "
        f"in {time.perf_counter() - started:.1f}s."
    )
    if written.pending_ids:
        _send_confirmations(written.pending_ids)


def _send_confirmations(ids: array[int]) -> None:
    """One confirmation mail per imported reader, after the commit the task depends on."""
    queued = not jobs.in_process()
    label = "Queueing confirmation mails" if queued else "Sending confirmation mails"
    with progress(len(ids), label) as update:
        for subscriber_id in ids:
            notices.enqueue(int(subscriber_id), Notice.CONFIRM)
            update(1)
    db.session.commit()  # nothing is read above; should that change, this still sends them


@subscribers.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(("csv", "json")), default="csv", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
@status_option
@topic_option
def export(fmt: str, output: Path | None, status: str | None, topic: str | None) -> None:
    """Write readers as CSV or JSON, streamed."""
    rows = iter_readers(status, _topic(topic))
    write: Callable[[Iterable[ReaderRow], TextIO], int] = write_csv
    if fmt == "json":
        write = write_json
    if output is None:
        write(rows, sys.stdout)
        return
    with text_file(output) as handle:
        count = write(rows, handle)
    click.echo(f"Exported {plural(count, 'reader')} to {output}.", err=True)


@subscribers.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def stats(as_json: bool) -> None:
    """Counts by status, topic, frequency; 30-day growth and churn."""
    numbers = count_readers()
    if as_json:
        click.echo(json.dumps(numbers.as_dict(), indent=2))
        return
    _section("Readers by status", numbers.by_status, total=numbers.total)
    _section(
        "Active readers by topic",
        {numbers.topic_names.get(slug, slug): n for slug, n in numbers.by_topic.items()},
    )
    _section("Active readers by frequency", numbers.by_frequency)
    _section(
        "Suppressed addresses (never mailed again)",
        numbers.suppressed,
        total=sum(numbers.suppressed.values()),
    )
    rate = numbers.churn_rate
    _section(
        f"Last {WINDOW_DAYS} days (since {numbers.since:%Y-%m-%d})",
        {
            "confirmed (growth)": numbers.confirmed,
            "unsubscribed (churn)": numbers.unsubscribed,
            "net": f"{numbers.net:+,}",
            "churn rate": f"{rate:.1%}" if rate is not None else "n/a",
        },
    )


def _section(title: str, counts: Mapping[str, int | str], total: int | None = None) -> None:
    click.echo(title)
    width = max((len(key) for key in counts), default=0) + 2
    for key, value in counts.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        click.echo(f"  {_printable(key).ljust(width)}{shown:>10}")
    if total is not None:
        click.echo(f"  {'total'.ljust(width)}{total:>10,}")
    click.echo()


@subscribers.command("export-data")
@click.argument("addr")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
def export_data(addr: str, output: Path | None) -> None:
    """Print everything held about one person, as JSON."""
    held = privacy.export_data(_address(addr))
    text = json.dumps(held, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        write_text(output, text + "\n")
        click.echo(f"Wrote {output}.", err=True)


@subscribers.command("erase")
@click.argument("addr")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(addr: str, yes: bool) -> None:
    """Erase a person's data and suppress the address for good."""
    email = _address(addr)
    if not yes:
        click.confirm(
            f"Erase every record of {email} (subscription, topics, consent history, "
            "deliveries)? This cannot be undone",
            abort=True,
        )
    try:
        done = privacy.erase(email, roster.cli_origin())
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    if done.subscriber:
        rows = ", ".join(f"{table} {count}" for table, count in sorted(done.removed.items()))
        click.echo(
            f"Erased {email}: the subscriber row and linked rows ({rows}). "
            "The address is suppressed, kept only as a hash."
        )
    else:
        click.echo(f"No reader {email} on the list; the address is now suppressed (as a hash).")
