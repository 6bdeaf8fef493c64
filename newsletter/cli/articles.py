"""``newsletter articles``: fetch feeds, add and import articles, list them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from newsletter.articles import cleaning, importing, store
from newsletter.articles.feeds import feed_timeout
from newsletter.cli.output import plural
from newsletter.db.models import Article
from newsletter.errors import FeedError, InvalidArticle
from newsletter.extensions import db
from newsletter.readers.topics import available

articles = AppGroup("articles", help="Fetch, add, import and list the site's articles.")

# An import with thousands of bad lines should still fit on a screen.
MAX_ERRORS_SHOWN = 50


@articles.command("fetch")
@click.option(
    "--feed",
    "feeds",
    multiple=True,
    metavar="URL_OR_PATH",
    help="An RSS/Atom feed URL or file; repeatable. Default: the NEWSLETTER_FEEDS setting.",
)
def fetch(feeds: tuple[str, ...]) -> None:
    """Read feeds and store the articles not seen before."""
    chosen = list(feeds) or list(current_app.config["FEEDS"])
    if not chosen:
        raise click.UsageError("no feeds: pass --feed URL_OR_PATH or set NEWSLETTER_FEEDS")
    timeout = feed_timeout()
    seen: Counter[str] = Counter()
    strays_before = store.stray_categories()
    for feed in chosen:
        try:
            report = store.fetch_and_store(feed, timeout=timeout)
        except FeedError as exc:
            seen["failed"] += 1
            click.echo(f"error: {exc}", err=True)
            continue
        seen[report.status.value] += 1
        if report.status is store.FeedStatus.UNCHANGED:
            click.echo(f"{feed}: unchanged since the last fetch (not downloaded again)")
        elif report.status is store.FeedStatus.DEFERRED:
            until = f"{report.retry_after:%Y-%m-%d %H:%M} UTC" if report.retry_after else "later"
            said = f" ({report.problems[0]})" if report.problems else ""
            click.echo(f"{feed}: not asked again before {until}, as its server requested{said}")
        else:
            click.echo(f"{feed}: {report.added} new, {report.skipped} already known")
            for problem in report.problems:
                click.echo(f"skipped: {problem}", err=True)
    if len(chosen) > 1:
        click.echo(
            f"{len(chosen)} feeds: {seen['updated']} updated, {seen['unchanged']} unchanged, "
            f"{seen['deferred']} deferred, {seen['failed']} failed"
        )
    _warn_strays(strays_before)
    if seen["failed"]:
        # The good feeds are stored already; the status tells cron or CI that one was not.
        click.echo(f"{seen['failed']} of {plural(len(chosen), 'feed')} failed", err=True)
        raise SystemExit(1)


def _warn_strays(before: dict[str, int]) -> None:
    """Warn about each category that gained articles although it is no configured topic."""
    for category, count in store.stray_categories().items():
        new = count - before.get(category, 0)
        if new > 0:
            _warn_stray(category, f"{plural(new, 'new article')} in")


def _warn_stray(category: str, what: str) -> None:
    topics = ", ".join(available().values())
    click.echo(
        f'warning: {what} "{category}", which is no configured topic ({topics}): '
        "no reader can choose it. Add it to NEWSLETTER_TOPICS or use one of those categories.",
        err=True,
    )


@articles.command("add")
@click.option("--title", required=True, help="The headline.")
@click.option("--url", required=True, help="The article's absolute http(s) address.")
@click.option("--category", required=True, help='The site section, e.g. "Business".')
@click.option("--summary", default="", help="A short HTML or text excerpt (sanitized).")
@click.option("--source", default="", help="Attribution text, e.g. an agency's name.")
@click.option("--published", default=None, help="ISO 8601 time (UTC unless an offset is given).")
@click.option("--guid", default=None, help="A stable id; defaults to the URL.")
def add(
    title: str,
    url: str,
    category: str,
    summary: str,
    source: str,
    published: str | None,
    guid: str | None,
) -> None:
    """Add one article by hand."""
    try:
        record = cleaning.make_record(
            url=url,
            title=title,
            category=category,
            summary=summary,
            source=source,
            published=cleaning.parse_published(published) if published else None,
            guid=guid,
        )
    except InvalidArticle as exc:
        raise click.ClickException(f"not added: --{exc.field} {exc.reason}") from exc
    added, _ = store.upsert_articles([record])
    db.session.commit()
    if added:
        click.echo(f'Added "{record.title}" ({record.category}, guid {record.guid})')
        if record.topic not in available():
            _warn_stray(record.category, "the article is filed under")
    else:
        click.echo(f"Already known: guid {record.guid}; nothing changed")


@articles.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Import articles from JSON lines, all or nothing.

    One object per line with keys url, title, category and optionally guid, summary,
    source, published (ISO 8601), author, image_url (https), image_alt, image_width and
    image_height (pixels). Any bad line and nothing is written.
    """
    records, errors = importing.parse_import(file.read_bytes())
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        lines = [f"{file}: nothing imported; {plural(len(errors), 'bad line')}:", *shown]
        if more:
            lines.append(f"... and {more} more")
        raise click.ClickException("\n".join(lines))
    strays_before = store.stray_categories()
    try:
        added, skipped = store.upsert_articles(records)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    click.echo(f"{file}: {added:,} new, {skipped:,} already known")
    _warn_strays(strays_before)


def _cell(text: str, width: int) -> str:
    """Fit text into a column, shortening it with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


# After a section that is no configured topic, in the list.
STRAY = " (no topic)"


def _table(rows: list[Article]) -> list[str]:
    """Lay articles out as aligned columns: published, section, title, url."""
    configured = available()
    cells = [
        (
            row.published_at.strftime("%Y-%m-%d %H:%M"),
            _cell(row.category, 20) + ("" if row.topic in configured else STRAY),
            _cell(row.title, 60),
            row.url,
        )
        for row in rows
    ]
    header = ("Published (UTC)", "Section", "Title", "URL")
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(3)]
    return [
        "  ".join(value.ljust(widths[i]) if i < 3 else value for i, value in enumerate(line))
        for line in [header, *cells]
    ]


@articles.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--topic", default=None, metavar="SLUG", help='Only one section, e.g. "business".')
def list_(limit: int, topic: str | None) -> None:
    """Show the newest articles first."""
    rows = store.recent_articles(limit=limit, topic=topic)
    if not rows:
        click.echo(f"No articles{' in topic ' + topic if topic else ''}.")
        return
    for line in _table(rows):
        click.echo(line.rstrip())
    if any(row.topic not in available() for row in rows):
        click.echo(
            f"{STRAY.strip()}: a section no reader can choose; the topics are "
            f"{', '.join(available().values())} (NEWSLETTER_TOPICS)."
        )
