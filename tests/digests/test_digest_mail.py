"""The digest as it arrives: real sends through the SMTP backend to a real server, parsed back.

Each test plans and sends a daily edition with ``newsletter digest send`` (in-process, no
broker) to an aiosmtpd server on loopback and reads the bytes that server received with the
email package. The rules checked: the message format (RFC 5322, 2046, 2047, 2919, 3834, 6531), the
unsubscribe headers and links (RFC 2369, RFC 8058), escaping and size, plus topics, hostile
articles and the digest CLI and archive.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from newsletter.clock import local_date, utcnow
from newsletter.db.models import Article, Delivery, Edition, Subscriber
from newsletter.digests import ledger, planning
from newsletter.digests.compose import Composer
from newsletter.digests.content import load_content
from newsletter.extensions import db
from newsletter.mail import verp
from tests.support.digest_helpers import (
    add_article,
    add_reader,
    all_defects,
    delivery_rows,
    header_names,
    html_part,
    parse,
    raw_header,
    text_part,
)
from tests.support.smtp_server import DROP, ReceivedMessage, SMTPTestServer

BASE_URL = "https://news.example.test"
SITE = "The Daily Ledger"
POSTAL = "Ledger Media Ltd, 12 Fleet Street, London EC4Y 1AA"
LIST_ID = f'"{SITE}" <newsletter.ledger.example>'
# Every header a digest carries, once each: anything else got in from somewhere.
EXPECTED_HEADERS = Counter(
    [
        "To",
        "Date",
        "Message-ID",
        "List-Unsubscribe",
        "From",
        "Subject",
        "MIME-Version",
        "Auto-Submitted",
        "List-Id",
        "List-Unsubscribe-Post",
        "Content-Type",
    ]
)
INJECTION = "Evil\r\nBcc: victim@example.org"
ENCODED_INJECTION = ("=?utf-8?q?Evil=0D=0ABcc:_victim@example.org?=",) * 2
ARTICLE_URL = re.compile(r"https://ledger\.example/[^\s\"'<>]+")
GMAIL_CLIP = 102 * 1024


@pytest.fixture
def config_overrides(smtp_server: SMTPTestServer) -> dict[str, Any]:
    return smtp_server.app_config(
        BASE_URL=BASE_URL,
        SITE_NAME=SITE,
        POSTAL_ADDRESS=POSTAL,
        SMTP_TIMEOUT=5.0,
        # A failure shows up as a failed row at once rather than as retries an hour apart.
        RETRY_BASE_SECONDS=0.05,
        MAX_ATTEMPTS=2,
    )


# ---- helpers ------------------------------------------------------------------------------


def send_daily(runner: FlaskCliRunner, *extra: str) -> Result:
    result = runner.invoke(args=["digest", "send", "--frequency", "daily", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def newest_edition(app: Flask) -> int:
    with app.app_context():
        found = db.session.scalar(select(func.max(Edition.id)))
        assert found is not None, "no edition was created"
        return int(found)


def by_recipient(server: SMTPTestServer) -> dict[str, ReceivedMessage]:
    """Each recipient's one message (a second copy fails the test)."""
    found: dict[str, ReceivedMessage] = {}
    for message in server.messages:
        assert len(message.rcpt_tos) == 1, message.rcpt_tos
        assert message.rcpt_tos[0] not in found, f"two copies for {message.rcpt_tos[0]}"
        found[message.rcpt_tos[0]] = message
    return found


def decoded(value: object) -> str:
    """A parsed header value, with raw UTF-8 (RFC 6532) turned back from surrogate escapes."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8")


def lines_of(data: bytes) -> list[bytes]:
    assert b"\r\n" in data
    lines = data.split(b"\r\n")
    bare = [line for line in lines if b"\r" in line or b"\n" in line]
    assert not bare, f"bare CR or LF in {bare[:3]!r}"
    return lines


def title_limit(app: Flask, wanted: int) -> int:
    """``wanted``, or less where the database enforces Article.title's length (PostgreSQL)."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            return wanted
    length = Article.__table__.c.title.type.length
    assert length is not None
    return min(wanted, int(length))


def unsubscribe_url(message: EmailMessage) -> str:
    values = message.get_all("List-Unsubscribe") or []
    assert len(values) == 1, values
    found = re.fullmatch(r"<(https://[^<>\s,]+)>", str(values[0]).strip())
    assert found, f"List-Unsubscribe is not one https URL: {values[0]!r}"
    return found.group(1)


def status_of(app: Flask, email: str) -> str:
    with app.app_context():
        return str(db.session.scalar(select(Subscriber.status).where(Subscriber.email == email)))


