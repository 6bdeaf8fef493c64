"""``newsletter subscribers import``: every row checked first, then one bulk transaction."""

from __future__ import annotations

import csv
import resource
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from newsletter.db.models import ConsentEvent, Subscriber, SubscriberTopic, Suppression
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers.addresses import address_hash
from newsletter.readers.importing import CsvImport
from tests.conftest import add_subscriber

TOPICS = ["breaking-news", "politics", "business", "analytics", "technology", "culture"]


def write_csv(path: Path, rows: list[list[str]], header: tuple[str, ...] | None = None) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header or ("email", "name", "topics", "frequency"))
        writer.writerows(rows)
    return path


def counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Subscriber, SubscriberTopic, ConsentEvent, Suppression)
        }


def readers(app: Flask) -> dict[str, tuple[str, str, str, tuple[str, ...]]]:
    """Every reader as (name, status, frequency, topics) by address."""
    with app.app_context():
        return {
            s.email: (s.name, s.status, s.frequency, tuple(s.topics))
            for s in db.session.scalars(select(Subscriber))
        }


def run_import(runner: FlaskCliRunner, path: Path, *options: str) -> Any:
    return runner.invoke(args=["subscribers", "import", str(path), *options])


def test_a_hundred_thousand_rows_import_in_one_go(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, outbox: list[OutgoingMessage]
) -> None:
    total = 100_000
    path = tmp_path / "readers-100k.csv"
    topic_rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("email", "name", "topics", "frequency"))
        for n in range(total):
            chosen = TOPICS[n % 6 : n % 6 + 1 + n % 3]  # one to three topics
            topic_rows += len(chosen)
            writer.writerow(
                (
                    f"Reader.{n}@Example.com",
                    f"Reader {n}",
                    ";".join(chosen),
                    "daily" if n % 4 == 0 else "weekly",
                )
            )
    started = time.perf_counter()
    result = run_import(runner, path, "--confirmed")
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n100k import on {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}: "
        f"{elapsed:.1f}s, peak RSS of the test process {peak_mib:.0f} MiB"
    )
    assert result.exit_code == 0, result.output
    assert f"Imported {total:,} readers (active)" in result.output
    assert counts(app) == {
        "subscriber": total,
        "subscriber_topic": topic_rows,
        "consent_event": total,
        "suppression": 0,
    }
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).where(
                    Subscriber.status == "active", Subscriber.confirmed_at.is_not(None)
                )
            )
            == total
        )
        assert (
            db.session.scalar(
                select(func.count()).where(ConsentEvent.source == "import:readers-100k.csv")
            )
            == total
        )
        sample = db.session.scalar(
            select(Subscriber).where(Subscriber.email == "reader.8@example.com")
        )
        assert sample is not None
        assert (sample.name, sample.frequency, sample.topics) == (
            "Reader 8",
            "daily",
            ["analytics", "business", "technology"],
        )
    assert outbox == []  # consent was obtained elsewhere: no confirmation mails


BAD_ROWS = [
    ["good.one@example.com", "Good One", "politics", "daily"],  # line 2
    ["not-an-address", "", "", ""],  # line 3
    ["two@example.com", "", "Astrology", ""],  # line 4
    ["three@example.com", "", "", "hourly"],  # line 5
    ["GOOD.ONE@example.com", "", "", ""],  # line 6: duplicate of line 2
    ["known@example.com", "", "", ""],  # line 7: already a reader, skipped
    ["four@example.com", "Four", "Breaking News; business", "Weekly"],  # line 8
    ["five@example.com", "", "politics", "daily", "extra"],  # line 9: one field too many
    ["six@example.com", "Bell\x07", "", ""],  # line 10: a control character in the name
]


def test_bad_rows_leave_the_database_unchanged_and_are_named_by_line(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, outbox: list[OutgoingMessage]
) -> None:
    add_subscriber(app, "known@example.com", status="unsubscribed")
    before, known = counts(app), readers(app)
    result = run_import(runner, write_csv(tmp_path / "bad.csv", BAD_ROWS))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = result.stderr
    assert "line 3: invalid address 'not-an-address'" in errors
    assert "line 4: topics: unknown topic 'Astrology'" in errors
    assert "line 5: frequency: unknown frequency 'hourly'" in errors
    assert "line 6: duplicate of line 2 (good.one@example.com)" in errors
    assert "line 7: skipped: known@example.com is already on the list (unsubscribed)" in errors
    assert "line 9: 5 fields where the header has 4" in errors
    assert "line 10: name: contains control characters" in errors
    for fine in ("line 2:", "line 8:"):
        assert fine not in errors
    assert "nothing imported: 6 invalid rows" in errors
    assert counts(app) == before and readers(app) == known
    assert outbox == []


