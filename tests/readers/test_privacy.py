"""A reader's data rights from the command line: export everything held, then erase it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import JSON, String, Text, func, select

from newsletter.clock import utcnow
from newsletter.db.models import ConsentEvent, Delivery, Edition, Subscriber, Suppression
from newsletter.extensions import db
from newsletter.mail.message import OutgoingMessage
from newsletter.readers.addresses import address_hash
from tests.conftest import add_subscriber, form_fields, link_from, path_of, signup

ADDRESS = "ada.lovelace@example.org"
NAME = "Ada Lovelace-Byron"
AGENT = "AdaBrowser/1.815 (Analytical Engine)"
IP = "203.0.113.77"


def confirm_from_mail(client: FlaskClient, message: OutgoingMessage) -> None:
    path = path_of(link_from(message, "/confirm/"))
    page = client.get(path)
    done = client.post(path, data=form_fields(page.get_data(as_text=True)))
    assert done.status_code == 200, done.get_data(as_text=True)


def export_data(runner: FlaskCliRunner, address: str = ADDRESS) -> dict[str, Any]:
    result = runner.invoke(args=["subscribers", "export-data", address])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def a_reader_with_history(app: Flask, client: FlaskClient, outbox: list[OutgoingMessage]) -> None:
    """Sign up through the form, confirm from the mail, and receive one digest."""
    client.environ_base["REMOTE_ADDR"] = IP
    client.environ_base["HTTP_USER_AGENT"] = AGENT
    assert signup(client, ADDRESS, name=NAME, topics=["politics", "culture"]).status_code == 200
    confirm_from_mail(client, outbox[-1])
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
        assert subscriber is not None and subscriber.status == "active"
        edition = Edition(
            frequency="weekly",
            subject="This week at the Ledger",
            covers_until=utcnow() - timedelta(hours=1),
        )
        db.session.add(edition)
        db.session.flush()
        db.session.add(
            Delivery(
                edition_id=edition.id,
                subscriber_id=subscriber.id,
                state="sent",
                attempts=2,
                sent_at=utcnow(),
                message_id="<weekly-1.abc@ledger.example>",
                # Relays quote the address in their replies; the ledger keeps the last one.
                last_error=f"451 4.7.1 <{ADDRESS}>: greylisted, try again later",
            )
        )
        db.session.commit()


def text_held_anywhere(app: Flask) -> str:
    """Every text and JSON value of every table, lower-cased, as one string."""
    chunks: list[str] = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            columns = [c for c in table.c if isinstance(c.type, (String, Text, JSON))]
            if not columns:
                continue
            for row in db.session.execute(select(*columns)):
                chunks.extend(
                    json.dumps(value) if isinstance(value, (dict, list)) else str(value)
                    for value in row
                    if value is not None
                )
    return "\n".join(chunks).lower()


def test_export_data_then_erase_leaves_nothing_personal(
    app: Flask,
    client: FlaskClient,
    runner: FlaskCliRunner,
    outbox: list[OutgoingMessage],
    tmp_path: Path,
) -> None:
    a_reader_with_history(app, client, outbox)
    held = export_data(runner, ADDRESS.upper())
    assert held["address"] == ADDRESS
    assert held["subscriber"]["email"] == ADDRESS
    assert held["subscriber"]["name"] == NAME
    assert held["subscriber"]["status"] == "active"
    assert "confirm_nonce" not in held["subscriber"]
    assert held["topics"] == [
        {"slug": "culture", "name": "Culture"},
        {"slug": "politics", "name": "Politics"},
    ]
    history = held["consent_history"]
    assert [event["action"] for event in history] == ["signup", "confirm"]
    for event in history:
        assert (event["ip"], event["user_agent"]) == (IP, AGENT)
        assert event["consent_wording"] == app.config["CONSENT_TEXT"]
    (delivery,) = held["deliveries"]
    assert delivery["subject"] == "This week at the Ledger"
    assert delivery["state"] == "sent" and delivery["sent_at"]
    assert held["suppression"] == {"suppressed": False, "reason": None, "since": None}
    copy = tmp_path / "ada.json"
    written = runner.invoke(args=["subscribers", "export-data", ADDRESS, "--output", str(copy)])
    assert written.exit_code == 0 and json.loads(copy.read_text())["subscriber"]["name"] == NAME

    for needle in (ADDRESS, NAME, AGENT, IP):
        assert needle.lower() in text_held_anywhere(app)  # the scan below would see them

    declined = runner.invoke(args=["subscribers", "erase", ADDRESS], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert export_data(runner)["subscriber"] is not None

    erased = runner.invoke(args=["subscribers", "erase", ADDRESS], input="y\n")
    assert erased.exit_code == 0, erased.output
    assert f"Erased {ADDRESS}" in erased.output
    assert "consent_event 2" in erased.output and "delivery 1" in erased.output

    after = export_data(runner)
    assert after["subscriber"] is None
    assert after["topics"] == after["consent_history"] == after["deliveries"] == []
    assert after["suppression"]["suppressed"] is True
    assert after["suppression"]["reason"] == "erased"

    everything = text_held_anywhere(app)
    for needle in (ADDRESS, NAME, AGENT, IP, "ada.lovelace"):
        assert needle.lower() not in everything, needle
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
        # What stays: the hash, and an anonymous line saying an erasure was made.
        (event,) = db.session.scalars(select(ConsentEvent)).all()
        assert (event.action, event.subscriber_id, event.ip, event.user_agent) == (
            "erase",
            None,
            None,
            None,
        )
        assert (
            db.session.scalar(
                select(Suppression.reason).where(Suppression.address_hash == address_hash(ADDRESS))
            )
            == "erased"
        )


def test_an_erased_address_stays_suppressed_until_the_reader_signs_up_again(
    app: Flask,
    client: FlaskClient,
    runner: FlaskCliRunner,
    outbox: list[OutgoingMessage],
    tmp_path: Path,
) -> None:
    add_subscriber(app, ADDRESS, status="active")
    assert runner.invoke(args=["subscribers", "erase", ADDRESS, "--yes"]).exit_code == 0

    csv_file = tmp_path / "old-list.csv"
    csv_file.write_text(f"email,name\n{ADDRESS.upper()},{NAME}\nnew@example.org,New\n")
    imported = runner.invoke(args=["subscribers", "import", str(csv_file), "--confirmed"])
    assert imported.exit_code == 0, imported.output
    assert f"line 2: skipped: {ADDRESS} is suppressed (erased)" in imported.stderr
    added = runner.invoke(args=["subscribers", "add", ADDRESS, "--confirmed"])
    assert added.exit_code == 1 and "suppressed (erased)" in added.output
    with app.app_context():
        assert db.session.scalars(select(Subscriber.email)).all() == ["new@example.org"]
    assert outbox == []

    # The reader's own fresh double opt-in is the one way back.
    assert signup(client, ADDRESS).status_code == 200
    (mail,) = outbox
    assert mail.recipient == ADDRESS
    confirm_from_mail(client, mail)
    held = export_data(runner)
    assert held["subscriber"]["status"] == "active"
    assert held["suppression"]["suppressed"] is False


def test_erasing_an_address_not_on_the_list_still_suppresses_it(
    app: Flask, runner: FlaskCliRunner
) -> None:
    with app.app_context():
        db.session.add(Suppression(address_hash=address_hash("b@example.org"), reason="bounced"))
        db.session.commit()
    for address in ("a@example.org", "a@example.org", "b@example.org"):
        result = runner.invoke(args=["subscribers", "erase", address, "--yes"])
        assert result.exit_code == 0, result.output
        assert f"No reader {address} on the list" in result.output
    with app.app_context():
        suppressed = db.session.execute(select(Suppression.address_hash, Suppression.reason))
        assert dict(suppressed.all()) == {
            address_hash("a@example.org"): "erased",
            address_hash("b@example.org"): "erased",
        }
    unknown = export_data(runner, "nobody@example.org")
    assert unknown["subscriber"] is None and unknown["suppression"]["suppressed"] is False
    bad = runner.invoke(args=["subscribers", "export-data", "nobody"])
    assert bad.exit_code == 2 and "Invalid value for ADDR" in bad.output
    assert "Traceback" not in bad.output
