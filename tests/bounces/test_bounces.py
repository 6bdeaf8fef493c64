"""Bounces and complaints (RFC 3464, 3463, 5965): parsing, classifying, suppressing, CLI, webhook.

Parsing and classification are pure and tested on their own; the rest runs against the real
database (SQLite and PostgreSQL) with the fixtures in tests/fixtures/bounces, which were
written for this project in the formats Postfix, Exim, Gmail, Outlook and ARF senders use.
"""

from __future__ import annotations

import logging
import mailbox
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from newsletter.bounces import parse, process
from newsletter.bounces.parse import Form, Unparseable
from newsletter.clock import utcnow
from newsletter.db.models import (
    BounceEvent,
    BounceKind,
    ConsentEvent,
    Delivery,
    Edition,
    Subscriber,
    Suppression,
)
from newsletter.digests.compose import message_id as digest_message_id
from newsletter.extensions import db
from newsletter.mail import verp
from newsletter.readers.addresses import address_hash
from tests.conftest import with_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
TOKEN = "webhook-token-0123456789abcdef"

# Values for the placeholders when no database is involved.
PURE = {
    "verp": "bounces+12-abcdefghij@ledger.example",
    "forged_verp": "bounces+12-aaaaaaaaaa@ledger.example",
    "message_id": "<digest.3.Uid_x-1@ledger.example>",
    "rcpt": "reader@example.net",
}


