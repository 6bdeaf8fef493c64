"""``newsletter digest``: preview, send and follow editions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import click
from flask import current_app
from flask.cli import AppGroup

from newsletter import i18n, jobs
from newsletter.bounces.process import bounce_counts
from newsletter.cli.output import plural, progress, write_bytes, write_text
from newsletter.clock import utcnow
from newsletter.db.models import (
    BounceKind,
    DeliveryState,
    Frequency,
)
from newsletter.digests import ledger, planning, previews, sending, windows
from newsletter.digests.compose import Reader
from newsletter.digests.content import EditionContent
from newsletter.errors import InvalidAddress
from newsletter.extensions import db
from newsletter.readers import subscriptions
from newsletter.readers.addresses import normalize

digest = AppGroup("digest", help="Preview, send and follow digest editions.")

frequency_option = click.option(
    "--frequency",
    type=click.Choice([f.value for f in Frequency]),
    default=Frequency.DAILY.value,
    show_default=True,
    help="Which readers and which period.",
)


@digest.command("preview")
@click.option("--email", help="Render what this subscriber would get (default: every topic).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the mail here: a .eml file opens in a mail client, anything else gets the HTML.",
)
@frequency_option
@click.option(
    "--language",
    help="Render it in this one of LANGUAGES (default: the subscriber's, else the site's).",
)
def preview(email: str | None, output: Path | None, frequency: str, language: str | None) -> None:
    """Render the next digest without sending or recording anything."""
    chosen = None if language is None else i18n.supported(language)
    if language is not None and chosen is None:
        raise click.BadParameter(
            f"{language!r} is not one of LANGUAGES ({', '.join(i18n.offered())})",
            param_hint="--language",
        )
    content = previews.next_content(frequency)
    if content is None:
        raise click.ClickException(
            f"no new articles for the {frequency} digest; nothing to preview"
        )
    message = previews.message(content, _preview_reader(email, content, chosen))
    mail = previews.shown(message)
    if output is None:
        click.echo(f"Subject: {mail.subject}\n")
        click.echo(mail.text)
        return
    if output.suffix.lower() == ".eml":
        size, what = write_bytes(output, message.data), "the mail"
    else:
        size, what = write_text(output, mail.html), "its HTML part"
    click.echo(f"Wrote {what} to {output} ({size:,} bytes).")


def _preview_reader(email: str | None, content: EditionContent, language: str | None) -> Reader:
    """The reader a preview is written to; ``language``, when given, overrides theirs."""
    if email is None:
        return previews.reader("reader@example.com", "Reader", content.topics, language=language)
    try:
        address = normalize(email)
    except InvalidAddress as exc:
        raise click.BadParameter(exc.reason, param_hint="--email") from exc
    subscriber = subscriptions.by_email(address)
    if subscriber is None:
        raise click.BadParameter(f"no subscriber {address}", param_hint="--email")
    return previews.reader(
        subscriber.email,
        subscriber.name,
        subscriber.topics,
        subscriber_id=subscriber.id,
        uid=subscriber.uid,
        language=language or subscriber.language,
    )


@digest.command("send")
@frequency_option
@click.option("--dry-run", is_flag=True, help="Show what would be sent; create and send nothing.")
@click.option("--no-wait", is_flag=True, help="Queue the edition and return at once.")
def send(frequency: str, dry_run: bool, no_wait: bool) -> None:
    """Create the next edition (or resume an unfinished one) and deliver it."""
    if dry_run:
        _dry_run(frequency)
        return
    queue = not jobs.in_process()
    started = sending.start(frequency, queue=queue)
    if started is None:
        click.echo(f"No new articles since the last {frequency} edition: nothing to send.")
        return
    edition_id = started.edition_id
    if started.resumed:
        click.echo(
            f"Resuming edition {edition_id} ({frequency}); "
            f"{plural(started.requeued, 'row')} queued again, {started.unknown:,} marked unknown."
        )
    else:
        edition = planning.edition(edition_id)
        assert edition is not None
        click.echo(
            f"Edition {edition_id}: {plural(len(edition.article_rows), 'article')} for "
            f"{plural(started.readers, 'reader')} "
            f"(planned in {edition.planning_seconds or 0:.2f}s)."
        )
    if queue:
        click.echo(f"Queued {plural(started.batches, 'batch', 'batches')}.")
        if no_wait:
            _print_waiting(edition_id)
            click.echo(f"Follow it with: newsletter digest status {edition_id}")
            return
        _follow(edition_id)
    else:
        _send_here(edition_id)
    _print_counts(edition_id)
    _print_waiting(edition_id)


def _dry_run(frequency: str) -> None:
    articles, readers = planning.preview(frequency, utcnow())
    if not articles:
        click.echo(f"No new articles since the last {frequency} edition: nothing would be sent.")
        return
    click.echo(
        f"Dry run: a {frequency} edition of {plural(len(articles), 'article')} "
        f"to {plural(readers, 'reader')}."
    )
    for article in articles:
        click.echo(f"  [{article.category}] {article.title}")
    click.echo("Nothing was created or sent.")


def _follow(edition_id: int) -> None:
    """Show progress until no row is left to send (but those waiting for their hour)."""
    total = sum(ledger.counts(edition_id).values()) - windows.waiting(edition_id, utcnow()).rows
    started, done_before = time.monotonic(), None
    with click.progressbar(
        length=total,
        label="Sending",
        show_pos=True,
        show_eta=True,
        item_show_func=lambda info: info,
    ) as bar:
        shown = 0
        while True:
            counts = ledger.counts(edition_id)
            finished = sum(counts.get(state, 0) for state in ledger.FINISHED)
            if done_before is None:
                done_before = finished
            rate = (finished - done_before) / max(time.monotonic() - started, 1e-6)
            bar.current_item = (
                f"sent {counts.get(DeliveryState.SENT, 0):,} "
                f"failed {counts.get(DeliveryState.FAILED, 0):,} "
                f"remaining {total - finished:,} {rate:,.0f}/s"
            )
            bar.update(finished - shown)
            shown = finished
            if finished >= total:
                break
            time.sleep(0.5)
    ledger.finish_if_done(edition_id)


def _send_here(edition_id: int) -> None:
    """Without a broker this process sends every batch itself, waiting out retry delays."""
    total = sum(ledger.counts(edition_id).values())
    size = int(current_app.config["BATCH_SIZE"])
    with progress(total, "Sending") as update:
        while True:
            for first_id, last_id in ledger.batches(edition_id, size):
                result = sending.send_batch(edition_id, first_id, last_id)
                update(result.sent + result.failed + result.skipped + result.unknown)
            if ledger.finish_if_done(edition_id):
                break
            wait = ledger.next_due(edition_id)
            if wait is None:
                break
            waiting = windows.waiting(edition_id, utcnow())
            if waiting.next_opening is not None and wait >= waiting.next_opening:
                break  # what is left waits for its readers' hour: see _print_waiting
            time.sleep(min(max((wait - utcnow()).total_seconds(), 0.1), 3600))


def _print_waiting(edition_id: int) -> None:
    """Say how many rows wait for their readers' hour (SEND_IN_READER_TIME), and till when."""
    waiting = windows.waiting(edition_id, utcnow())
    if waiting.next_opening is None:
        return
    click.echo(
        f"Waiting for their readers' hour: {plural(waiting.rows, 'row')} in "
        f"{plural(waiting.windows, 'window')}; the next opens at "
        f"{waiting.next_opening:%Y-%m-%d %H:%M} UTC."
    )
    if jobs.in_process():
        click.echo("Without a broker nothing opens them: run `newsletter digest send` again then.")


