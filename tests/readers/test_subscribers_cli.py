"""``newsletter subscribers``: add, list, export and stats, as an operator runs them."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import delete, select

from newsletter.clock import utcnow
from newsletter.db.models import ConsentEvent, Subscriber, SubscriberTopic, Suppression
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers.addresses import address_hash
from tests.conftest import add_subscriber, form_fields, link_from, path_of


def cli(runner: FlaskCliRunner, *args: str, **kwargs: Any) -> Any:
    return runner.invoke(args=["subscribers", *args], **kwargs)


def confirm_from_mail(client: FlaskClient, message: OutgoingMessage) -> None:
    """Open the confirm link of a mail and press its button, as the reader would."""
    path = path_of(link_from(message, "/confirm/"))
    page = client.get(path)
    done = client.post(path, data=form_fields(page.get_data(as_text=True)))
    assert done.status_code == 200, done.get_data(as_text=True)


def reader(app: Flask, email: str) -> Subscriber | None:
    with app.app_context():
        found = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
        if found is not None:
            found.topics  # noqa: B018  (loaded while the session is open)
        return found


def test_add_makes_a_pending_reader_who_confirms_from_the_mail(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, outbox: list[OutgoingMessage]
) -> None:
    result = cli(
        runner,
        "add",
        " Ann@Example.COM ",
        "--name",
        "Ann",
        "--topics",
        "politics,Business",
        "--frequency",
        "daily",
    )
    assert result.exit_code == 0, result.output
    assert "Added ann@example.com: pending until they confirm" in result.output
    added = reader(app, "ann@example.com")
    assert added is not None
    assert (added.name, added.status, added.frequency, added.topics) == (
        "Ann",
        "pending",
        "daily",
        ["business", "politics"],
    )
    assert [message.recipient for message in outbox] == ["ann@example.com"]
    with app.app_context():
        event = db.session.scalars(select(ConsentEvent)).one()
        assert (event.action, event.source, event.detail["status"]) == ("add", "cli", "pending")
    confirm_from_mail(client, outbox[0])
    assert reader(app, "ann@example.com").status == "active"  # type: ignore[union-attr]


def test_add_confirmed_is_active_at_once_and_sends_nothing(
    app: Flask, runner: FlaskCliRunner, outbox: list[OutgoingMessage]
) -> None:
    result = cli(runner, "add", "bo@example.com", "--confirmed")
    assert result.exit_code == 0, result.output
    added = reader(app, "bo@example.com")
    assert added is not None and added.status == "active" and added.confirmed_at is not None
    assert added.confirm_nonce is None
    assert len(added.topics) == 6  # no choice: every topic, as on the signup form
    assert outbox == []


def test_add_refuses_what_it_must_not_do_with_a_clear_message(
    app: Flask, runner: FlaskCliRunner, outbox: list[OutgoingMessage]
) -> None:
    add_subscriber(app, "gone@example.com", status="unsubscribed")
    with app.app_context():
        db.session.add(Suppression(address_hash=address_hash("bad@example.com"), reason="bounced"))
        db.session.commit()
    cases = {
        ("gone@example.com",): (
            1,
            "not added: gone@example.com is already on the list (unsubscribed)",
        ),
        ("BAD@example.com", "--confirmed"): (1, "bad@example.com is suppressed (bounced)"),
        ("not an address",): (2, "Invalid value for ADDR: An email address must have an @-sign"),
        ("c@example.com", "--topics", "politics,Gossip"): (2, "unknown topic 'Gossip'"),
        ("c@example.com", "--name", "Line\nbreak"): (2, "contains control characters"),
        ("c@example.com", "--frequency", "hourly"): (2, "'hourly' is not one of"),
    }
    for args, (code, message) in cases.items():
        result = cli(runner, "add", *args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, result.output
        assert "Traceback" not in result.output
    assert reader(app, "bad@example.com") is None and reader(app, "c@example.com") is None
    assert reader(app, "gone@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    assert outbox == []


def test_list_prints_a_table_and_filters(app: Flask, runner: FlaskCliRunner) -> None:
    add_subscriber(app, "a@example.com", status="active", topics=("culture",))
    add_subscriber(app, "p@example.com", status="pending", topics=("politics", "business"))
    with app.app_context():
        sneaky = db.session.scalar(select(Subscriber).where(Subscriber.email == "p@example.com"))
        assert sneaky is not None
        sneaky.name = "\x1b[2JEvil"  # a terminal escape from a signup form
        db.session.commit()
    everyone = cli(runner, "list")
    assert everyone.exit_code == 0, everyone.output
    lines = everyone.output.splitlines()
    assert lines[0].split()[:6] == ["Email", "Name", "Status", "Frequency", "Topics", "Created"]
    assert lines[1].split()[:4] == ["a@example.com", "active", "weekly", "culture"]
    assert lines[2].split()[:5] == [
        "p@example.com",
        "?[2JEvil",
        "pending",
        "weekly",
        "business,politics",
    ]
    assert "\x1b" not in everyone.output
    assert lines[-1] == "2 readers."
    active = cli(runner, "list", "--status", "active").output
    assert "a@example.com" in active and "p@example.com" not in active
    politics = cli(runner, "list", "--topic", "Politics").output
    assert "p@example.com" in politics and "a@example.com" not in politics
    assert cli(runner, "list", "--topic", "cooking").exit_code == 2
    assert "No readers" not in cli(runner, "list", "--status", "bounced").output
    assert cli(runner, "list", "--status", "bounced").output.splitlines()[-1] == "0 readers."


def _import_many(runner: FlaskCliRunner, tmp_path: Path, count: int) -> None:
    """Readers enough to span several of the export's chunks, put in through the import."""
    path = tmp_path / "many.csv"
    topics = ["politics", "business", "culture"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("email", "name", "topics", "frequency"))
        for n in range(count):
            name = f'Reader, {n} "q"'  # quoting survives the round trip
            chosen = ";".join(topics[: n % 3 + 1])
            writer.writerow((f"r{n}@example.com", name, chosen, ("daily", "weekly")[n % 2]))
    result = runner.invoke(args=["subscribers", "import", str(path), "--confirmed"])
    assert result.exit_code == 0, result.output


