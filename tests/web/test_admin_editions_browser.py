"""The console's editions and alerts in a real Chromium, against the app on a real HTTP server
sending through a real SMTP server on loopback.

An editor signs in, previews the next edition, sends a test to themself, sends the edition and
watches its page count up to "done" (the page's script fetching its progress, without reloading
the page), then sends a breaking-news alert. The pages are shot at 390 and 1280 px, light and
dark, into test-artifacts/console/ for a person to look at; none may stick out sideways.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import update

from newsletter import create_app
from newsletter.db.models import Subscriber
from newsletter.digests import planning
from newsletter.extensions import db, limiter
from tests.support import services
from tests.support.console import EDITOR, PASSWORD, add_operator
from tests.support.digest_helpers import add_article, add_reader
from tests.support.live_server import LiveServer
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT = 15_000  # milliseconds a page or element may take
SCREENS = [(390, "light"), (390, "dark"), (1280, "light"), (1280, "dark")]
DAILY_READERS = 24
# Slow enough that the editor sees the edition being sent for a few seconds.
SEND_RATE = 4

_PLAYWRIGHT_MISSING: ImportError | None = None
try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError as exc:  # pragma: no cover
    _PLAYWRIGHT_MISSING = exc


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if _PLAYWRIGHT_MISSING is not None:
        services.unavailable("Playwright", _PLAYWRIGHT_MISSING)
    services.require_executable("Chromium", "chromium", CHROMIUM)
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:
            services.unavailable("Chromium", exc, f"check that {CHROMIUM} --headless runs")
        expect.set_options(timeout=WAIT)
        yield chromium
        chromium.close()


@pytest.fixture
def console(tmp_path: Path, smtp_server: SMTPTestServer) -> Iterator[LiveServer]:
    """The app as ``make run`` serves it (no broker: a send runs after its answer), with an
    editor, the day's articles and their readers."""

    def make(url: str) -> Flask:
        return create_app(
            {
                "SECRET_KEY": "console-browser-secret-key-0123456789",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'newsletter.db'}",
                "JOURNAL_DIR": str(tmp_path / "journal"),
                "BASE_URL": url,
                "BROKER_URL": None,
                "RATELIMIT_STORAGE_URI": "memory://",
                "SEND_RATE": SEND_RATE,
                "JOURNAL_EVERY": 3,
                **smtp_server.app_config(),
            }
        )

    server = LiveServer.start(make)
    app = server.app
    with app.app_context():
        upgrade()
    limiter.reset()
    add_operator(app, EDITOR, "editor")
    add_article(app, "Council approves the new bridge", "Politics", author="Maria Okafor")
    add_article(app, "Water use, street by street", "Analytics")
    add_article(app, "Dam breaks upstream of the city", "Breaking News", minutes_ago=2)
    for number in range(DAILY_READERS):
        chosen = ["politics", "breaking-news"] if number % 2 else ["analytics"]
        add_reader(app, f"reader{number:02d}@example.org", chosen)
    with app.app_context():
        # Two readers of breaking news who turned alerts off.
        db.session.execute(
            update(Subscriber)
            .where(Subscriber.email.in_(["reader01@example.org", "reader03@example.org"]))
            .values(alerts=False)
        )
        db.session.commit()
    yield server
    server.stop()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    made: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
        context.set_default_timeout(WAIT)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def shoot_everywhere(
    contexts: Callable[..., BrowserContext], state: Any, url: str, name: str
) -> None:
    """The page at ``url`` on a phone and a desktop, light and dark: shot, and checked that
    nothing sticks out sideways."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, scheme in SCREENS:
        context = contexts(
            storage_state=state, viewport={"width": width, "height": 800}, color_scheme=scheme
        )
        page = context.new_page()
        page.goto(url)
        page.wait_for_load_state("load")
        # Chromium leaves a frame below the first screen unpainted in a full-page shot: the
        # whole page is made one screen (nothing on these pages depends on the screen's height).
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": width, "height": max(height, 800)})
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, f"{name} is {wide} px wide on a {width} px screen"
        page.screenshot(path=str(SHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
        context.close()


def figure(page: Page, name: str) -> int:
    return int(page.locator(f'[data-figure="{name}"]').inner_text().replace(",", ""))


def test_an_editor_previews_tests_sends_and_follows_an_edition_then_sends_an_alert(
    console: LiveServer,
    smtp_server: SMTPTestServer,
    contexts: Callable[..., BrowserContext],
) -> None:
    base = console.url
    page = contexts().new_page()
    page.goto(f"{base}/admin/editions")
    expect(page).to_have_url(f"{base}/admin/sign-in?next=%2Fadmin%2Feditions")
    page.get_by_label("Email").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    state = page.context.storage_state()

    # The preview, as a reader of politics alone sees it.
    page.get_by_role("link", name="Editions", exact=True).click()
    page.get_by_role("link", name="Preview the next edition").click()
    page.get_by_label("Analytics").uncheck()
    page.get_by_label("Breaking News").uncheck()
    page.get_by_role("button", name="Show the preview").click()
    expect(page.get_by_text("(1 in these topics)", exact=False)).to_be_visible()
    mail = page.frame_locator("iframe.mail")
    expect(mail.get_by_role("link", name="Council approves the new bridge")).to_be_visible()
    expect(mail.get_by_text("Water use, street by street")).to_have_count(0)
    shoot_everywhere(contexts, state, page.url, "preview")

    page.get_by_role("button", name="Send a test to me").click()
    expect(page.get_by_text(f"A test of the daily edition was sent to {EDITOR}.")).to_be_visible()
    [test_mail] = smtp_server.wait_for(1)
    assert test_mail.rcpt_tos == [EDITOR]
    assert "Council approves the new bridge" in test_mail.parsed()["Subject"]

    # The confirmation names the articles and the readers; sending goes to the edition's page.
    page.get_by_role("link", name="Send now…").click()
    question = f"Send the daily edition of 3 articles to {DAILY_READERS} readers?"
    expect(page.get_by_text(question)).to_be_visible()
    shoot_everywhere(contexts, state, page.url, "send-confirmation")
    page.get_by_role("button", name=f"Send to {DAILY_READERS} readers").click()
    expect(page).to_have_url(f"{base}/admin/editions/1")
    expect(page.locator("[data-state]")).to_have_text("sending")
    page.evaluate("window.notReloaded = true")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "edition-sending-live-1280-light.png"), full_page=True)
    first = figure(page, "sent")
    # The figures move while the page stays: the script, not a reload.
    expect(page.locator('[data-figure="sent"]')).not_to_have_text(f"{first:,}")
    assert page.evaluate("window.notReloaded") is True
    # Done: the page loads once more with the whole outcome.
    expect(page.locator("[data-state]")).to_have_text("done", timeout=60_000)
    assert page.evaluate("window.notReloaded") is None
    assert figure(page, "sent") == DAILY_READERS and figure(page, "waiting") == 0
    received = smtp_server.wait_for(1 + DAILY_READERS)
    assert sorted(address for message in received[1:] for address in message.rcpt_tos) == [
        f"reader{number:02d}@example.org" for number in range(DAILY_READERS)
    ]
    shoot_everywhere(contexts, state, page.url, "edition-done")

    # A breaking-news alert: the article, the topic, the audience confirmed, sent once.
    page.get_by_role("link", name="Alerts", exact=True).click()
    shoot_everywhere(contexts, state, page.url, "alerts")
    page.get_by_label("Dam breaks upstream of the city").check()
    page.get_by_label("To the readers of").select_option(label="Breaking News")
    page.get_by_role("button", name="Continue").click()
    alert_readers = DAILY_READERS // 2 - 2
    expect(
        page.get_by_text(
            f"Send “Dam breaks upstream of the city” now to the {alert_readers} readers of "
            "Breaking News who have alerts on?"
        )
    ).to_be_visible()
    confirmation = page.url
    shoot_everywhere(contexts, state, confirmation, "alert-confirmation")
    page.get_by_role("button", name=f"Send the alert to {alert_readers} readers").click()
    expect(page.get_by_role("heading", name="Edition 2 · Alert · Breaking News")).to_be_visible()
    expect(page.locator("[data-state]")).to_have_text("done", timeout=60_000)
    alerts = smtp_server.wait_for(1 + DAILY_READERS + alert_readers)[1 + DAILY_READERS :]
    assert {message.parsed()["Subject"] for message in alerts} == {
        "Breaking: Dam breaks upstream of the city | The Daily Ledger"
    }
    assert all(message.header("List-Unsubscribe-Post") for message in alerts)
    off = {"reader01@example.org", "reader03@example.org"}
    assert not off & {address for message in alerts for address in message.rcpt_tos}

    # The same alert again is refused, naming the edition that sent it.
    page.goto(confirmation)
    expect(page.get_by_text("was already sent as an alert")).to_be_visible()
    expect(page.get_by_role("link", name="see edition 2")).to_be_visible()

    # A weekly edition planned and never dispatched stays "sending": its page while sending.
    add_reader(console.app, "weekly@example.org", ["politics"], frequency="weekly")
    with console.app.app_context():
        weekly = planning.plan("weekly")
        assert weekly is not None
        weekly_id = weekly.id
    shoot_everywhere(contexts, state, f"{base}/admin/editions/{weekly_id}", "edition-sending")
    shoot_everywhere(contexts, state, f"{base}/admin/editions", "editions")