def _print_counts(edition_id: int) -> None:
    counts = ledger.counts(edition_id)
    click.echo(
        f"Edition {edition_id}: "
        + ", ".join(f"{state} {counts[state]:,}" for state in sorted(counts))
    )


@digest.command("status")
@click.argument("edition_id", required=False, type=int)
def status(edition_id: int | None) -> None:
    """Counts by delivery state for an edition (default: the newest)."""
    edition = planning.edition(edition_id)
    if edition is None:
        if edition_id is None:
            click.echo("No edition has been created yet.")
            return
        raise click.BadParameter(f"there is no edition {edition_id}", param_hint="EDITION")
    counts = ledger.counts(edition.id)
    click.echo(
        f"Edition {edition.id} ({edition.frequency}, {edition.state}), "
        f"created {edition.created_at:%Y-%m-%d %H:%M} UTC, "
        f"{plural(len(edition.article_rows), 'article')}"
    )
    for kind in DeliveryState:
        click.echo(f"  {kind.value:<11} {counts.get(kind, 0):>10,}")
    click.echo(f"  {'total':<11} {sum(counts.values()):>10,}")
    _print_waiting(edition.id)
    bounced = bounce_counts(edition.id)
    if bounced:
        click.echo(
            "Bounces and complaints: "
            + ", ".join(f"{kind} {bounced.get(kind, 0):,}" for kind in BounceKind)
        )
    reasons = ledger.reasons(edition.id)
    if reasons:
        click.echo("Most common reasons:")
        for state, reason, number in reasons:
            click.echo(f"  {number:>8,}  {state}: {reason}")


