"""A real Chromium against the real app on a real HTTP server: what a reader sees and does.

Signup, confirmation and unsubscribe through the service's own pages, and the signup box of
docs/embed.md served from a publisher's site (a second server, a different origin).
Screenshots of the pages go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from flask import Flask
from sqlalchemy import select

from newsletter.db.models import ConsentEvent, Subscriber
from newsletter.extensions import db
from newsletter.tokens import Purpose, sign
from newsletter.urls import external_url
from tests.support.browser import MIN_SECONDS, LiveService, screenshot, serve, stop

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
EMBED_DOC = ROOT / "docs" / "embed.md"
DOC_SERVICE_URL = "https://newsletter.example.com"

# Playwright is only needed here; without it these tests skip (or fail in CI), as the
# browser fixture (tests/support/browser.py) says.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect


# --- servers -------------------------------------------------------------------------------


@dataclass
class Publisher:
    """A publisher's site: one article page with the documented signup box pasted in."""

    host: str = "localhost"
    page: str = ""
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.server_port}"

    def start(self) -> None:
        publisher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = publisher.page.encode("utf-8")
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = serve(self.server)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            stop(self.server, self.thread)


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    # "localhost" and "127.0.0.1" are different sites to a browser, not only different
    # origins: the post from the publisher's page is a real cross-site one.
    site = Publisher()
    site.start()
    yield site
    site.stop()


def embed_snippet() -> str:
    """The first html block of docs/embed.md, exactly as a publisher would copy it."""
    found = re.search(r"^```html\n(.*?)^```$", EMBED_DOC.read_text("utf-8"), re.S | re.M)
    assert found, "docs/embed.md has no ```html block"
    return found.group(1)


def publisher_page(snippet: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Springfield Gazette</title></head>\n<body>\n"
        "<article><h1>Council approves new bridge</h1>"
        "<p>The vote was unanimous.</p></article>\n"
        f"<aside>\n{snippet}</aside>\n</body>\n</html>\n"
    )


# --- reading the outbox and the database ---------------------------------------------------


