"""``newsletter bounces``: act on bounces and complaints from a file, an mbox or a Maildir."""

from __future__ import annotations

import mailbox
import sys
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import click
from flask import current_app
from flask.cli import AppGroup

from newsletter.bounces.parse import split_mbox
from newsletter.bounces.process import Outcome, Summary, process_message
from newsletter.cli.output import plural

bounces = AppGroup("bounces", help="Process bounces (DSNs) and complaints (ARF reports).")


@bounces.command("process")
@click.argument("source", type=click.Path(exists=True, allow_dash=True))
def process(source: str) -> None:
    """Read SOURCE (one message, an mbox file, a Maildir folder, or - for stdin) and act on it.

    Hard bounces and complaints suppress the address at once, soft bounces after
    NEWSLETTER_SOFT_BOUNCE_LIMIT within NEWSLETTER_SOFT_BOUNCE_WINDOW_DAYS, policy rejections
    are reported only. A message seen before is not counted again, so rerunning is safe.
    """
    limit = int(current_app.config["BOUNCE_MAX_BYTES"])
    origin = "cli:stdin" if source == "-" else f"cli:{Path(source).name}"
    summary = Summary()
    for label, raw in messages(source, limit):
        if raw is None:
            outcome = Outcome("unparseable", f"larger than {limit:,} bytes")
        else:
            outcome = process_message(raw, origin)
        summary.add(label, outcome)
    for line in summary_lines(summary):
        click.echo(line)


def summary_lines(summary: Summary) -> list[str]:
    """The summary as the command prints it, naming each suppressed address."""
    c = summary.counts
    out = [
        f"Processed {plural(summary.processed, 'message')}: {c['hard']:,} hard, "
        f"{c['soft']:,} soft, {c['policy']:,} policy, {plural(c['complaint'], 'complaint')}, "
        f"{c['ignored']:,} ignored, {c['unparseable']:,} unparseable.",
        f"Suppressed {plural(summary.suppressed, 'address', 'addresses')}"
        + (":" if summary.suppressed else "."),
    ]
    out += [f"  {email}" for email in summary.suppressed_addresses()]
    if summary.suppressed > len(summary.suppressed_readers):
        out.append(f"  ... and {summary.suppressed - len(summary.suppressed_readers):,} more")
    if c["policy"]:
        out.append(
            f"Policy rejections: {c['policy']:,} (nothing suppressed; check the sending "
            "IP's and domain's reputation, block lists, SPF, DKIM and DMARC):"
        )
        out += [
            f"  {item.status or '-':<8} delivery {item.delivery_id or '-'}: {item.diagnostic}"
            for item in summary.policy
        ]
    if summary.ignored:
        out.append("Ignored:")
        out += [f"  {number:>6,}  {reason}" for reason, number in summary.ignored.most_common()]
    if summary.unparseable:
        out.append("Unparseable:")
        out += [f"  {label}: {reason}" for label, reason in summary.unparseable]
    return out


def messages(source: str, limit: int) -> Iterator[tuple[str, bytes | None]]:
    """(label, bytes) of each message in SOURCE; bytes is None for one over ``limit``."""
    if source == "-":
        yield from _stream(sys.stdin.buffer, "stdin", limit)
        return
    path = Path(source)
    if path.is_dir():
        yield from _maildir(path, limit)
        return
    with path.open("rb") as stream:
        yield from _stream(stream, path.name, limit)


def _stream(stream: BinaryIO, name: str, limit: int) -> Iterator[tuple[str, bytes | None]]:
    """An mbox (its first line is a ``From `` separator) or else one message."""
    first = stream.readline(limit + 1)
    if first.startswith(b"From "):
        for number, raw in enumerate(split_mbox(chain([first], stream), limit), 1):
            yield f"{name} message {number}", raw
        return
    data = first + stream.read(limit + 1 - len(first))
    yield name, data if len(data) <= limit else None


def _maildir(path: Path, limit: int) -> Iterator[tuple[str, bytes | None]]:
    """The messages of a Maildir folder, new and cur, read but left where they are."""
    if not ((path / "cur").is_dir() or (path / "new").is_dir()):
        raise click.ClickException(f"{path} is a directory but not a Maildir (no cur/ or new/)")
    box = mailbox.Maildir(str(path), factory=None, create=False)
    for key in sorted(box.iterkeys()):
        try:
            with box.get_file(key) as handle:
                data = handle.read(limit + 1)
        except (KeyError, FileNotFoundError):
            continue  # moved away by another reader meanwhile
        yield key, data if len(data) <= limit else None