@digest.command("unknowns")
@click.argument("edition_id", type=int)
def unknowns(edition_id: int) -> None:
    """List the edition's messages whose outcome is unknown, to check against the relay."""
    edition = planning.edition(edition_id)
    if edition is None:
        raise click.BadParameter(f"there is no edition {edition_id}", param_hint="EDITION")
    rows = ledger.unknowns(edition_id)
    if not rows:
        click.echo(f"Edition {edition_id} has no message whose outcome is unknown.")
        return
    ids = ledger.message_ids([delivery_id for delivery_id, _, _ in rows])
    click.echo(f"Edition {edition_id}: {plural(len(rows), 'message')} whose outcome is unknown.")
    for delivery_id, email, reason in rows:
        click.echo(f"  {email}  {ids.get(delivery_id, '')}")
        click.echo(f"      {reason}")
    click.echo(
        "Look each Message-ID up in the relay's log. Re-offer only those it never kept "
        "(a reader whose copy it kept would get a second one):\n"
        f"  newsletter digest reoffer {edition_id} --address ADDRESS [--address ...]"
    )


@digest.command("reoffer")
@click.argument("edition_id", type=int)
@click.option("--address", "addresses", multiple=True, help="A reader to re-offer (repeatable).")
@click.option(
    "--file",
    "address_file",
    type=click.File("r", encoding="utf-8"),
    help="Addresses to re-offer, one per line.",
)
@click.option("--all", "everyone", is_flag=True, help="Every unknown message of the edition.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reoffer(
    edition_id: int,
    addresses: tuple[str, ...],
    address_file: TextIO | None,
    everyone: bool,
    yes: bool,
) -> None:
    """Send the edition again to readers whose message has an unknown outcome.

    For after a review: only where the relay's log shows it never kept the message.
    """
    edition = planning.edition(edition_id)
    if edition is None:
        raise click.BadParameter(f"there is no edition {edition_id}", param_hint="EDITION")
    named = list(addresses)
    if address_file is not None:
        named += [line.strip() for line in address_file if line.strip()]
    if everyone == bool(named):
        raise click.UsageError("name the readers with --address or --file, or give --all")
    wanted: list[str] | None = None
    if named:
        wanted = []
        for number, address in enumerate(named, start=1):
            try:
                wanted.append(normalize(address))
            except InvalidAddress as exc:
                line = number - len(addresses)
                where = f"--file, line {line}" if line > 0 else "--address"
                raise click.BadParameter(f"{address!r}: {exc.reason}", param_hint=where) from None
    unknown = {email for _, email, _ in ledger.unknowns(edition_id)}
    chosen = sorted(unknown if wanted is None else unknown & set(wanted))
    for address in sorted(set(wanted or ()) - unknown):
        click.echo(f"Not an unknown outcome in edition {edition_id}, left alone: {address}")
    if not chosen:
        click.echo("Nothing to re-offer.")
        return
    if not yes:
        click.confirm(
            f"Send edition {edition_id} again to {plural(len(chosen), 'reader')}? "
            "Any of them whose copy the relay kept will get a second one.",
            abort=True,
        )
    changed = ledger.reoffer(edition_id, chosen)
    click.echo(f"Re-offered edition {edition_id} to {plural(changed, 'reader')}.")
    if jobs.in_process():
        db.session.commit()
        _send_here(edition_id)
        _print_counts(edition_id)
    else:
        queued = sending.dispatch(edition_id)
        click.echo(
            f"Queued {plural(queued, 'batch', 'batches')}. "
            f"Follow it with: newsletter digest status {edition_id}"
        )
