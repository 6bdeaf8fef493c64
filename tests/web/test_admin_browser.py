"""The console in a real Chromium: an owner signs in, reads the dashboard, finds a reader and
erases them; an editor is refused the erasure. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from newsletter.db.models import AuditEvent, Subscriber, Suppression
from newsletter.extensions import db
from newsletter.readers.addresses import address_hash
from tests.support.browser import LiveService, screenshot
from tests.support.console import EDITOR, OWNER, PASSWORD, add_operator, seed_history

with contextlib.suppress(ImportError):  # the browser fixture skips without Playwright
    from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

WIDTHS = {"phone": 390, "desktop": 1280}


@pytest.fixture
def console(start_service: Callable[..., LiveService]) -> LiveService:
    service = start_service()
    add_operator(service.app, OWNER, "owner")
    add_operator(service.app, EDITOR, "editor")
    seed_history(service.app)
    return service


def sign_in(page: Page, service: LiveService, email: str, path: str = "/admin/") -> None:
    """Open a console page signed out, and sign in from the page it leads to."""
    page.goto(f"{service.url}{path}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def fits(page: Page) -> None:
    """Nothing sticks out sideways: wide tables scroll inside their own frame."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def count(service: LiveService, statement: Any) -> int:
    with service.app.app_context():
        try:
            return int(db.session.scalar(statement) or 0)
        finally:
            db.session.remove()


def test_an_owner_reads_the_dashboard_finds_a_reader_and_erases_them(
    console: LiveService, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, console, OWNER, "/admin/readers")
    # Back where the sign-in page was asked for.
    expect(page.get_by_role("heading", name="Readers")).to_be_visible()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    active = count(console, select(func.count()).where(Subscriber.status == "active"))
    expect(page.locator("#state-active td.num")).to_have_text(f"{active:,}")
    expect(page.get_by_role("img", name="Active readers at the end of each day")).to_be_visible()
    expect(page.locator("#editions tbody tr")).to_have_count(3)
    page.get_by_role("link", name="90 days").click()
    expect(page.get_by_role("link", name="90 days")).to_have_attribute("aria-current", "page")

    page.get_by_role("link", name="Readers").click()
    page.get_by_label("Find a reader").fill("Maria")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#results tbody tr")
    expect(rows.first).to_contain_text("Maria Okafor")
    address = rows.first.get_by_role("link").inner_text()
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=address)).to_be_visible()
    expect(page.get_by_role("heading", name="Consent history")).to_be_visible()
    expect(page.locator("#reader-deliveries tbody tr").first).to_be_visible()

    page.get_by_role("link", name="Erase this reader…").click()
    expect(page.get_by_role("heading", name="Erase this reader?")).to_be_visible()
    page.get_by_label("Type the address to confirm").fill("someone.else@example.org")
    page.get_by_role("button", name="Erase for good").click()
    expect(
        page.get_by_text("That is not this reader's address; nothing was erased.")
    ).to_be_visible()
    page.get_by_label("Type the address to confirm").fill(address)
    page.get_by_role("button", name="Erase for good").click()
    expect(page.get_by_text("The reader's data was erased.")).to_be_visible()

    assert count(console, select(func.count()).where(Subscriber.email == address)) == 0
    kept = select(Suppression.reason).where(Suppression.address_hash == address_hash(address))
    with console.app.app_context():
        assert db.session.scalar(kept) == "erased"
        db.session.remove()
    erasures = select(func.count()).where(
        AuditEvent.action == "reader.erase", AuditEvent.actor == f"operator:{OWNER}"
    )
    assert count(console, erasures) == 1


def test_an_editor_sees_readers_but_is_refused_their_erasure(
    console: LiveService, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    sign_in(page, console, EDITOR)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("link", name="Operators")).to_have_count(0)
    page.goto(f"{console.url}/admin/readers?q=ann")
    link = page.locator("#results tbody tr a").first
    address = link.inner_text()
    link.click()
    expect(page.get_by_role("heading", name="Consent history")).to_be_visible()
    expect(page.get_by_role("link", name="Erase this reader…")).to_have_count(0)
    expect(page.get_by_role("button", name="Export their data (JSON)")).to_have_count(0)
    response = page.goto(page.url + "/erase")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
    # Nor does posting the form directly (the page's own token, a forged request) erase.
    token = page.evaluate("document.querySelector('input[name=csrf_token]').value")
    answer = page.request.post(page.url, form={"csrf_token": token, "confirm": address})
    assert answer.status == 403
    assert count(console, select(func.count()).where(Subscriber.email == address)) == 1


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", sorted(WIDTHS))
def test_console_pages_fit_a_phone_and_a_desktop(
    console: LiveService, new_page: Callable[..., Page], size: str, scheme: str
) -> None:
    page = new_page(viewport={"width": WIDTHS[size], "height": 900}, color_scheme=scheme)
    sign_in(page, console, OWNER)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    fits(page)
    screenshot(page, f"console/dashboard-{WIDTHS[size]}-{scheme}.png")

    page.goto(f"{console.url}/admin/readers?q=ma")
    expect(page.locator("#results tbody tr").first).to_be_visible()
    fits(page)
    screenshot(page, f"console/readers-{WIDTHS[size]}-{scheme}.png")

    page.locator("#results tbody tr a").first.click()
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()
    fits(page)
    screenshot(page, f"console/reader-{WIDTHS[size]}-{scheme}.png")

    # The other pages need only fit; their pictures are for a person to look at.
    page.get_by_role("link", name="Erase this reader…").click()
    fits(page)
    screenshot(page, f"console/erase-{WIDTHS[size]}-{scheme}.png")
    for name, heading in (
        ("Bounces", "Bounces"),
        ("Operators", "Operators"),
        ("Audit log", "Audit log"),
        ("API tokens", "API tokens"),
        ("Settings", "Settings"),
    ):
        page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        fits(page)
        screenshot(page, f"console/{name.lower().replace(' ', '-')}-{WIDTHS[size]}-{scheme}.png")
