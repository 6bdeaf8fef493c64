"""What the operator's commands say: files they cannot write, sections nobody can choose,
whom a bounce suppressed, what a preview is, and counts in the right number."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import update

from newsletter.db.models import Subscriber
from newsletter.extensions import db
from newsletter.readers.importing import CsvImport
from tests.articles.test_articles import rss
from tests.bounces.test_bounces import make_target, report
from tests.conftest import add_subscriber
from tests.support.digest_helpers import add_article

MISSING = "no-such-folder"


# ---- --output into a folder that does not exist


@pytest.mark.parametrize(
    "command",
    [
        ["digest", "preview", "--output"],
        ["subscribers", "export", "--output"],
        ["subscribers", "export-data", "reader@example.com", "--output"],
    ],
    ids=["digest preview", "subscribers export", "subscribers export-data"],
)
def test_output_into_a_missing_folder_is_one_line_naming_it(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, command: list[str]
) -> None:
    add_article(app, "Rates held steady")
    add_subscriber(app, "reader@example.com")
    target = tmp_path / MISSING / "out.html"
    result = runner.invoke(args=[*command, str(target)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot write {target}: the folder {target.parent} does not exist\n"
    )
    assert not isinstance(result.exception, OSError)


# ---- digest preview


@pytest.mark.parametrize("name", ["preview.html", "preview.eml"])
def test_preview_reports_the_size_of_the_file_it_wrote(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, name: str
) -> None:
    add_article(app, "Rates held steady")
    target = tmp_path / name
    result = runner.invoke(args=["digest", "preview", "--output", str(target)])
    assert result.exit_code == 0, result.output
    what = "the mail" if name.endswith(".eml") else "its HTML part"
    assert result.output == f"Wrote {what} to {target} ({target.stat().st_size:,} bytes).\n"


def test_a_preview_links_to_no_archive_page_and_says_it_is_a_preview(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    add_article(app, "Rates held steady")
    text = runner.invoke(args=["digest", "preview"]).output
    assert "/archive/" not in text
    assert "This is a preview: it was not sent and has no page in the archive." in text
    assert "Read it in your browser" not in text

    target = tmp_path / "preview.eml"
    runner.invoke(args=["digest", "preview", "--output", str(target)])
    mail = message_from_bytes(target.read_bytes(), policy=policy.default)
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/archive/" not in html
    assert "This is a preview: it was not sent and has no page in the archive." in html


# ---- articles in a category that is no configured topic


def test_adding_an_article_outside_the_topics_warns_and_the_list_shows_it(
    app: Flask, runner: FlaskCliRunner
) -> None:
    result = runner.invoke(
        args=[
            "articles", "add", "--title", "Cup final tonight", "--category", "Sport",
            "--url", "https://ledger.example/sport/cup-final",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        'warning: the article is filed under "Sport", which is no configured topic '
        "(Breaking News, Politics, Business, Analytics, Technology, Culture): no reader can "
        "choose it."
    ) in result.output
    known = runner.invoke(
        args=[
            "articles", "add", "--title", "Rates held", "--category", "business",
            "--url", "https://ledger.example/business/rates",
        ]
    )  # fmt: skip
    assert "warning" not in known.output

    listed = runner.invoke(args=["articles", "list"]).output.splitlines()
    sport = next(line for line in listed if "Cup final tonight" in line)
    business = next(line for line in listed if "Rates held" in line)
    assert "Sport (no topic)" in sport
    assert "(no topic)" not in business
    assert listed[-1] == (
        "(no topic): a section no reader can choose; the topics are Breaking News, Politics, "
        "Business, Analytics, Technology, Culture (NEWSLETTER_TOPICS)."
    )


def test_fetching_articles_outside_the_topics_warns_once_per_new_lot(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(
        rss(
            "".join(
                f"<item><title>Story {n}</title><link>https://ledger.example/{n}</link>"
                f"<category>{category}</category></item>"
                for n, category in enumerate(["Sport", "Sport", "Weather", "Business"])
            )
        )
    )
    first = runner.invoke(args=["articles", "fetch", "--feed", str(feed)])
    assert first.exit_code == 0, first.output
    assert 'warning: 2 new articles in "Sport", which is no configured topic' in first.output
    assert 'warning: 1 new article in "Weather", which is no configured topic' in first.output
    assert first.output.count("warning:") == 2  # Business is a topic
    again = runner.invoke(args=["articles", "fetch", "--feed", str(feed)])
    assert "warning" not in again.output  # nothing new: nothing to warn about


# ---- bounces and stats


def test_a_bounce_names_whom_it_suppressed_and_stats_count_an_unsubscribed_one(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    target = make_target(app, email="gone@example.net")
    with app.app_context():
        db.session.execute(
            update(Subscriber)
            .where(Subscriber.id == target.subscriber_id)
            .values(status="unsubscribed")
        )
        db.session.commit()
    bounce = tmp_path / "bounce.eml"
    bounce.write_bytes(report("postfix-5.1.1-user-unknown.eml", target))
    result = runner.invoke(args=["bounces", "process", str(bounce)])
    assert "Suppressed 1 address:\n  gone@example.net\n" in result.output

    stats = runner.invoke(args=["subscribers", "stats"]).output
    section = stats.split("Suppressed addresses (never mailed again)\n")[1].split("\n\n")[0]
    assert [line.split() for line in section.split("\n")] == [
        ["bounced", "1"],
        ["complained", "0"],
        ["erased", "0"],
        ["total", "1"],
    ]
    numbers = json.loads(runner.invoke(args=["subscribers", "stats", "--json"]).output)
    assert numbers["suppressed"] == {"bounced": 1, "complained": 0, "erased": 0}
    assert numbers["by_status"]["unsubscribed"] == 1


# ---- subscribers import


def test_import_prints_no_progress_labels_when_not_on_a_terminal(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "one.csv"
    path.write_text("email,name\nann@example.com,Ann\n")
    result = runner.invoke(args=["subscribers", "import", str(path), "--confirmed"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{path}: 1 row; 1 to import, 0 invalid, 0 skipped."
    assert "Checking" not in result.output and "Importing" not in result.output
    assert "Imported 1 reader (active)" in result.output
    exported = runner.invoke(args=["subscribers", "export", "--output", str(tmp_path / "x.csv")])
    assert exported.output == f"Exported 1 reader to {tmp_path / 'x.csv'}.\n"


@pytest.mark.parametrize(
    "text",
    [
        "email,name\na@example.com,A\nb@example.com,B\nc@example.com,C\n",
        "email,name\na@example.com,A\nb@example.com,B\nc@example.com,C",  # no last newline
        'email,name\na@example.com,"A\nand more"\nb@example.com,B\n',  # a cell of two lines
        "\n\nemail,name\na@example.com,A\n",  # blank lines before the header
    ],
    ids=["newline", "no-last-newline", "two-line-cell", "blank-lines-first"],
)
def test_the_check_progress_reaches_the_whole_file(app: Flask, tmp_path: Path, text: str) -> None:
    path = tmp_path / "readers.csv"
    path.write_text(text)
    done: list[int] = []
    with app.app_context(), CsvImport(path, confirmed=True, source="test") as job:
        length = job.line_count()
        job.check(done.append)
    assert sum(done) == length == len(text.rstrip("\n").split("\n"))