def fill(name: str, **values: str) -> bytes:
    """A fixture with its placeholders replaced; every placeholder must be given."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"unfilled placeholder in {name}"
    return text.encode("utf-8")


def pure(name: str, **overrides: str) -> bytes:
    return fill(name, **{**PURE, **overrides})


# ---- parsing and classification, no database


@pytest.mark.parametrize(
    ("name", "form", "kind", "status"),
    [
        ("postfix-5.1.1-user-unknown.eml", Form.DSN, BounceKind.HARD, "5.1.1"),
        ("exim-5.1.1.eml", Form.DSN, BounceKind.HARD, "5.1.1"),
        ("gmail-5.1.1-no-such-user.eml", Form.DSN, BounceKind.HARD, "5.1.1"),
        ("gmail-4.2.2-mailbox-full.eml", Form.DSN, BounceKind.SOFT, "4.2.2"),
        ("postfix-5.7.1-blocked.eml", Form.DSN, BounceKind.POLICY, "5.7.1"),
        ("arf-complaint.eml", Form.ARF, BounceKind.COMPLAINT, None),
        ("autoreply-out-of-office.eml", Form.OTHER, None, None),
        ("qmail-plain-text.eml", Form.OTHER, None, None),
        ("forged-verp.eml", Form.DSN, BounceKind.HARD, "5.1.1"),  # forged or not is decided later
    ],
)
def test_each_fixture_is_read_and_classified(
    name: str, form: Form, kind: BounceKind | None, status: str | None
) -> None:
    report = parse.parse(pure(name))
    assert report.form is form
    result = parse.verdict(report)
    assert result.kind is kind
    assert result.status == status
    if kind is None:
        assert result.reason


@pytest.mark.parametrize(
    "name",
    [
        "postfix-5.1.1-user-unknown.eml",
        "exim-5.1.1.eml",
        "gmail-5.1.1-no-such-user.eml",
        "gmail-4.2.2-mailbox-full.eml",
        "postfix-5.7.1-blocked.eml",
        "arf-complaint.eml",
    ],
)
def test_reports_name_the_verp_address_and_the_original_message(name: str) -> None:
    report = parse.parse(pure(name))
    assert PURE["verp"] in report.verp_candidates
    assert report.original_message_id == PURE["message_id"]
    assert report.message_id  # the report's own id, to recognize it when it comes again


def test_envelope_recipients_are_read_from_every_delivery_header() -> None:
    report = parse.parse(pure("gmail-5.1.1-no-such-user.eml"))
    # X-Original-To is the VERP address; Delivered-To is the mailbox it was aliased to.
    assert set(report.envelope_recipients) == {PURE["verp"], "bounce-processor@ledger.example"}
    assert report.verp_candidates.count(PURE["verp"]) == 1


def test_exim_vague_status_is_made_precise_by_the_remote_reply() -> None:
    report = parse.parse(pure("exim-5.1.1.eml"))
    [recipient] = report.recipients
    assert recipient.action == "failed" and recipient.status == "5.1.1"
    assert recipient.final_recipient == PURE["rcpt"]


def test_complaint_fields() -> None:
    report = parse.parse(pure("arf-complaint.eml"))
    assert report.feedback_type == "abuse"
    assert report.original_rcpt_to == PURE["rcpt"]
    assert report.envelope_recipients == ("fbl@ledger.example",)
    assert PURE["verp"] in report.original_senders


def test_diagnostics_keep_the_domain_but_not_the_mailbox() -> None:
    result = parse.verdict(parse.parse(pure("postfix-5.1.1-user-unknown.eml")))
    assert "reader@" not in result.diagnostic
    assert "***@example.net" in result.diagnostic
    assert result.diagnostic.startswith("550 5.1.1")
    assert result.recipient == PURE["rcpt"]


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind"),
    [
        ("5.1.1", "", BounceKind.HARD),
        ("5.1.2", "", BounceKind.HARD),
        ("5.1.10", "smtp; 556 5.1.10 domain has a null MX", BounceKind.HARD),
        ("5.1.0", "", BounceKind.HARD),
        (
            "5.2.1",
            "smtp; 550 5.2.1 The email account that you tried to reach is disabled",
            BounceKind.HARD,
        ),
        ("5.2.2", "smtp; 552 5.2.2 Mailbox full", BounceKind.SOFT),
        ("4.2.2", "", BounceKind.SOFT),
        ("4.4.1", "", BounceKind.SOFT),
        ("4.0.0", "", BounceKind.SOFT),
        ("5.4.4", "", BounceKind.SOFT),
        ("5.3.0", "", BounceKind.SOFT),
        ("5.7.1", "", BounceKind.POLICY),
        (
            "5.7.26",
            "smtp; 550-5.7.26 Unauthenticated email is not accepted (DMARC)",
            BounceKind.POLICY,
        ),
        (
            "4.7.28",
            "smtp; 421-4.7.28 Gmail has detected an unusual rate of mail",
            BounceKind.POLICY,
        ),
        ("4.7.0", "", BounceKind.POLICY),  # a temporary block of us is still about us
        ("5.1.7", "smtp; 553 5.1.7 bad sender address syntax", BounceKind.POLICY),
        ("5.1.8", "", BounceKind.POLICY),
        ("5.2.3", "smtp; 552 5.2.3 message too large", BounceKind.POLICY),
        ("5.3.4", "", BounceKind.POLICY),
        ("5.6.0", "", BounceKind.POLICY),
        ("5.0.0", "smtp; 550 Requested action not taken: mailbox unavailable", BounceKind.SOFT),
        ("5.0.0", "smtp; 550 <x@example.com>: User unknown", BounceKind.HARD),
        ("5.0.0", "smtp; 554 Message rejected as spam", BounceKind.POLICY),
        ("5.5.0", "smtp; 550 5.5.0 Requested action not taken: no such user here", BounceKind.HARD),
        ("5.5.0", "smtp; 550 5.5.0 protocol error", BounceKind.SOFT),
        ("2.0.0", "", None),
        ("bogus", "", None),
    ],
)
def test_classification_of_status_codes(
    status: str, diagnostic: str, kind: BounceKind | None
) -> None:
    assert parse.classify(status, diagnostic) is kind


@pytest.mark.parametrize(
    ("status", "diagnostic", "expected"),
    [
        ("5.1.1", "", "5.1.1"),
        ("5.1.1 (bad destination mailbox)", "", "5.1.1"),
        ("5.0.0", "smtp; 550 5.1.1 <a@b.example>: Recipient address rejected", "5.1.1"),
        ("5.0.0", "smtp; 452 4.2.2 over quota", "5.0.0"),  # another class: not taken
        ("4.0.0", "smtp; 452-4.2.2 The recipient's inbox is out of storage space", "4.2.2"),
        ("", "smtp; 550 5.1.2 Host unknown", "5.1.2"),
        ("", "smtp; 550 Mailbox not found", "5.0.0"),
        ("", "x-unix; something broke", None),
    ],
)
def test_effective_status(status: str, diagnostic: str, expected: str | None) -> None:
    assert parse.effective_status(status, diagnostic) == expected


def test_a_delay_notice_is_not_a_bounce() -> None:
    raw = pure("gmail-4.2.2-mailbox-full.eml").replace(b"Action: failed", b"Action: delayed")
    result = parse.verdict(parse.parse(raw))
    assert result.kind is None and "delay" in result.reason


def test_a_success_notice_is_not_a_bounce() -> None:
    raw = (
        pure("postfix-5.1.1-user-unknown.eml")
        .replace(b"Action: failed", b"Action: delivered")
        .replace(b"Status: 5.1.1", b"Status: 2.0.0")
    )
    result = parse.verdict(parse.parse(raw))
    assert result.kind is None and "delivered" in result.reason


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [
        ("abuse", BounceKind.COMPLAINT),
        ("fraud", BounceKind.COMPLAINT),
        ("auth-failure", BounceKind.POLICY),
        ("not-spam", None),
        ("other", None),
    ],
)
def test_feedback_types(feedback_type: str, kind: BounceKind | None) -> None:
    raw = pure("arf-complaint.eml").replace(
        b"Feedback-Type: abuse", f"Feedback-Type: {feedback_type}".encode()
    )
    assert parse.verdict(parse.parse(raw)).kind is kind


def test_an_smtputf8_dsn_is_read_too() -> None:
    # RFC 6533: Postfix reports for SMTPUTF8 mail in message/global-delivery-status.
    raw = (
        pure("postfix-5.1.1-user-unknown.eml", rcpt="jörg@example.net")
        .replace(b"report-type=delivery-status", b"report-type=global-delivery-status")
        .replace(b"Type: message/delivery-status", b"Type: message/global-delivery-status")
    )
    report = parse.parse(raw)
    assert report.form is Form.DSN and PURE["verp"] in report.verp_candidates
    result = parse.verdict(report)
    assert (result.kind, result.status, result.recipient) == (
        BounceKind.HARD,
        "5.1.1",
        "jörg@example.net",
    )


def test_other_reports_are_not_bounces() -> None:
    receipt = BROKEN_REPORT.replace(b"delivery-status", b"disposition-notification")
    assert parse.verdict(parse.parse(receipt)).reason.startswith("a read receipt")
    tls = BROKEN_REPORT.replace(b"delivery-status", b"tlsrpt")
    assert parse.verdict(parse.parse(tls)).kind is None


def test_the_auto_reply_and_the_plain_text_bounce_say_what_they_are() -> None:
    ooo = parse.verdict(parse.parse(pure("autoreply-out-of-office.eml")))
    assert "auto-reply" in ooo.reason
    qmail = parse.verdict(parse.parse(pure("qmail-plain-text.eml")))
    assert "plain text" in qmail.reason


BROKEN_REPORT = b"""From: MAILER-DAEMON@mail.example
To: bounces+1-abcdefghij@ledger.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Something failed.
--b--
"""


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"  \r\n\r\n", "empty"),
        (b"this is not an email message\njust text\n", "no header fields"),
        (bytes(range(256)) * 4, "no header fields"),
        (BROKEN_REPORT, "without a delivery-status part"),
        (
            BROKEN_REPORT.replace(
                b"--b--",
                b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n--b--",
            ),
            "without per-recipient fields",
        ),
        (
            BROKEN_REPORT.replace(
                b"--b--",
                b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
                b"Final-Recipient: rfc822; a@b.example\nAction: failed\n\n--b--",
            ),
            "without a status code",
        ),
        (
            BROKEN_REPORT.replace(b"delivery-status", b"feedback-report"),
            "without a message/feedback-report part",
        ),
    ],
    ids=[
        "empty",
        "blank",
        "text",
        "binary",
        "no-status-part",
        "no-recipients",
        "no-status",
        "arf-without-report",
    ],
)
def test_unparseable_input_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(Unparseable, match=reason):
        parse.parse(raw)


def test_mangled_reports_never_raise_anything_but_unparseable() -> None:
    rng = random.Random(3464)
    sources = [pure(path.name) for path in sorted(FIXTURES.glob("*.eml"))]
    for _ in range(400):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randrange(1, len(data) + 1)]
        try:
            report = parse.parse(bytes(data))
        except Unparseable:
            continue
        parse.verdict(report)


def test_split_mbox_unescapes_and_limits() -> None:
    stream = [
        b"From a@example.com Mon Mar  3 07:02:14 2025\n",
        b"Subject: one\n",
        b"\n",
        b">From the desk of someone\n",
        b">>From quoted twice\n",
        b"\n",
        b"From b@example.com Mon Mar  3 07:02:15 2025\n",
        b"Subject: two\n",
        b"\n",
        b"x" * 100 + b"\n",
        b"\n",
        b"From c@example.com Mon Mar  3 07:02:16 2025\n",
        b"Subject: three\n",
    ]
    one, two, three = parse.split_mbox(stream, max_bytes=80)
    assert one == b"Subject: one\n\nFrom the desk of someone\n>From quoted twice\n"
    assert two is None  # over the limit
    assert three == b"Subject: three\n"


def test_several_mbox_fixture_splits_into_six() -> None:
    with (FIXTURES / "several.mbox").open("rb") as stream:
        found = list(parse.split_mbox(stream, max_bytes=1 << 20))
    assert len(found) == 6 and all(found)
    assert b"\nFrom the desk of Jamie" in found[3]


# ---- against the database


@dataclass(frozen=True)
class Target:
    """One delivery of one reader, as a bounce about it would name it."""

    delivery_id: int
    subscriber_id: int
    edition_id: int
    email: str
    message_id: str
    verp: str


def make_target(
    app: Flask, email: str = "reader@example.net", edition_id: int | None = None
) -> Target:
    """A reader (reused if the address exists), an edition (or the given one) and its delivery."""
    with app.app_context():
        subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
        if subscriber is None:
            subscriber = Subscriber(email=email, status="active", frequency="daily")
            subscriber.topics = ["analytics"]
            db.session.add(subscriber)
            db.session.flush()
        if edition_id is None:
            edition = Edition(frequency="daily", subject="Your daily digest", covers_until=utcnow())
            db.session.add(edition)
            db.session.flush()
            edition_id = edition.id
        message_id = digest_message_id(edition_id, subscriber.uid)
        delivery = Delivery(
            edition_id=edition_id,
            subscriber_id=subscriber.id,
            state="sent",
            message_id=message_id,
            sent_at=utcnow(),
        )
        db.session.add(delivery)
        db.session.commit()
        return Target(
            delivery.id, subscriber.id, edition_id, email, message_id, verp.address(delivery.id)
        )


def report(name: str, target: Target, **overrides: str) -> bytes:
    values = {"verp": target.verp, "message_id": target.message_id, "rcpt": target.email}
    return fill(name, **{**values, **overrides})


def run(app: Flask, raw: bytes, *, now: datetime | None = None) -> process.Outcome:
    with app.app_context():
        return process.process_message(raw, "test", now=now)


def state(app: Flask, target: Target) -> dict[str, Any]:
    """Everything a bounce may change about a reader."""
    with app.app_context():
        subscriber = db.session.get(Subscriber, target.subscriber_id)
        return {
            "status": subscriber.status if subscriber else None,
            "suppression": db.session.scalar(
                select(Suppression.reason).where(
                    Suppression.address_hash == address_hash(target.email)
                )
            ),
            "events": [
                (event.kind, event.status, event.delivery_id)
                for event in db.session.scalars(
                    select(BounceEvent)
                    .where(BounceEvent.subscriber_id == target.subscriber_id)
                    .order_by(BounceEvent.id)
                )
            ],
        }


def total_events(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(BounceEvent)) or 0)


@pytest.mark.parametrize(
    "name",
    ["postfix-5.1.1-user-unknown.eml", "exim-5.1.1.eml", "gmail-5.1.1-no-such-user.eml"],
)
def test_hard_bounce_suppresses_at_once(app: Flask, name: str) -> None:
    target = make_target(app)
    outcome = run(app, report(name, target))
    assert outcome.result == "hard" and outcome.suppressed
    assert outcome.delivery_id == target.delivery_id
    assert state(app, target) == {
        "status": "bounced",
        "suppression": "bounced",
        "events": [("hard", "5.1.1", target.delivery_id)],
    }
    with app.app_context():
        event = db.session.scalar(select(BounceEvent))
        assert event is not None
        assert event.source == "test" and event.received_at <= utcnow()
        assert target.email not in event.diagnostic and "5.1.1" in event.diagnostic


def test_policy_rejection_is_recorded_and_alerted_not_suppressed(
    app: Flask, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Running the migrations in-process (the app fixture) calls logging's fileConfig, which
    # disables loggers that already exist; production runs `db upgrade` as its own command.
    monkeypatch.setattr(logging.getLogger("newsletter.bounces.process"), "disabled", False)
    target = make_target(app)
    with caplog.at_level(logging.WARNING, logger="newsletter.bounces.process"):
        outcome = run(app, report("postfix-5.7.1-blocked.eml", target))
    assert outcome.result == "policy" and not outcome.suppressed
    assert "Spamhaus" in outcome.diagnostic
    assert state(app, target) == {
        "status": "active",
        "suppression": None,
        "events": [("policy", "5.7.1", target.delivery_id)],
    }
    assert any("policy rejection 5.7.1" in record.getMessage() for record in caplog.records)


def test_complaint_suppresses_at_once_and_is_a_withdrawal(app: Flask) -> None:
    target = make_target(app)
    outcome = run(app, report("arf-complaint.eml", target))
    assert outcome.result == "complaint" and outcome.suppressed
    assert state(app, target) == {
        "status": "complained",
        "suppression": "complained",
        "events": [("complaint", None, target.delivery_id)],
    }
    with app.app_context():
        [logged] = db.session.scalars(
            select(ConsentEvent).where(ConsentEvent.subscriber_id == target.subscriber_id)
        ).all()
        assert logged.action == "complaint" and logged.source == "bounces:test"
        assert logged.detail["previous_status"] == "active"


def test_a_complaint_naming_only_the_recipient_acts_on_nobody(app: Flask) -> None:
    # No VERP address and no Message-ID of ours: anybody could have written it, about anyone.
    target = make_target(app)
    raw = report(
        "arf-complaint.eml",
        target,
        verp="newsletter@ledger.example",
        message_id="<unrelated@elsewhere.example>",
        rcpt="READER@example.net",
    )
    outcome = run(app, raw)
    assert outcome.result == "ignored" and outcome.reason == process.UNMATCHED
    assert state(app, target)["events"] == []
    assert state(app, target)["status"] == "active"
    with app.app_context():
        actions = db.session.scalars(
            select(ConsentEvent.action).where(ConsentEvent.subscriber_id == target.subscriber_id)
        ).all()
    assert "complaint" not in actions


def test_dsn_found_by_the_original_message_id_when_there_is_no_verp(app: Flask) -> None:
    target = make_target(app)
    raw = report("postfix-5.1.1-user-unknown.eml", target, verp="newsletter@ledger.example")
    outcome = run(app, raw)
    assert outcome.result == "hard" and outcome.delivery_id == target.delivery_id
    assert state(app, target)["suppression"] == "bounced"


def test_a_dsn_naming_nobody_of_ours_changes_nothing(app: Flask) -> None:
    # The Final-Recipient is a subscriber, but without VERP or our Message-ID a DSN is a guess.
    target = make_target(app)
    raw = report(
        "postfix-5.1.1-user-unknown.eml",
        target,
        verp="newsletter@ledger.example",
        message_id="<digest.999.nobody@ledger.example>",
    )
    outcome = run(app, raw)
    assert outcome.result == "ignored" and outcome.reason == process.UNMATCHED
    assert state(app, target) == {"status": "active", "suppression": None, "events": []}


@pytest.mark.parametrize("how", ["bad-tag", "other-id", "old-key"])
def test_a_forged_verp_address_changes_nothing(app: Flask, how: str) -> None:
    target = make_target(app)
    victim = make_target(app, email="victim@example.org")
    if how == "bad-tag":
        forged = target.verp.rpartition("-")[0] + "-aaaaaaaaaa@ledger.example"
    elif how == "other-id":
        # A genuine tag moved onto another delivery's id.
        forged = target.verp.replace(f"+{target.delivery_id}-", f"+{victim.delivery_id}-")
    else:
        forged = verp.make(
            victim.delivery_id, verp.derive_key("a-key-we-never-had"), "bounces", "ledger.example"
        )
    # The forger even copied the victim's real Message-ID: still nothing happens.
    raw = report("forged-verp.eml", victim, forged_verp=forged)
    outcome = run(app, raw)
    assert outcome.result == "ignored" and outcome.reason == process.FORGED
    for reader in (target, victim):
        assert state(app, reader) == {"status": "active", "suppression": None, "events": []}
    assert total_events(app) == 0


@with_config(SECRET_KEY="the-new-key-9876543210", SECRET_KEY_FALLBACKS=["the-old-key-0123456789"])
def test_bounces_to_addresses_signed_with_a_previous_key_still_count(app: Flask) -> None:
    target = make_target(app)
    old = verp.make(
        target.delivery_id, verp.derive_key("the-old-key-0123456789"), "bounces", "ledger.example"
    )
    outcome = run(app, report("exim-5.1.1.eml", target, verp=old))
    assert outcome.result == "hard"


@pytest.mark.parametrize("name", ["autoreply-out-of-office.eml", "qmail-plain-text.eml"])
def test_auto_replies_and_plain_text_bounces_suppress_nobody(app: Flask, name: str) -> None:
    target = make_target(app)
    outcome = run(app, report(name, target))
    assert outcome.result == "ignored" and outcome.reason
    assert state(app, target) == {"status": "active", "suppression": None, "events": []}


def test_a_bounce_for_a_deleted_delivery_is_ignored(app: Flask) -> None:
    target = make_target(app)
    with app.app_context():
        db.session.delete(db.session.get(Delivery, target.delivery_id))
        db.session.commit()
    outcome = run(app, report("postfix-5.1.1-user-unknown.eml", target))
    assert outcome.result == "ignored" and "no longer exists" in outcome.reason
    assert state(app, target)["suppression"] is None


def test_the_same_report_twice_counts_once(app: Flask) -> None:
    target = make_target(app)
    raw = report("gmail-4.2.2-mailbox-full.eml", target)
    assert run(app, raw).result == "soft"
    again = run(app, raw)
    assert again.result == "ignored" and again.reason == process.REPEATED
    assert state(app, target)["events"] == [("soft", "4.2.2", target.delivery_id)]


@with_config(SOFT_BOUNCE_LIMIT=3, SOFT_BOUNCE_WINDOW_DAYS=30)
def test_soft_bounces_suppress_only_at_the_nth_within_the_window(app: Flask) -> None:
    first = make_target(app)
    targets = [first, *(make_target(app) for _ in range(3))]  # one reader, four editions
    assert len({t.subscriber_id for t in targets}) == 1
    now = utcnow()
    # Two soft bounces long ago: outside the window, they do not count.
    for target in targets[:2]:
        outcome = run(
            app, report("gmail-4.2.2-mailbox-full.eml", target), now=now - timedelta(days=45)
        )
        assert outcome.result == "soft" and not outcome.suppressed
    outcome = run(
        app, report("gmail-4.2.2-mailbox-full.eml", targets[2]), now=now - timedelta(days=1)
    )
    assert not outcome.suppressed and state(app, first)["status"] == "active"
    # A second copy of the same bounce is not a second soft bounce.
    run(app, report("gmail-4.2.2-mailbox-full.eml", targets[2]), now=now)
    assert state(app, first)["suppression"] is None
    # Two within the window so far; add two more, the third one suppresses.
    extra = make_target(app)
    outcome = run(app, report("gmail-4.2.2-mailbox-full.eml", extra), now=now)
    assert not outcome.suppressed and state(app, first)["status"] == "active"
    outcome = run(app, report("gmail-4.2.2-mailbox-full.eml", targets[3]), now=now)
    assert outcome.result == "soft" and outcome.suppressed
    assert state(app, first)["status"] == "bounced"
    assert state(app, first)["suppression"] == "bounced"
    assert [kind for kind, _, _ in state(app, first)["events"]] == ["soft"] * 5


@with_config(SOFT_BOUNCE_LIMIT=1)
def test_soft_bounce_limit_is_a_setting(app: Flask) -> None:
    target = make_target(app)
    assert run(app, report("gmail-4.2.2-mailbox-full.eml", target)).suppressed


def test_hard_bounce_of_an_unsubscribed_reader_keeps_their_status(app: Flask) -> None:
    target = make_target(app)
    with app.app_context():
        db.session.get(Subscriber, target.subscriber_id).status = "unsubscribed"
        db.session.commit()
    outcome = run(app, report("postfix-5.1.1-user-unknown.eml", target))
    assert outcome.result == "hard" and outcome.suppressed
    assert state(app, target)["status"] == "unsubscribed"
    assert state(app, target)["suppression"] == "bounced"


def test_events_outlive_the_reader(app: Flask) -> None:
    target = make_target(app)
    run(app, report("postfix-5.1.1-user-unknown.eml", target))
    with app.app_context():
        db.session.delete(db.session.get(Subscriber, target.subscriber_id))
        db.session.commit()
        event = db.session.scalar(select(BounceEvent))
        assert event is not None and event.subscriber_id is None and event.delivery_id is None
        assert db.session.scalar(select(Suppression.reason)) == "bounced"


def test_bounce_counts_per_edition(app: Flask) -> None:
    one = make_target(app, email="one@example.net")
    two = make_target(app, email="two@example.net", edition_id=one.edition_id)
    three = make_target(app, email="three@example.net", edition_id=one.edition_id)
    other = make_target(app, email="four@example.net")
    run(app, report("postfix-5.1.1-user-unknown.eml", one))
    run(app, report("gmail-4.2.2-mailbox-full.eml", two))
    run(app, report("arf-complaint.eml", three))
    run(app, report("postfix-5.7.1-blocked.eml", other))
    with app.app_context():
        assert process.bounce_counts(one.edition_id) == {"hard": 1, "soft": 1, "complaint": 1}
        assert process.bounce_counts(other.edition_id) == {"policy": 1}
        assert process.bounce_counts(-1) == {}


# ---- the command


def mbox_values(targets: list[Target]) -> dict[str, str]:
    values = {}
    for number, target in enumerate(targets, 1):
        values.update(
            {
                f"verp_{number}": target.verp,
                f"message_id_{number}": target.message_id,
                f"rcpt_{number}": target.email,
            }
        )
    return values


def test_cli_processes_one_message(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    target = make_target(app)
    path = tmp_path / "bounce.eml"
    path.write_bytes(report("postfix-5.1.1-user-unknown.eml", target))
    result = runner.invoke(args=["bounces", "process", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "Processed 1 message: 1 hard, 0 soft, 0 policy, 0 complaints, 0 ignored, 0 unparseable."
        in result.output
    )
    # Whom it suppressed, not only how many.
    assert f"Suppressed 1 address:\n  {target.email}\n" in result.output
    assert state(app, target)["status"] == "bounced"


def test_cli_processes_an_mbox(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    targets = [make_target(app, email=f"reader{n}@example.net") for n in range(1, 6)]
    path = tmp_path / "parse.mbox"
    path.write_bytes(fill("several.mbox", **mbox_values(targets)))
    result = runner.invoke(args=["bounces", "process", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "Processed 6 messages: 1 hard, 1 soft, 1 policy, 1 complaint, 1 ignored, 1 unparseable."
        in result.output
    )
    assert "Suppressed 2 addresses:\n  reader1@example.net\n  reader3@example.net\n" in (
        result.output
    )
    assert "Spamhaus" in result.output  # the policy alert is shown
    assert "an auto-reply (out of office), not a bounce" in result.output
    assert "parse.mbox message 5: no header fields" in result.output
    assert [state(app, t)["status"] for t in targets] == [
        "bounced",
        "active",
        "complained",
        "active",
        "active",
    ]
    # Running it again is harmless: every report is recognized.
    again = runner.invoke(args=["bounces", "process", str(path)])
    assert "0 hard, 0 soft, 0 policy, 0 complaints, 5 ignored, 1 unparseable" in again.output
    assert process.REPEATED in again.output
    assert total_events(app) == 4


def test_cli_processes_a_maildir(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    hard, soft, complaint, ooo = (make_target(app, email=f"m{n}@example.net") for n in range(4))
    forged_victim = make_target(app, email="victim@example.net")
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    box.add(report("exim-5.1.1.eml", hard))
    box.add(report("gmail-4.2.2-mailbox-full.eml", soft))
    seen = mailbox.MaildirMessage(report("arf-complaint.eml", complaint))
    seen.set_subdir("cur")  # already read by a person: still processed
    box.add(seen)
    box.add(report("autoreply-out-of-office.eml", ooo))
    box.add(
        report(
            "forged-verp.eml",
            forged_victim,
            forged_verp=forged_victim.verp.rpartition("-")[0] + "-zzzzzzzzzz@ledger.example",
        )
    )
    box.add(b"\x00\x01\x02 garbage \xff\xfe")
    box.close()
    result = runner.invoke(args=["bounces", "process", str(tmp_path / "Maildir")])
    assert result.exit_code == 0, result.output
    assert (
        "Processed 6 messages: 1 hard, 1 soft, 0 policy, 1 complaint, 2 ignored, 1 unparseable."
        in result.output
    )
    assert process.FORGED in result.output
    assert state(app, hard)["status"] == "bounced"
    assert state(app, complaint)["status"] == "complained"
    assert state(app, forged_victim) == {"status": "active", "suppression": None, "events": []}
    # Read, not moved: the folder is the operator's.
    assert len(list(mailbox.Maildir(str(tmp_path / "Maildir"), create=False).iterkeys())) == 6


def test_cli_reads_stdin(app: Flask, runner: FlaskCliRunner) -> None:
    one, two = make_target(app, email="a@example.net"), make_target(app, email="b@example.net")
    result = runner.invoke(args=["bounces", "process", "-"], input=report("exim-5.1.1.eml", one))
    assert "Processed 1 message: 1 hard" in result.output
    mbox = b"From MAILER-DAEMON Mon Mar  3 07:02:14 2025\n" + report(
        "gmail-5.1.1-no-such-user.eml", two
    )
    result = runner.invoke(args=["bounces", "process", "-"], input=mbox)
    assert "Processed 1 message: 1 hard" in result.output, result.output
    assert state(app, two)["status"] == "bounced"


@with_config(BOUNCE_MAX_BYTES=2000)
def test_cli_reports_oversized_messages(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    target = make_target(app)
    path = tmp_path / "big.eml"
    path.write_bytes(report("gmail-5.1.1-no-such-user.eml", target))
    result = runner.invoke(args=["bounces", "process", str(path)])
    assert result.exit_code == 0
    assert "1 unparseable" in result.output and "larger than 2,000 bytes" in result.output
    assert state(app, target)["status"] == "active"


def test_cli_refuses_a_directory_that_is_not_a_maildir(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(args=["bounces", "process", str(tmp_path)])
    assert result.exit_code != 0 and "not a Maildir" in result.output
    missing = runner.invoke(args=["bounces", "process", str(tmp_path / "nothing.eml")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


# ---- the webhook


def post(client: FlaskClient, body: bytes, token: str | None = TOKEN, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kwargs.setdefault("content_type", "message/rfc822")
    return client.post("/webhooks/bounces", data=body, headers=headers, **kwargs)


def test_webhook_is_absent_without_a_token(app: Flask, client: FlaskClient) -> None:
    target = make_target(app)
    response = post(client, report("exim-5.1.1.eml", target))
    assert response.status_code == 404
    assert state(app, target)["events"] == []


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        f"Basic {TOKEN}",
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer",
    ],
)
def test_webhook_refuses_a_bad_token(
    app: Flask, client: FlaskClient, authorization: str | None
) -> None:
    target = make_target(app)
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post(
        "/webhooks/bounces",
        data=report("exim-5.1.1.eml", target),
        headers=headers,
        content_type="message/rfc822",
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert state(app, target) == {"status": "active", "suppression": None, "events": []}


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN)
@pytest.mark.parametrize("content_type", ["message/rfc822", "text/plain; charset=utf-8"])
def test_webhook_processes_a_bounce(app: Flask, client: FlaskClient, content_type: str) -> None:
    target = make_target(app)
    # No cookie, no CSRF token: the bearer token is the credential.
    response = post(client, report("exim-5.1.1.eml", target), content_type=content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["processed"] == 1 and body["hard"] == 1 and body["suppressed"] == 1
    assert state(app, target)["status"] == "bounced"
    with app.app_context():
        assert db.session.scalar(select(BounceEvent.source)) == "webhook"


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN)
def test_webhook_answers_ignored_and_policy_with_their_reasons(
    app: Flask, client: FlaskClient
) -> None:
    target = make_target(app)
    ooo = post(client, report("autoreply-out-of-office.eml", target)).get_json()
    assert (
        ooo["ignored"] == 1
        and "an auto-reply (out of office), not a bounce" in ooo["ignored_reasons"]
    )
    policy = post(client, report("postfix-5.7.1-blocked.eml", target)).get_json()
    assert policy["policy"] == 1 and policy["policy_alerts"][0]["status"] == "5.7.1"
    forged = report(
        "forged-verp.eml",
        target,
        forged_verp=target.verp.replace(
            f"+{target.delivery_id}-", f"+{target.delivery_id + 1000}-"
        ),
    )
    assert post(client, forged).get_json()["ignored_reasons"] == {process.FORGED: 1}
    assert state(app, target)["status"] == "active"


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN)
def test_webhook_rejects_unparseable_input(app: Flask, client: FlaskClient) -> None:
    response = post(client, b"definitely not a message")
    assert response.status_code == 400
    assert "no header fields" in response.get_json()["error"]
    assert post(client, b"").status_code == 400


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN, BOUNCE_MAX_BYTES=4096)
def test_webhook_limits_the_size(app: Flask, client: FlaskClient) -> None:
    target = make_target(app)
    response = post(client, report("gmail-5.1.1-no-such-user.eml", target))
    assert response.status_code == 413
    assert state(app, target)["events"] == []


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN)
def test_webhook_accepts_bounces_larger_than_the_form_limit(
    app: Flask, client: FlaskClient
) -> None:
    # Reports carry the original digest (up to ~100 KB); the app-wide form limit is 64 KB.
    target = make_target(app)
    raw = report("exim-5.1.1.eml", target).replace(
        b"Here is what we published since yesterday.", b"x" * 150_000
    )
    response = post(client, raw)
    assert response.status_code == 200 and response.get_json()["hard"] == 1


@with_config(BOUNCE_WEBHOOK_TOKEN=TOKEN)
def test_webhook_wants_a_raw_message(app: Flask, client: FlaskClient) -> None:
    target = make_target(app)
    response = post(client, report("exim-5.1.1.eml", target), content_type="application/json")
    assert response.status_code == 415
    assert client.get("/webhooks/bounces").status_code == 405
    assert state(app, target)["events"] == []