def _database_rows(app: Flask) -> dict[str, dict[str, Any]]:
    with app.app_context():
        return {
            s.email: {
                "name": s.name,
                "status": s.status,
                "frequency": s.frequency,
                "topics": s.topics,
                "created_at": s.created_at.isoformat(),
                "confirmed_at": s.confirmed_at.isoformat() if s.confirmed_at else None,
            }
            for s in db.session.scalars(select(Subscriber))
        }


def test_export_csv_and_json_round_trip(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    _import_many(runner, tmp_path, 2500)
    add_subscriber(app, "left@example.com", status="unsubscribed", topics=("culture",))
    stored = _database_rows(app)

    out = tmp_path / "readers.csv"
    result = cli(runner, "export", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert f"Exported {len(stored):,} readers to {out}." in result.stderr
    with out.open(encoding="utf-8", newline="") as handle:
        exported = {
            row["email"]: {
                "name": row["name"],
                "status": row["status"],
                "frequency": row["frequency"],
                "topics": row["topics"].split(";"),
                "created_at": row["created_at"],
                "confirmed_at": row["confirmed_at"] or None,
            }
            for row in csv.DictReader(handle)
        }
    assert exported == stored

    as_json = cli(runner, "export", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    items = json.loads(as_json.stdout)
    assert len(items) == len(stored)
    assert {
        item["email"]: {key: item[key] for key in stored[item["email"]]} for item in items
    } == stored
    assert json.loads(cli(runner, "export", "--format", "json", "--status", "bounced").stdout) == []

    # The CSV goes back in through the import: the same readers, the unsubscribed one left out.
    with app.app_context():
        for model in (ConsentEvent, SubscriberTopic, Subscriber):
            db.session.execute(delete(model))
        db.session.commit()
    again = runner.invoke(args=["subscribers", "import", str(out), "--confirmed"])
    assert again.exit_code == 0, again.output
    assert "left@example.com is unsubscribed in the file" in again.stderr
    restored = _database_rows(app)
    keep = ("name", "frequency", "topics")
    stored.pop("left@example.com")
    assert {email: [row[k] for k in keep] for email, row in restored.items()} == {
        email: [row[k] for k in keep] for email, row in stored.items()
    }


def test_export_to_standard_output_is_csv(app: Flask, runner: FlaskCliRunner) -> None:
    add_subscriber(app, "a@example.com", topics=("culture", "politics"))
    result = cli(runner, "export")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "email",
        "name",
        "status",
        "frequency",
        "topics",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    assert rows[1][:5] == ["a@example.com", "", "active", "weekly", "culture;politics"]
    assert len(rows) == 2


def _reader(
    email: str,
    status: str,
    topics: tuple[str, ...] = (),
    frequency: str = "weekly",
    confirmed: datetime | None = None,
    unsubscribed: datetime | None = None,
) -> Subscriber:
    subscriber = Subscriber(
        email=email,
        status=status,
        frequency=frequency,
        confirmed_at=confirmed,
        unsubscribed_at=unsubscribed,
    )
    subscriber.topics = list(topics)
    return subscriber


def test_stats_counts_and_the_last_thirty_days(app: Flask, runner: FlaskCliRunner) -> None:
    now = utcnow()

    def ago(days: int) -> datetime:
        return now - timedelta(days=days)

    with app.app_context():
        db.session.add_all(
            [
                _reader("a1@x.example", "active", ("politics", "business"), "daily", ago(5)),
                _reader("a2@x.example", "active", ("politics",), "weekly", ago(60)),
                _reader("a3@x.example", "active", ("culture",), "weekly", ago(10)),
                _reader("p1@x.example", "pending", ("culture",)),
                _reader(
                    "u1@x.example",
                    "unsubscribed",
                    ("culture",),
                    confirmed=ago(90),
                    unsubscribed=ago(3),
                ),
                # Never confirmed: leaving is no loss of a reader.
                _reader("u2@x.example", "unsubscribed", unsubscribed=ago(2)),
                _reader("u3@x.example", "unsubscribed", confirmed=ago(100), unsubscribed=ago(40)),
                _reader("b1@x.example", "bounced", ("politics",), confirmed=ago(200)),
            ]
        )
        db.session.commit()
    result = cli(runner, "stats", "--json")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["total"] == 8
    assert numbers["by_status"] == {
        "pending": 1,
        "active": 3,
        "unsubscribed": 3,
        "bounced": 1,
        "complained": 0,
    }
    assert numbers["active_by_topic"] == {
        "breaking-news": 0,
        "politics": 2,
        "business": 1,
        "analytics": 0,
        "technology": 0,
        "culture": 1,
    }
    assert numbers["active_by_frequency"] == {"daily": 1, "weekly": 2}
    window = numbers["window"]
    assert (window["days"], window["confirmed"], window["unsubscribed"], window["net"]) == (
        30,
        2,
        1,
        1,
    )
    assert window["active_at_start"] == 2 and window["churn_rate"] == 0.5

    text = cli(runner, "stats").output
    for expected in ("Readers by status", "Breaking News", "confirmed (growth)", "+1", "50.0%"):
        assert expected in text


def test_an_export_opened_in_a_spreadsheet_runs_no_formula_and_imports_back(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    add_subscriber(app, "-bob@example.com")
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber))
        assert subscriber is not None
        subscriber.name = '=HYPERLINK("http://evil.example","Click")'
        db.session.commit()
    out = tmp_path / "readers.csv"
    assert runner.invoke(args=["subscribers", "export", "--output", str(out)]).exit_code == 0
    [header, row] = list(csv.reader(out.open(encoding="utf-8")))
    cells = dict(zip(header, row, strict=True))
    assert cells["email"] == "'-bob@example.com"
    assert cells["name"] == '\'=HYPERLINK("http://evil.example","Click")'
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)

    with app.app_context():
        db.session.execute(delete(Subscriber))
        db.session.commit()
    imported = runner.invoke(args=["subscribers", "import", str(out), "--confirmed"])
    assert imported.exit_code == 0, imported.output
    with app.app_context():
        again = db.session.scalar(select(Subscriber))
        assert again is not None and again.email == "-bob@example.com"
        assert again.name == '=HYPERLINK("http://evil.example","Click")'