def test_skip_invalid_imports_the_good_rows_pending_with_one_mail_each(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, outbox: list[OutgoingMessage]
) -> None:
    add_subscriber(app, "known@example.com", status="unsubscribed")
    result = run_import(runner, write_csv(tmp_path / "bad.csv", BAD_ROWS), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "9 rows; 2 to import, 6 invalid, 1 skipped" in result.output
    assert "Imported 2 readers (pending)" in result.output
    assert readers(app) == {
        "known@example.com": ("", "unsubscribed", "weekly", ("analytics",)),
        "good.one@example.com": ("Good One", "pending", "daily", ("politics",)),
        "four@example.com": ("Four", "pending", "weekly", ("breaking-news", "business")),
    }
    assert sorted(message.recipient for message in outbox) == [
        "four@example.com",
        "good.one@example.com",
    ]
    with app.app_context():
        events = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
        assert [(e.action, e.source, e.detail["line"]) for e in events] == [
            ("import", "import:bad.csv", 2),
            ("import", "import:bad.csv", 8),
        ]


def test_dry_run_checks_everything_and_writes_nothing(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, outbox: list[OutgoingMessage]
) -> None:
    rows = [[f"r{n}@example.com", "", "", ""] for n in range(5)]
    before = counts(app)
    result = run_import(runner, write_csv(tmp_path / "ok.csv", rows), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "5 rows; 5 to import, 0 invalid, 0 skipped" in result.output
    assert "Dry run: nothing was written." in result.output
    assert counts(app) == before and outbox == []
    bad = run_import(runner, write_csv(tmp_path / "bad.csv", BAD_ROWS), "--dry-run")
    assert bad.exit_code == 1 and "line 3:" in bad.stderr
    assert counts(app) == before


def test_suppressed_and_erased_addresses_are_never_imported(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, outbox: list[OutgoingMessage]
) -> None:
    with app.app_context():
        db.session.add(Suppression(address_hash=address_hash("gone@example.com"), reason="erased"))
        db.session.add(
            Suppression(address_hash=address_hash("bounced@example.com"), reason="bounced")
        )
        db.session.commit()
    rows = [
        ["Gone@Example.com", "", "", ""],
        ["bounced@example.com", "", "", ""],
        ["new@example.com", "", "", ""],
    ]
    result = run_import(runner, write_csv(tmp_path / "list.csv", rows), "--confirmed")
    assert result.exit_code == 0, result.output
    assert "line 2: skipped: gone@example.com is suppressed (erased)" in result.stderr
    assert "line 3: skipped: bounced@example.com is suppressed (bounced)" in result.stderr
    assert set(readers(app)) == {"new@example.com"}


def test_what_a_spreadsheet_writes_is_understood(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, outbox: list[OutgoingMessage]
) -> None:
    path = tmp_path / "excel.csv"
    # A byte order mark, header in another case and order, extra and empty columns, blank
    # lines, topic names or slugs split either way, a status column from another list.
    path.write_text(
        "\ufeffName,EMAIL,Frequency,Topics,Status,Source,\n"
        '"Zoë, Dr.",zoe@example.com,DAILY,"Politics,technology",active,web,\n'
        "\n"
        "Al,al@example.com,,,,,\n"
        "Left,left@example.com,weekly,culture,unsubscribed,,\n"
        "Pat,pat@example.com,weekly,culture,,\n",
        encoding="utf-8",
    )
    result = run_import(runner, path, "--confirmed")
    assert result.exit_code == 0, result.output
    assert "Ignored columns: source" in result.stderr
    assert "line 5: skipped: left@example.com is unsubscribed in the file" in result.stderr
    assert readers(app) == {
        "zoe@example.com": ("Zoë, Dr.", "active", "daily", ("politics", "technology")),
        "al@example.com": ("Al", "active", "weekly", tuple(sorted(TOPICS))),
        "pat@example.com": ("Pat", "active", "weekly", ("culture",)),
    }


def test_a_file_that_cannot_be_read_is_a_clear_error(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"email,name\na@example.com,Ann\nb@example.com,Jos\xe9\n")
    no_email = write_csv(tmp_path / "no-email.csv", [["x"]], header=("address",))
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("email;name\na@example.com;Ann\n", encoding="utf-8")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    expected = {
        latin: "line 3: not UTF-8 text",
        no_email: "line 1: no email column in the header 'address'",
        semicolons: "(the file must be comma-separated)",
        empty: "the file is empty",
    }
    for path, message in expected.items():
        result = run_import(runner, path)
        assert result.exit_code == 1, result.output
        assert message in result.stderr and "nothing imported" in result.stderr
        assert "Traceback" not in result.output
    assert counts(app)["subscriber"] == 0


def test_an_address_added_between_check_and_write_is_left_alone(app: Flask, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "race.csv", [["a@example.com", "", "", ""], ["b@example.com", "", "", ""]]
    )
    with app.app_context(), CsvImport(path, confirmed=True, source="import:race.csv") as job:
        assert job.check().valid == 2
        add_subscriber(app, "b@example.com", status="pending", confirm_nonce="n")
        written = job.write()
        db.session.commit()
    assert written.imported == 1
    assert [str(problem) for problem in written.raced] == [
        "line 3: skipped: b@example.com was added meanwhile; left as it is"
    ]
    assert readers(app)["b@example.com"][1] == "pending"