def wait_for_mail(outbox: Path, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
    """The messages in the outbox once ``count`` have arrived (they are sent after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(outbox.glob("*.eml")) if outbox.exists() else []
        if len(files) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(files) == count, f"expected {count} message(s) in the outbox, found {len(files)}"
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in files]


def recipient(message: EmailMessage) -> str:
    [address] = message["To"].addresses
    return str(address.addr_spec)


def link_in(message: EmailMessage, path: str) -> str:
    text_part = message.get_body(("plain",))
    assert text_part is not None, "the mail has no text part"
    found = re.search(rf"https?://\S+{re.escape(path)}\S+", text_part.get_content())
    assert found, f"no {path} link in the mail's text"
    return found.group(0)


def subscriber(app: Flask, email: str) -> Subscriber:
    with app.app_context():
        try:
            row = db.session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
            db.session.expunge(row)
            return row
        finally:
            db.session.remove()


def consent_sources(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        try:
            rows = db.session.execute(
                select(ConsentEvent.action, ConsentEvent.source).order_by(ConsentEvent.id)
            )
            return [(action, source) for action, source in rows]
        finally:
            db.session.remove()


def wait_out_fill_time(since: float) -> None:
    """A person takes longer than the minimum fill time; make sure the browser does too."""
    remaining = since + MIN_SECONDS + 0.3 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def tick(page: Page, labels: Iterable[str]) -> None:
    for label in labels:
        page.get_by_label(label, exact=True).check()


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_signup_confirm_and_unsubscribe_in_a_browser(
    start_service: Callable[..., LiveService], new_page: Callable[..., Page], scheme: str
) -> None:
    service = start_service(scheme)
    page = new_page()

    response = page.goto(f"{service.url}/subscribe")
    opened = time.monotonic()
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", name="Get the latest news")).to_be_visible()
    expect(
        page.get_by_text("Enter your information below to receive the latest news and articles.")
    ).to_be_visible()
    expect(page.get_by_text("Your information is secure.")).to_be_visible()
    expect(page.get_by_text("you can opt out at any time", exact=False)).to_be_visible()
    # The honeypot is in the page for bots but nowhere a person could see or reach it.
    honeypot = page.locator("input[name=website]")
    expect(honeypot).to_have_count(1)
    box = honeypot.bounding_box()
    assert box is None or box["x"] + box["width"] <= 0, f"honeypot on screen at {box}"
    assert honeypot.get_attribute("tabindex") == "-1"
    # Nothing sticks out of the page sideways (a field wider than the column, say).
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "signup-page.png")

    # The same page on a phone in dark mode, for a person to look at.
    phone = new_page(viewport={"width": 360, "height": 740}, color_scheme="dark")
    phone.goto(f"{service.url}/subscribe")
    expect(phone.get_by_role("button", name="Subscribe")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(phone, "signup-page-phone-dark.png")

    page.get_by_label("Name", exact=True).fill("Ann Reader")
    page.get_by_label("Email", exact=True).fill("Ann.Reader@Example.com")
    tick(page, ["Technology", "Weekly", "I agree to receive emails from The Daily Ledger"])
    wait_out_fill_time(opened)
    page.get_by_role("button", name="Subscribe").click()

    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    # Post/redirect/get: the answer is a page of its own, which a reload only shows again.
    assert page.url == f"{service.url}/subscribe/check-inbox"
    expect(page.get_by_text("You entered ann.reader@example.com.")).to_be_visible()
    page.reload()
    expect(page.get_by_text("You entered ann.reader@example.com.")).to_be_visible()

    [mail] = wait_for_mail(service.outbox)
    assert recipient(mail) == "ann.reader@example.com"
    confirm_url = link_in(mail, "/confirm/")
    assert confirm_url.startswith(f"{service.url}/confirm/")

    response = page.goto(confirm_url)
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    expect(page.get_by_role("button", name="Confirm")).to_be_visible()
    screenshot(page, "confirm-page.png")
    # Opening the link (as a mail scanner would) changed nothing.
    row = subscriber(service.app, "ann.reader@example.com")
    assert row.status == "pending"
    assert (row.name, row.topics, row.frequency) == ("Ann Reader", ["technology"], "weekly")

    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
    screenshot(page, "confirmed-page.png")
    row = subscriber(service.app, "ann.reader@example.com")
    assert row.status == "active"
    # The link opened again confirms nothing more and says so.
    page.goto(confirm_url)
    expect(page.get_by_role("heading", name="You're already subscribed")).to_be_visible()
    expect(page.get_by_role("button", name="Confirm")).to_have_count(0)
    expect(page.get_by_role("link", name="Choose your topics and how often")).to_be_visible()

    # Digests are not built yet: make the link a digest will carry.
    with service.app.app_context():
        unsubscribe_url = external_url(
            "manage.unsubscribe_page", token=sign(Purpose.UNSUBSCRIBE, {"s": row.uid})
        )
    response = page.goto(unsubscribe_url)
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", name="Unsubscribe")).to_be_visible()
    assert subscriber(service.app, "ann.reader@example.com").status == "active"
    screenshot(page, "unsubscribe-page.png")

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You're unsubscribed")).to_be_visible()
    expect(page.get_by_role("link", name="Subscribe again")).to_be_visible()
    screenshot(page, "unsubscribed-page.png")
    assert subscriber(service.app, "ann.reader@example.com").status == "unsubscribed"
    page.goto(unsubscribe_url)
    expect(page.get_by_role("heading", name="You're already unsubscribed")).to_be_visible()
    expect(page.get_by_role("button", name="Unsubscribe")).to_have_count(0)
    assert consent_sources(service.app) == [
        ("signup", "signup-page"),
        ("confirm", "confirm-page"),
        ("unsubscribe", "unsubscribe-page"),
    ]
    # The confirmation mail, then the welcome; nothing since.
    welcome = wait_for_mail(service.outbox, 2)[1]
    assert recipient(welcome) == "ann.reader@example.com"
    assert welcome["Subject"] == "Welcome to The Daily Ledger"


def test_the_signup_page_gives_the_browsers_time_zone_and_preferences_change_it(
    start_service: Callable[..., LiveService], new_page: Callable[..., Page]
) -> None:
    service = start_service(SEND_IN_READER_TIME=True)
    page = new_page(timezone_id="America/New_York")
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    page.goto(f"{service.url}/subscribe")
    opened = time.monotonic()
    # The page's one script, allowed by its nonce, filled in the hidden field.
    expect(page.locator("input[name=timezone]")).to_have_value("America/New_York")
    page.get_by_label("Email", exact=True).fill("dee@example.org")
    tick(page, ["I agree to receive emails from The Daily Ledger"])
    wait_out_fill_time(opened)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    [mail] = wait_for_mail(service.outbox)
    page.goto(link_in(mail, "/confirm/"))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
    assert subscriber(service.app, "dee@example.org").timezone == "America/New_York"

    # Preferences: a plain select, no script, the reader's zone chosen; another one saved.
    welcome = wait_for_mail(service.outbox, 2)[1]
    assert "(America/New_York time)" in str(welcome.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    preferences = new_page(java_script_enabled=False)
    preferences.goto(link_in(welcome, "/preferences/"))
    zone = preferences.get_by_label("Your time zone")
    expect(zone).to_have_value("America/New_York")
    expect(preferences.get_by_text("Your digest comes at 07:00 in this time zone.")).to_be_visible()
    zone.select_option("Asia/Tokyo")
    preferences.get_by_role("button", name="Save").click()
    expect(preferences.get_by_text("Saved.", exact=False)).to_be_visible()
    assert subscriber(service.app, "dee@example.org").timezone == "Asia/Tokyo"
    screenshot(preferences, "preferences-time-zone.png")
    assert violations == []


def test_embedded_signup_box_from_the_docs(
    start_service: Callable[..., LiveService],
    publisher: Publisher,
    new_page: Callable[..., Page],
) -> None:
    service = start_service(EMBED_ORIGINS=[publisher.origin])
    publisher.page = publisher_page(embed_snippet().replace(DOC_SERVICE_URL, service.url))
    page = new_page(timezone_id="Europe/Berlin")

    with page.expect_response(lambda r: "/subscribe/embed-token" in r.url) as token_answer:
        page.goto(f"{publisher.origin}/")
    opened = time.monotonic()
    assert token_answer.value.status == 200
    assert token_answer.value.headers.get("access-control-allow-origin") == publisher.origin
    # The inline script put a start time in the form.
    expect(page.locator("#newsletter-signup input[name=started]")).not_to_have_value("")

    expect(
        page.get_by_text("Enter your information below to receive the latest news and articles.")
    ).to_be_visible()
    expect(page.get_by_text("Your information is secure.")).to_be_visible()
    expect(page.get_by_text("you can opt out at any time", exact=False)).to_be_visible()
    box = page.locator("#newsletter-signup input[name=website]").bounding_box()
    assert box is None or box["x"] + box["width"] <= 0, f"honeypot on screen at {box}"
    screenshot(page, "embed-box.png")

    page.get_by_label("Name", exact=True).fill("Bo Publisher-Reader")
    page.get_by_label("Email", exact=True).fill("bo@example.org")
    tick(page, ["Business", "I agree to receive emails from The Daily Ledger"])
    wait_out_fill_time(opened)
    page.get_by_role("button", name="Subscribe").click()

    # The reader's browser now shows the service's answer, address included, though it
    # came back from another site with no cookie of ours.
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert page.url.startswith(f"{service.url}/subscribe/check-inbox?t=")
    expect(page.get_by_text("You entered bo@example.org.")).to_be_visible()
    assert "example.org" not in page.url
    [mail] = wait_for_mail(service.outbox)
    assert recipient(mail) == "bo@example.org"
    assert link_in(mail, "/confirm/").startswith(f"{service.url}/confirm/")
    row = subscriber(service.app, "bo@example.org")
    assert (row.status, row.name, row.topics) == ("pending", "Bo Publisher-Reader", ["business"])
    assert consent_sources(service.app) == [("signup", f"embed:{publisher.origin}")]
    # The snippet's script passed the browser's time zone along.
    with service.app.app_context():
        [detail] = db.session.scalars(select(ConsentEvent.detail)).all()
        db.session.remove()
    assert detail["timezone"] == "Europe/Berlin"


def test_embedded_box_without_javascript_finishes_on_our_page(
    start_service: Callable[..., LiveService],
    publisher: Publisher,
    new_page: Callable[..., Page],
) -> None:
    service = start_service(EMBED_ORIGINS=[publisher.origin])
    publisher.page = publisher_page(embed_snippet().replace(DOC_SERVICE_URL, service.url))
    page = new_page(java_script_enabled=False, color_scheme="dark")

    page.goto(f"{publisher.origin}/")
    page.get_by_label("Email", exact=True).fill("cy@example.net")
    tick(page, ["I agree to receive emails from The Daily Ledger"])
    page.get_by_role("button", name="Subscribe").click()

    # Our own form, with what the reader typed, and a word on what is left to do.
    expect(
        page.get_by_text("Almost done: check your details below and press Subscribe.")
    ).to_be_visible()
    opened = time.monotonic()
    assert page.url == f"{service.url}/subscribe"
    expect(page.get_by_label("Email", exact=True)).to_have_value("cy@example.net")
    expect(page.get_by_label("I agree to receive emails from The Daily Ledger")).to_be_checked()
    screenshot(page, "embed-finish-page.png")
    assert not list(service.outbox.glob("*.eml"))

    wait_out_fill_time(opened)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    [mail] = wait_for_mail(service.outbox)
    assert recipient(mail) == "cy@example.net"
    assert subscriber(service.app, "cy@example.net").status == "pending"


def test_pages_keep_their_style_under_the_content_security_policy_and_confirm_without_cookies(
    start_service: Callable[..., LiveService], new_page: Callable[..., Page]
) -> None:
    service = start_service()
    page = new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    page.goto(f"{service.url}/subscribe")
    # The page's own <style> applies: the paper background and the accent button.
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 244, 239)"
    button = page.get_by_role("button", name="Subscribe")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(179, 38, 30)"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    opened = time.monotonic()
    page.get_by_label("Email", exact=True).fill("pat@example.com")
    tick(page, ["I agree to receive emails from The Daily Ledger"])
    wait_out_fill_time(opened)
    button.click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    [mail] = wait_for_mail(service.outbox)

    # The reader's mail app opens the link in a view that keeps no cookies at all.
    cookieless = new_page()
    cookieless.context.route(
        "**/*",
        lambda route: route.continue_(
            headers={k: v for k, v in route.request.headers.items() if k.lower() != "cookie"}
        ),
    )
    cookieless.goto(link_in(mail, "/confirm/"))
    cookieless.context.clear_cookies()
    cookieless.get_by_role("button", name="Confirm").click()
    expect(cookieless.get_by_role("heading", name="You're subscribed")).to_be_visible()
    assert subscriber(service.app, "pat@example.com").status == "active"
    screenshot(cookieless, "confirmed-without-cookies.png")
    assert violations == []


# --- the reader's other pages, on a phone and a desktop, light and dark ---------------------

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
LONG_WORD = "Donaudampfschifffahrtsgesellschaftskapitänswitwenrentenversicherung"


def _editions(app: Flask) -> int:
    """Two editions, one of articles with a long unbroken word and a long link in them."""
    from datetime import UTC, datetime

    from newsletter.db.models import Article, Edition, EditionArticle

    with app.app_context():
        moment = datetime(2026, 12, 4, 6, tzinfo=UTC)
        articles = [
            Article(
                guid=f"g-{n}",
                url=f"https://news.example.test/articles/{n}",
                title=title,
                summary=summary,
                category=category,
                topic=category.lower(),
                source="The Daily Ledger",
                published_at=moment,
            )
            for n, (title, summary, category) in enumerate(
                [
                    (
                        f"Insurers merge into the {LONG_WORD}",
                        f"<p>Read it at https://news.example.test/{'x' * 90} today.</p>",
                        "Business",
                    ),
                    (
                        "Parliament passes the budget",
                        "<p>A long night in the chamber.</p>",
                        "Politics",
                    ),
                    ("The bridge opens", "<p>Traffic flows at last.</p>", "Politics"),
                ]
            )
        ]
        older = Edition(frequency="weekly", subject="The week in brief", covers_until=moment)
        older.created_at = datetime(2026, 11, 30, 6, tzinfo=UTC)
        edition = Edition(
            frequency="daily",
            subject=f"Insurers merge into the {LONG_WORD} and 2 more",
            covers_until=moment,
        )
        edition.created_at = moment
        db.session.add_all([*articles, older, edition])
        db.session.flush()
        db.session.add_all(
            EditionArticle(edition_id=edition.id, article_id=a.id, position=i)
            for i, a in enumerate(articles)
        )
        db.session.commit()
        edition_id = edition.id
        db.session.remove()
        return edition_id


def _fits(page: Page) -> None:
    """Nothing sticks out sideways, and the text is a readable size."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('main p')).fontSize)")
    assert size >= 14, f"{page.url}: text of {size}px"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_archive_and_reader_pages_fit_and_are_styled(
    start_service: Callable[..., LiveService],
    new_page: Callable[..., Page],
    size: str,
    scheme: Literal["light", "dark"],
) -> None:
    service = start_service()
    edition_id = _editions(service.app)
    page = new_page(viewport=SIZES[size], color_scheme=scheme)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    name = f"{size}-{scheme}"

    page.goto(f"{service.url}/")
    assert page.url == f"{service.url}/subscribe"

    page.goto(f"{service.url}/archive")
    items = page.locator(".archive li")
    expect(items).to_have_count(2)
    expect(items.nth(0).locator("time")).to_have_text("04 December 2026")
    expect(items.nth(0).locator(".tag")).to_have_text("Daily")
    expect(items.nth(1).locator(".tag")).to_have_text("Weekly")
    # The site's style: the paper background and the boxed column, on a phone edge to edge.
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("Georgia")
    main = page.locator("main").bounding_box()
    assert main is not None
    if size == "phone":
        assert main["width"] == SIZES["phone"]["width"]
    else:
        assert 600 <= main["width"] <= 720
    _fits(page)
    screenshot(page, f"archive-{name}.png")

    items.nth(0).locator("a").click()
    assert page.url == f"{service.url}/archive/{edition_id}"
    expect(page.get_by_role("heading", name="Daily digest")).to_be_visible()
    expect(page.locator(".meta time")).to_have_text("04 December 2026")
    expect(page.get_by_role("heading", name="Politics")).to_be_visible()
    title = page.get_by_role("link", name=f"Insurers merge into the {LONG_WORD}")
    box = title.bounding_box()
    assert box is not None and box["x"] + box["width"] <= main["x"] + main["width"]
    _fits(page)
    screenshot(page, f"edition-{name}.png")

    # The signup answer, with a typo in the address.
    page.goto(f"{service.url}/subscribe")
    opened = time.monotonic()
    page.get_by_label("Email", exact=True).fill("pat@gmial.con")
    tick(page, ["I agree to receive emails from The Daily Ledger"])
    expect(page.get_by_text("None ticked means every topic.")).to_be_visible()
    wait_out_fill_time(opened)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_text("Did you mean pat@gmail.com?")).to_be_visible()
    _fits(page)
    screenshot(page, f"check-inbox-{name}.png")
    page.get_by_role("link", name="Sign up with pat@gmail.com").click()
    expect(page.get_by_label("Email", exact=True)).to_have_value("pat@gmail.com")
    [mail] = wait_for_mail(service.outbox)

    # Confirmed, then the link opened again.
    confirm_url = link_in(mail, "/confirm/")
    page.goto(confirm_url)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
    page.goto(confirm_url)
    expect(page.get_by_role("heading", name="You're already subscribed")).to_be_visible()
    _fits(page)
    screenshot(page, f"confirmed-again-{name}.png")

    page.get_by_role("link", name="Choose your topics and how often").click()
    expect(page.get_by_role("heading", name="Your preferences")).to_be_visible()
    _fits(page)
    screenshot(page, f"preferences-{name}.png")
    preferences_url = page.url

    welcome = wait_for_mail(service.outbox, 2)[1]
    page.goto(link_in(welcome, "/unsubscribe/"))
    page.get_by_role("button", name="Unsubscribe").click()
    page.goto(link_in(welcome, "/unsubscribe/"))
    expect(page.get_by_role("heading", name="You're already unsubscribed")).to_be_visible()
    _fits(page)
    screenshot(page, f"unsubscribed-again-{name}.png")
    page.goto(preferences_url)
    expect(page.get_by_role("heading", name="You're unsubscribed")).to_be_visible()
    expect(page.get_by_role("link", name="Subscribe again")).to_be_visible()
    _fits(page)
    screenshot(page, f"preferences-unsubscribed-{name}.png")
    assert violations == []