def assert_only_media_rules_kept(html: str) -> None:
    """Every style is inlined but the rules no element can carry: media queries, and the
    Outlook apps' dark-mode attributes, which are only there once the mail is shown."""
    [sheet] = re.findall(r"<style\b[^>]*>(.*?)</style>", html, re.S | re.I)
    rules = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", sheet)
    for selectors in re.findall(r"([^{}]+)\{[^{}]*\}", rules):
        for selector in selectors.split(","):
            assert selector.strip() == ":root" or selector.strip().startswith(
                ("[data-ogsc]", "[data-ogsb]")
            ), selector


def sections_in_text(text: str) -> list[tuple[str, list[str]]]:
    """The text part's section headings (underlined capitals) with the article URLs of each."""
    found: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line and line.isupper() and following == "-" * len(line):
            found.append((line, []))
        elif found and ARTICLE_URL.fullmatch(line):
            found[-1][1].append(line)
    return found


# ---- RFC 5322 3.6: one of each, a deterministic and unique Message-ID --------------------


def test_each_mail_has_exactly_one_date_from_to_subject_and_message_id(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    readers = {"ann@example.org": "Ann Reader", "bob@example.org": "", "cy@example.net": "Cy"}
    for email, name in readers.items():
        add_reader(app, email, name=name)

    send_daily(runner)

    mails = by_recipient(smtp_server)
    assert set(mails) == set(readers)
    for email, received in mails.items():
        counted = Counter(header_names(received.data))
        for name in ("Date", "From", "To", "Subject", "Message-ID"):
            assert counted[name] == 1, (name, counted)
        message = received.parsed()
        sender = message["From"].addresses
        assert len(sender) == 1 and sender[0].addr_spec == "newsletter@ledger.example"
        # The envelope sender is the delivery's VERP return path, naming this very row.
        with app.app_context():
            row = db.session.get(Delivery, verp.parse(received.mail_from))
            assert row is not None and row.message_id == message["Message-ID"]
        to = message["To"].addresses
        assert [(a.addr_spec, a.display_name) for a in to] == [(email, readers[email])]
        assert message["Date"].datetime is not None and message["Date"].datetime.tzinfo
        assert message["Subject"] == f"Rates held steady | {SITE} daily digest"


def test_message_id_is_deterministic_per_edition_and_reader_and_unique_across_readers(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    uids = {email: add_reader(app, email) for email in ("a@example.org", "b@example.org")}

    send_daily(runner)
    edition_id = newest_edition(app)

    mails = by_recipient(smtp_server)
    received_ids = {email: mails[email].parsed()["Message-ID"] for email in uids}
    for email, uid in uids.items():
        assert received_ids[email] == f"<digest.{edition_id}.{uid}@ledger.example>"
    assert len(set(received_ids.values())) == len(uids)
    rows = delivery_rows(app, edition_id)
    assert {email: row[2] for email, row in rows.items()} == received_ids
    # Composing the same row again (a resend) gives the same Message-ID.
    with app.app_context():
        ids = list(db.session.scalars(select(Delivery.id).where(Delivery.edition_id == edition_id)))
        facts = ledger.readers(ids)
        composer = Composer(load_content(edition_id))
        for claimed in facts.values():
            reader = claimed.reader
            assert reader is not None
            again = [parse(composer.message(reader).data) for _ in range(2)]
            assert {m["Message-ID"] for m in again} == {received_ids[reader.email]}


# ---- RFC 5322 2.1.1: line length and folding ---------------------------------------------


def test_no_line_exceeds_998_octets_and_long_headers_are_folded(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    words = ("Parliament debates the very long budget " * 300)[: title_limit(app, 10_000)]
    one_word = "X" * title_limit(app, 10_000)
    huge_summary = "<p>" + "Unbroken" * 20_000 + "</p><p>" + "many words " * 20_000 + "</p>"
    add_article(app, words, summary=huge_summary, minutes_ago=1)
    add_article(app, one_word, summary="y" * 50_000, minutes_ago=2)
    long_name = "Maximilian Alexander " * 4 + "Featherstonehaugh-Worthington"
    add_reader(app, "max@example.org", name=long_name[:100])

    send_daily(runner)

    received = by_recipient(smtp_server)["max@example.org"]
    for line in lines_of(received.data):
        assert len(line) <= 998, f"a line of {len(line)} octets: {line[:80]!r}"
    for name in ("Subject", "To"):
        field = raw_header(received.data, name)
        folded = field.split(b"\r\n")[:-1]
        assert all(len(line) <= 78 for line in folded), field
    assert raw_header(received.data, "Subject").count(b"\r\n") > 1, "the Subject is not folded"
    message = received.parsed()
    assert message["Subject"].startswith("Parliament debates the very long budget Parliament")
    assert message["To"].addresses[0].display_name == long_name[:100]
    assert all_defects(message) == []
    assert one_word[:200] in text_part(message)


# ---- CR and LF never reach a header ------------------------------------------------------


@pytest.mark.parametrize(
    ("injection", "shown"),
    [
        (INJECTION, "Evil Bcc: victim@example.org"),
        ("Evil\nBcc: victim@example.org", "Evil Bcc: victim@example.org"),
        ("Evil\rBcc: victim@example.org", "Evil Bcc: victim@example.org"),
        # CR LF spelled as an encoded-word: the email package would decode it into the header.
        ENCODED_INJECTION,
    ],
    ids=["crlf", "lf", "cr", "encoded-word"],
)
def test_line_breaks_in_names_and_titles_never_start_a_header(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer, injection: str, shown: str
) -> None:
    add_article(app, f"Zürich {injection}", minutes_ago=1)  # the lead: the Subject
    add_article(app, f"Headline {injection}", minutes_ago=2)
    names = {
        "ascii@example.org": injection,
        "utf8@example.org": f"Zoë {injection}",
        "jörg@example.org": f"Jörg {injection}",
    }
    for email, name in names.items():
        add_reader(app, email, name=name)

    send_daily(runner)

    mails = by_recipient(smtp_server)
    assert set(mails) == set(names)
    for email, received in mails.items():
        assert received.rcpt_tos == [email]
        assert Counter(header_names(received.data)) == EXPECTED_HEADERS
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"^Bcc:", head, re.I | re.M)
        message = received.parsed()
        assert message["Bcc"] is None
        assert all_defects(message) == []
        assert decoded(message["Subject"]) == f"Zürich {shown} and 1 more | {SITE} daily digest"
        to = message["To"].addresses
        assert [decoded(a.addr_spec) for a in to] == [email]
        # Whitespace aside: Python keeps the space between adjacent encoded-words of a phrase
        # (RFC 2047 6.2 says to drop it); mail clients follow the RFC.
        expected_name = "".join(names[email].replace(injection, shown).split())
        assert "".join(decoded(to[0].display_name).split()) == expected_name
        text = text_part(message)
        assert f"Headline {shown}" in text and f"Zürich {shown}" in text


def test_a_title_that_looks_like_an_encoded_word_is_shown_as_written(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    title = "Breaking =?utf-8?b?SGFja2Vk?= news"
    add_article(app, title)
    add_reader(app, "ann@example.org", name="=?utf-8?q?Admin?=")

    send_daily(runner)

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    assert message["Subject"] == f"{title} | {SITE} daily digest"
    assert message["To"].addresses[0].display_name == "=?utf-8?q?Admin?="


# ---- RFC 2047 and SMTPUTF8 ---------------------------------------------------------------


def test_non_ascii_subject_and_display_name_are_rfc2047_encoded(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    title = "Zürich: Ökonomen erwarten höhere Zinsen, 東京 too"
    add_article(app, title)
    add_reader(app, "jose@example.org", name="José Müller")

    send_daily(runner)

    received = by_recipient(smtp_server)["jose@example.org"]
    assert not received.smtputf8 and "SMTPUTF8" not in received.mail_options
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii(), "raw UTF-8 in the headers of a mail sent without SMTPUTF8"
    subject = raw_header(received.data, "Subject")
    to = raw_header(received.data, "To")
    assert b"=?utf-8?" in subject.lower() and b"=?utf-8?" in to.lower()
    # The encoded-word is the display name only; the address stays literal.
    assert re.search(rb"<jose@example\.org>\r\n$", to), to
    assert b"=?" not in to.split(b"<", 1)[1]
    message = received.parsed()
    assert message["Subject"] == f"{title} | {SITE} daily digest"
    assert message["To"].addresses[0].display_name == "José Müller"
    assert message["To"].addresses[0].addr_spec == "jose@example.org"
    assert all_defects(message) == []


def test_non_ascii_local_part_is_sent_with_smtputf8_and_no_encoded_word_in_the_address(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    # A long name forces folding, where Python 3.11's email policy falls back to encoded-words.
    name = "Jörg Ünïcødé-Straßenbahn " * 3 + "Øster"
    add_reader(app, "jörg@example.org", name=name)

    send_daily(runner)

    received = by_recipient(smtp_server)["jörg@example.org"]
    assert received.smtputf8 and "SMTPUTF8" in received.mail_options
    assert received.rcpt_tos == ["jörg@example.org"]
    to = raw_header(received.data, "To")
    assert "<jörg@example.org>".encode() in to
    assert b"=?" not in to, f"an encoded-word in an SMTPUTF8 address header: {to!r}"
    message = received.parsed()
    parsed_to = decoded(message["To"])
    assert parsed_to.endswith("<jörg@example.org>")
    assert " ".join(name.split()) in parsed_to


def test_without_smtputf8_the_utf8_reader_fails_with_a_reason_and_the_others_get_theirs(
    app: Flask,
    runner: FlaskCliRunner,
    smtp_server_factory: Callable[..., SMTPTestServer],
) -> None:
    ascii_only = smtp_server_factory(smtputf8=False)
    app.config.update(ascii_only.app_config(SMTP_TIMEOUT=5.0))
    add_article(app, "Rates held steady")
    for email in ("first@example.org", "jörg@example.org", "last@example.org"):
        add_reader(app, email)

    send_daily(runner)

    assert set(by_recipient(ascii_only)) == {"first@example.org", "last@example.org"}
    rows = delivery_rows(app, newest_edition(app))
    assert rows["first@example.org"][0] == rows["last@example.org"][0] == "sent"
    state, reason, _ = rows["jörg@example.org"]
    assert state == "failed"
    assert reason and "SMTPUTF8" in reason
    assert status_of(app, "jörg@example.org") == "active"  # our limitation, not a bounce


def test_international_domain_goes_out_as_its_a_label_without_smtputf8(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "jose@bücher.example", name="José")
    add_reader(app, "ann@example.org")

    send_daily(runner)

    mails = by_recipient(smtp_server)
    assert set(mails) == {"jose@xn--bcher-kva.example", "ann@example.org"}
    received = mails["jose@xn--bcher-kva.example"]
    assert not received.smtputf8
    to = raw_header(received.data, "To")
    assert to.isascii() and to.endswith(b"<jose@xn--bcher-kva.example>\r\n"), to
    assert b"=?" not in to.split(b"<", 1)[1]
    assert set(delivery_rows(app, newest_edition(app))["jose@bücher.example"][:1]) == {"sent"}


# ---- structure (RFC 2046 5.1.4), List-Id (RFC 2919), Auto-Submitted (RFC 3834) ----------


def test_body_is_multipart_alternative_with_text_first_and_html_last(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")

    send_daily(runner)

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    assert message.get_content_type() == "multipart/alternative"
    assert message["MIME-Version"] == "1.0"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert all_defects(message) == []


def test_one_stable_list_id_and_auto_submitted_in_every_mail(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")
    add_reader(app, "bob@example.org", ["business"])
    add_article(app, "Shares up", "Business")
    send_daily(runner)
    add_article(app, "A later story", minutes_ago=0.1)
    send_daily(runner)  # a second edition

    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        message = received.parsed()
        assert message.get_all("List-Id") == [LIST_ID]
        assert message.get_all("Auto-Submitted") == ["auto-generated"]
        assert len(message.get_all("Feedback-ID") or []) <= 1


def test_non_ascii_site_name_keeps_the_list_id_outside_any_quoted_string(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    app.config["SITE_NAME"] = 'Le Quotidien "Éclair"'
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")

    send_daily(runner)

    received = by_recipient(smtp_server)["ann@example.org"]
    field = raw_header(received.data, "List-Id")
    value = b" ".join(field.split(b"\r\n")).split(b":", 1)[1].strip()
    assert value.isascii()
    # RFC 2919: phrase "<" list-id ">"; RFC 2047 5: no encoded-word inside a quoted string.
    found = re.fullmatch(rb"(.*)<newsletter\.ledger\.example>", value)
    assert found, value
    phrase = found.group(1)
    assert phrase.count(b'"') - phrase.count(b'\\"') in (0, 2)
    for quoted in re.findall(rb'"(?:[^"\\]|\\.)*"', phrase):
        assert b"=?" not in quoted, f"an encoded-word inside a quoted string: {value!r}"
    assert received.parsed()["List-Id"] == 'Le Quotidien "Éclair" <newsletter.ledger.example>'


# ---- Unsubscribe 8, 13, 14 ----------------------------------------------------------------


def test_list_unsubscribe_is_one_https_url_with_one_click_post(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")
    add_reader(app, "bob@example.org")

    send_daily(runner)

    urls = set()
    for received in smtp_server.messages:
        message = received.parsed()
        url = unsubscribe_url(message)
        assert url.startswith(f"{BASE_URL}/unsubscribe/")
        urls.add(url)
        assert message.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert len(urls) == 2  # one per reader


def test_one_click_post_to_the_list_unsubscribe_url_unsubscribes(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")
    add_reader(app, "bob@example.org")
    send_daily(runner)
    url = unsubscribe_url(by_recipient(smtp_server)["ann@example.org"].parsed())

    mail_client = app.test_client(use_cookies=False)
    response = mail_client.post(urlsplit(url).path, data={"List-Unsubscribe": "One-Click"})

    assert 200 <= response.status_code < 300 and "Location" not in response.headers
    assert status_of(app, "ann@example.org") == "unsubscribed"
    assert status_of(app, "bob@example.org") == "active"


def test_both_parts_show_the_unsubscribe_link_and_the_postal_address(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")

    send_daily(runner)

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    url = unsubscribe_url(message)
    text, html = text_part(message), html_part(message)
    assert re.search(rf"Unsubscribe: {re.escape(url)}$", text, re.M), text
    assert POSTAL in text
    link = re.search(r'<a href="([^"]+)"[^>]*>Unsubscribe</a>', html)
    assert link and link.group(1) == url
    assert POSTAL in html


def test_reader_who_unsubscribes_after_planning_gets_nothing_and_is_skipped_with_a_reason(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "stays@example.org")
    leaving_uid = add_reader(app, "leaves@example.org")
    with app.app_context():
        edition = planning.plan("daily")
        assert edition is not None
        edition_id = edition.id
    assert set(delivery_rows(app, edition_id)) == {"stays@example.org", "leaves@example.org"}
    from newsletter.tokens import Purpose, sign

    with app.app_context():
        token = sign(Purpose.UNSUBSCRIBE, {"s": leaving_uid})
    response = app.test_client(use_cookies=False).post(
        f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200

    send_daily(runner)  # resumes the planned edition

    assert set(by_recipient(smtp_server)) == {"stays@example.org"}
    rows = delivery_rows(app, edition_id)
    assert rows["stays@example.org"][0] == "sent"
    state, reason, _ = rows["leaves@example.org"]
    assert state == "skipped"
    assert reason and "unsubscribed" in reason


# ---- Rendering 32, 33 ---------------------------------------------------------------------


def test_html_escapes_titles_while_text_part_and_subject_keep_them_literal(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "A & B merge", minutes_ago=1)
    add_article(app, "<script>alert(1)</script> in the wild", minutes_ago=2)
    add_reader(app, "ann@example.org", name="<b>Ann</b> & co")

    send_daily(runner)

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    assert message["Subject"] == f"A & B merge and 1 more | {SITE} daily digest"
    html, text = html_part(message), text_part(message)
    assert "A &amp; B merge" in html and "A & B merge" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; in the wild" in html
    assert "<script" not in html.lower()
    assert "Hello &lt;b&gt;Ann&lt;/b&gt; &amp; co," in html
    assert "A & B merge" in text and "&amp;" not in text
    assert "<script>alert(1)</script> in the wild" in text
    assert "Hello <b>Ann</b> & co," in text


def test_feed_html_in_summaries_is_sanitized(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    summary = (
        '<p onclick="steal()">Kept <b>bold</b> and <a href="https://ledger.example/more">more'
        "</a><script>alert('x')</script>"
        '<img src="https://ledger.example/i.png" onerror="alert(2)">'
        '<a href="javascript:alert(3)">click</a><iframe src="https://evil.example"></iframe>'
        '<style>body{display:none}</style><svg onload="alert(4)"></svg></p>'
    )
    add_article(app, "Rates held steady", summary=summary)
    add_reader(app, "ann@example.org")

    send_daily(runner)

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    html = html_part(message).lower()
    for bad in (
        "<script",
        "alert(",
        "onerror",
        "onclick",
        "onload",
        "javascript:",
        "<iframe",
        "<svg",
        "display:none",
    ):
        assert bad not in html, bad
    # The one stylesheet is the template's own (dark mode and narrow screens); none from the feed.
    assert re.findall(r"<style\b[^>]*>", html) == ['<style data-css-inline="keep">']
    assert "kept <b>bold</b> and <a" in html
    text = text_part(message)
    assert "Kept bold and more" in text and "alert" not in text


def test_html_has_inlined_css_a_color_scheme_meta_and_no_external_stylesheets(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")

    send_daily(runner)

    html = html_part(by_recipient(smtp_server)["ann@example.org"].parsed())
    assert_only_media_rules_kept(html)
    assert not re.search(r"<link\b[^>]*stylesheet", html, re.I)
    assert not re.search(r"<script\b", html, re.I)
    assert html.count('style="') >= 5
    assert re.search(r'<meta name="color-scheme" content="[^"]*light[^"]*"', html)


def test_twenty_long_articles_keep_the_html_under_gmails_clipping_size(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    title = ("Very long headline about everything " * 300)[: title_limit(app, 10_000) - 3]
    for index in range(20):
        add_article(
            app,
            f"{index:02} {title}",
            ("Analytics", "Business", "Technology")[index % 3],
            summary="<p>" + "Long summary text, sentence after sentence. " * 500 + "</p>",
        )
    add_reader(app, "ann@example.org", ["analytics", "business", "technology"])

    send_daily(runner)

    received = by_recipient(smtp_server)["ann@example.org"]
    message = received.parsed()
    html = html_part(message)
    assert len(re.findall(r"<h3\b", html)) == 20
    assert len(html.encode("utf-8")) < GMAIL_CLIP
    assert len(received.data) < GMAIL_CLIP  # the whole message, encoding and text part too
    # Nothing is clipped away: the footer is there.
    assert unsubscribe_url(message) in html and POSTAL in html


def test_text_part_lists_every_article_url_of_the_readers_topics_and_has_no_tags(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    long_path = "https://ledger.example/analytics/" + "a-very-long-slug-" * 12 + "end"
    urls = {
        add_article(app, "Charts", summary="<p>With <b>bold</b> <a href='x'>link</a></p>"),
        add_article(app, "Models", url=long_path, summary="<ul><li>One</li></ul>"),
        add_article(app, "Shares", "Business", summary="<p>Markets <i>up</i><br>again</p>"),
    }
    add_reader(app, "ann@example.org", ["analytics", "business"])

    send_daily(runner)

    text = text_part(by_recipient(smtp_server)["ann@example.org"].parsed())
    assert set(ARTICLE_URL.findall(text)) == urls
    for url in urls:
        assert re.search(rf"^{re.escape(url)}$", text, re.M), url
    assert not re.search(r"</?[a-zA-Z][^>]*>", text), text
    assert "With bold link" in text and "Markets up" in text


def test_text_part_keeps_paragraphs_list_items_and_links_apart(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(
        app,
        "Council approves the library budget",
        summary="<p>Opponents warned about running costs.</p><ul><li>Construction starts in "
        "spring 2027</li><li>Opening planned for autumn 2028</li></ul><p>See <a href="
        "'https://ledger.example/p'>plans</a> or <a href='https://ledger.example/map'>"
        "ledger.example/map</a>.</p>",
    )
    add_reader(app, "ann@example.org")

    send_daily(runner)

    text = text_part(by_recipient(smtp_server)["ann@example.org"].parsed())
    assert (
        "Opponents warned about running costs.\n"
        "\n"
        "- Construction starts in spring 2027\n"
        "- Opening planned for autumn 2028\n"
        "\n"
        "See plans (https://ledger.example/p) or https://ledger.example/map.\n"
    ) in text
    articles = text[text.index("ANALYTICS") : text.index("\n--\n")]
    assert max(len(line) for line in articles.splitlines()) <= 72, articles


def test_articles_show_their_date_byline_and_image_and_only_an_https_image(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(
        app,
        "Depot opens",
        author="Maria Okafor",
        image_url="https://img.ledger.example/depot.jpg",
        image_alt="The new depot at dawn",
        image_width=1200,
        image_height=800,
        minutes_ago=1,
    )
    add_article(app, "No picture here", image_url="http://img.ledger.example/x.jpg", minutes_ago=2)
    add_article(app, "Picture of unknown size", image_url="https://img.ledger.example/y.jpg")
    add_reader(app, "ann@example.org")

    send_daily(runner)

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    html = html_part(message)
    images = re.findall(r"<img\b[^>]*>", html)
    assert len(images) == 2, images
    assert 'src="https://img.ledger.example/depot.jpg"' in images[0]
    assert 'alt="The new depot at dawn"' in images[0]
    # Shown at most as wide as the column, in proportion.
    assert 'width="552"' in images[0] and 'height="368"' in images[0]
    assert 'width="552"' in images[1] and "height=" not in images[1]
    assert 'alt="Picture of unknown size"' in images[1]
    assert "http://img.ledger.example" not in html
    with app.app_context():
        today = local_date(utcnow())
    assert re.search(rf'class="meta"[^>]*>{today} · Maria Okafor</p>', html), html
    text = text_part(message)
    assert f"Depot opens\n{today} - Maria Okafor\nhttps://ledger.example/" in text


def test_the_inbox_snippet_is_the_first_headlines_not_the_masthead_and_greeting(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    for index, title in enumerate(["Depot opens", "Rates held", "Ferry changes", "Fourth"]):
        add_article(app, title, minutes_ago=index + 1)
    add_reader(app, "ann@example.org", name="Pat Reader")

    send_daily(runner)

    html = html_part(by_recipient(smtp_server)["ann@example.org"].parsed())
    body = html[html.index("<body") :]
    # What a mail client takes for the snippet: the body's text, tags left out.
    first_text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
    assert first_text.startswith("Depot opens · Rates held · Ferry changes ")
    assert "Fourth" not in first_text[: first_text.index("The Daily Ledger")]
    preheader = re.search(r'<div class="preheader" style="([^"]*)"', body)
    assert preheader and "display: none" in preheader.group(1)


# ---- Topics -------------------------------------------------------------------------------


def test_each_reader_gets_exactly_the_articles_of_their_topics_grouped_by_section(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    articles: dict[str, list[str]] = {}
    for index, category in enumerate(
        ["Business", "Analytics", "Breaking News", "Technology", "Analytics", "Culture", "Business"]
    ):
        url = add_article(app, f"{category} story {index}", category, minutes_ago=index + 1)
        articles.setdefault(category, []).append(url)
    every_topic = ["breaking-news", "politics", "business", "analytics", "technology", "culture"]
    readers = {
        "analyst@example.org": ["analytics"],
        "trader@example.org": ["breaking-news", "business"],
        "all@example.org": every_topic,
        "politics@example.org": ["politics"],  # no politics article in this edition
    }
    for email, topics in readers.items():
        add_reader(app, email, topics)

    send_daily(runner)

    mails = by_recipient(smtp_server)
    assert set(mails) == set(readers) - {"politics@example.org"}
    assert "politics@example.org" not in delivery_rows(app, newest_edition(app))
    expected_sections = {
        "analyst@example.org": ["Analytics"],
        "trader@example.org": ["Breaking News", "Business"],
        "all@example.org": ["Breaking News", "Business", "Analytics", "Technology", "Culture"],
    }
    for email, sections in expected_sections.items():
        message = mails[email].parsed()
        # Sections in the site's topic order, newest article first within each.
        expected = [(name.upper(), articles[name]) for name in sections]
        assert sections_in_text(text_part(message)) == expected, email
        html = html_part(message)
        assert re.findall(r"<h2\b[^>]*>([^<]*)</h2>", html) == sections
        wanted = {url for name in sections for url in articles[name]}
        assert set(re.findall(r'<h3\b[^>]*><a href="([^"]+)"', html)) == wanted
        assert set(ARTICLE_URL.findall(html)) == wanted


# ---- Hostile articles ---------------------------------------------------------------------


def test_hostile_articles_and_names_give_a_well_formed_safe_mail(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    app.config["SITE_NAME"] = "Ле Журнал «Ñandú» 日報"
    huge = ("Ξ" * 5000 + " ") * 4 + "<script>alert(1)</script>" + "émoji 🎉 " * 2000
    add_article(app, f"Breaking {INJECTION} 🚨 über alles", "Breaking News", minutes_ago=1)
    add_article(app, "<script>alert('t')</script><img src=x onerror=alert(1)>", minutes_ago=2)
    add_article(app, ("Ω" + "x" * 99) * (title_limit(app, 10_000) // 100), minutes_ago=3)
    add_article(
        app, "Café society", "Culture", summary=f"<p>{huge}</p>", source="Le Monde ✓", minutes_ago=4
    )
    add_reader(
        app,
        "zoe@example.org",
        ["breaking-news", "analytics", "culture"],
        name=f"Zoë «{INJECTION}» 山田",
    )
    add_reader(
        app,
        "jörg@example.org",
        ["breaking-news", "analytics", "culture"],
        name='Jörg "the" <Ünï>, Øster',
    )

    send_daily(runner)

    mails = by_recipient(smtp_server)
    assert set(mails) == {"zoe@example.org", "jörg@example.org"}
    for email, received in mails.items():
        assert Counter(header_names(received.data)) == EXPECTED_HEADERS, email
        for line in lines_of(received.data):
            assert len(line) <= 998
        message = received.parsed()
        assert all_defects(message) == [], email
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert decoded(message["Subject"]).startswith(
            "Breaking Evil Bcc: victim@example.org 🚨 über alles and 3 more | Ле Журнал"
        )
        html, text = html_part(message), text_part(message)
        # Hostile markup shows as text at most: no element, no attribute made of it.
        assert not re.search(r"<script|<img\b|<[^>]*\bon[a-z]+=", html, re.I)
        assert "&lt;script&gt;alert('t')&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
        assert "Breaking Evil Bcc: victim@example.org 🚨 über alles" in text
        assert "Café society" in text and "ΞΞΞ" in text and "Le Monde ✓" in html
        assert "Ле Журнал «Ñandú» 日報" in text
        assert POSTAL in text and POSTAL in html
    zoe = mails["zoe@example.org"].parsed()
    assert zoe["To"].addresses[0].display_name == "Zoë «Evil Bcc: victim@example.org» 山田"
    assert "Hello Zoë «Evil Bcc: victim@example.org» 山田," in text_part(zoe)
    jorg = mails["jörg@example.org"]
    assert jorg.smtputf8 and b"=?" not in raw_header(jorg.data, "To")
    assert "Hello Jörg &#34;the&#34; &lt;Ünï&gt;, Øster," in html_part(jorg.parsed()) or (
        "Hello Jörg &quot;the&quot; &lt;Ünï&gt;, Øster," in html_part(jorg.parsed())
    )


# ---- CLI and archive ----------------------------------------------------------------------


def test_preview_to_an_eml_file_writes_that_readers_message(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer, tmp_path: Path
) -> None:
    analytics = add_article(app, "Charts & graphs")
    business = add_article(app, "Shares up", "Business")
    add_reader(app, "ann@example.org", ["business"], name="Ann")
    output = tmp_path / "preview.eml"

    result = runner.invoke(
        args=["digest", "preview", "--email", "Ann@Example.org", "--output", str(output)]
    )

    assert result.exit_code == 0, result.output
    message = parse(output.read_bytes())
    assert all_defects(message) == []
    assert [(a.addr_spec, a.display_name) for a in message["To"].addresses] == [
        ("ann@example.org", "Ann")
    ]
    assert message["Subject"] == f"Shares up | {SITE} daily digest"
    text = text_part(message)
    assert business in text and analytics not in text
    assert "Hello Ann," in text
    assert unsubscribe_url(message) in text
    assert smtp_server.messages == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Edition)) == 0


def test_preview_to_an_html_file_writes_the_html(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    add_article(app, "A & B merge")
    output = tmp_path / "preview.html"

    result = runner.invoke(args=["digest", "preview", "--output", str(output)])

    assert result.exit_code == 0, result.output
    html = output.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "A &amp; B merge" in html and POSTAL in html
    assert_only_media_rules_kept(html)


def test_send_without_new_articles_says_so_and_creates_no_edition(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_reader(app, "ann@example.org")

    result = send_daily(runner)

    assert "No new articles" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Edition)) == 0
    assert smtp_server.messages == []


def test_dry_run_creates_and_sends_nothing(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    add_reader(app, "ann@example.org")
    add_reader(app, "bob@example.org", ["culture"])

    result = send_daily(runner, "--dry-run")

    assert "a daily edition of 1 article to 1 reader." in result.output
    assert "Rates held steady" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Edition)) == 0
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert smtp_server.messages == [] and smtp_server.connections == 0
    send_daily(runner)  # the articles are still new for the real send
    assert set(by_recipient(smtp_server)) == {"ann@example.org"}


def test_status_prints_the_counts_by_state(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    for email in ("a@example.org", "b@example.org", "gone@example.org"):
        add_reader(app, email)
    smtp_server.fail("rcpt", "550 5.1.1 No such user", recipients={"gone@example.org"})
    send_daily(runner)
    edition_id = newest_edition(app)

    for args in (["digest", "status"], ["digest", "status", str(edition_id)]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert f"Edition {edition_id} (daily, done)" in result.output
        counts = dict(re.findall(r"^\s+(\w+)\s+([\d,]+)$", result.output, re.M))
        assert counts["sent"] == "2" and counts["failed"] == "1" and counts["total"] == "3"
        assert counts["queued"] == "0"
        assert "550 5.1.1 No such user" in result.output


def test_archive_lists_and_shows_the_edition_that_each_mail_links_to(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "A & B merge")
    add_article(app, "<script>alert(1)</script> Shares", "Business")
    add_reader(app, "ann@example.org")
    send_daily(runner)
    edition_id = newest_edition(app)
    web_url = f"{BASE_URL}/archive/{edition_id}"

    message = by_recipient(smtp_server)["ann@example.org"].parsed()
    assert web_url in text_part(message)
    assert f'href="{web_url}"' in html_part(message)

    client = app.test_client()
    listing = client.get("/archive")
    assert listing.status_code == 200
    assert f'href="/archive/{edition_id}"' in listing.get_data(as_text=True)
    page = client.get(urlsplit(web_url).path)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "A &amp; B merge" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Shares" in body
    assert "<script>alert" not in body
    assert client.get(f"/archive/{edition_id + 1}").status_code == 404


def test_send_delivers_the_rest_after_a_reader_fails_on_a_dropped_connection(
    app: Flask, runner: FlaskCliRunner, smtp_server: SMTPTestServer
) -> None:
    add_article(app, "Rates held steady")
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        add_reader(app, email)
    # Every attempt for b loses the connection before its content could go; its last one
    # (MAX_ATTEMPTS=2) stops the batch.
    smtp_server.fail("rcpt", DROP, recipients={"b@example.org"})

    send_daily(runner)

    assert set(by_recipient(smtp_server)) == {"a@example.org", "c@example.org"}
    rows = delivery_rows(app, newest_edition(app))
    assert {email: row[0] for email, row in rows.items()} == {
        "a@example.org": "sent",
        "b@example.org": "failed",
        "c@example.org": "sent",
    }
    assert "connection" in (rows["b@example.org"][1] or "")
    edition_id = newest_edition(app)
    with app.app_context():
        assert db.session.scalar(select(Edition.state).where(Edition.id == edition_id)) == "done"
