"""A German reader's whole way, and an Arabic one's right to left, in a real Chromium.

German: the signup page, the confirmation mail (subject, text and HTML), the confirm page,
the welcome, a digest and the unsubscribe page, none of them holding any English of the
catalog. Arabic: pages and mails written right to left that fit a phone. Screenshots at 390
and 1280 px, light and dark, go to test-artifacts/i18n/.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, LiveService
from tests.support.catalog import english_in
from tests.web.test_browser import link_in, subscriber, wait_for_mail, wait_out_fill_time

pytestmark = pytest.mark.browser

with contextlib.suppress(ImportError):  # without it the browser fixture skips
    from playwright.sync_api import Browser, Page, expect

SHOTS = ARTIFACTS / "i18n"
WIDTHS = (390, 1280)
SCHEMES = ("light", "dark")
LANGUAGES = ["en", "de", "ar"]

GERMAN_SITE = {
    "LANGUAGES": LANGUAGES,
    "SITE_NAME": "Stadtanzeiger",
    "POSTAL_ADDRESS": "Stadtanzeiger GmbH, Hauptstraße 1, 10115 Berlin",
    "TOPICS": ["Politik", "Wirtschaft", "Kultur"],
    "TIMEZONE": "Europe/Berlin",
}
GERMAN_ARTICLES = [
    {
        "title": "Stadtrat beschließt den Haushalt für 2027",
        "category": "Politik",
        "summary": "<p>Nach langer Debatte stimmte eine breite Mehrheit für den Entwurf. "
        "Mehr Geld fließt in Schulen und Radwege.</p>",
        "author": "Jana Becker",
    },
    {
        "title": "Neue Brücke über die Spree wird im Frühjahr eröffnet",
        "category": "Politik",
        "summary": "<p>Die Bauarbeiten liegen im Zeitplan, teilte die Verwaltung mit.</p>",
    },
    {
        "title": "Mittelstand blickt zuversichtlicher auf das neue Jahr",
        "category": "Wirtschaft",
        "summary": "<ul><li>Mehr Aufträge</li><li>Weniger Lieferengpässe</li></ul>",
    },
]
ARABIC_SITE = {
    "LANGUAGES": LANGUAGES,
    "SITE_NAME": "صحيفة المدينة",
    "POSTAL_ADDRESS": "صحيفة المدينة، شارع النيل ١٢، القاهرة",
    "TOPICS": ["سياسة", "اقتصاد", "ثقافة"],
}
ARABIC_ARTICLES = [
    {
        "title": "مجلس المدينة يقر ميزانية العام المقبل بعد نقاش طويل",
        "category": "سياسة",
        "summary": "<p>صوتت أغلبية واسعة لصالح المشروع، مع زيادة الإنفاق على المدارس والنقل.</p>"
        "<blockquote>قال رئيس المجلس إن الميزانية متوازنة.</blockquote>",
        "author": "ليلى حسن",
    },
    {
        "title": "افتتاح معرض الكتاب بمشاركة مئات الناشرين",
        "category": "ثقافة",
        "summary": "<ul><li>أكثر من ٨٠٠ دار نشر</li><li>برنامج للأطفال كل يوم</li></ul>",
    },
]


# --- helpers -------------------------------------------------------------------------------


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def no_english(where: str, html: str) -> None:
    found = english_in(html)
    assert not found, f"English of the catalog in {where}: {found}"


def fits(page: Page, width: int) -> None:
    """Nothing sticks out on either side (a right-to-left page overflows to the left)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url
    outside = page.evaluate(
        """(width) => [...document.body.querySelectorAll('*')]
            .filter(e => !e.closest('.hp, .preheader') && e.getClientRects().length)
            .map(e => e.getBoundingClientRect())
            .filter(r => r.width && (r.left < -0.5 || r.right > width + 0.5))
            .length""",
        width,
    )
    assert outside == 0, f"{outside} elements outside a {width} px screen on {page.url}"


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return (
        str(text.get_content()).replace("\r\n", "\n"),
        str(html.get_content()).replace("\r\n", "\n"),
    )


def import_articles(service: LiveService, tmp_path: Path, articles: list[dict[str, Any]]) -> None:
    published = datetime.now(UTC) - timedelta(hours=2)
    lines = [
        json.dumps(
            {
                "url": f"https://zeitung.example/{index}",
                "published": (published - timedelta(minutes=index)).isoformat(),
                **article,
            },
            ensure_ascii=False,
        )
        for index, article in enumerate(articles)
    ]
    feed = tmp_path / "articles.jsonl"
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = service.app.test_cli_runner()
    result = runner.invoke(args=["articles", "import", str(feed)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["digest", "send", "--frequency", "weekly"])
    assert result.exit_code == 0, result.output


def show_mail(browser: Browser, html: str, width: int, scheme: str) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": 800},
        color_scheme=scheme,  # type: ignore[arg-type]
    )
    page = context.new_page()
    page.set_content(html, wait_until="load")
    return page


def mail_shots(browser: Browser, html: str, name: str) -> None:
    """The mail on a phone and a desktop, light and dark: it fits, and a person can look."""
    for width in WIDTHS:
        for scheme in SCHEMES:
            page = show_mail(browser, html, width, scheme)
            fits(page, width)
            shot(page, f"{name}-{width}-{scheme}.png")
            page.context.close()


def page_shots(new_page: Callable[..., Page], url: str, name: str, locale: str) -> None:
    for width in WIDTHS:
        for scheme in SCHEMES:
            page = new_page(
                viewport={"width": width, "height": 900}, color_scheme=scheme, locale=locale
            )
            page.goto(url)
            fits(page, width)
            shot(page, f"{name}-{width}-{scheme}.png")


def sign_up(page: Page, url: str, *, name: str, email: str, ticks: list[str], button: str) -> None:
    page.goto(f"{url}/subscribe")
    opened = time.monotonic()
    page.locator("#name").fill(name)
    page.locator("#email").fill(email)
    for label in ticks:
        page.get_by_label(label, exact=True).check()
    wait_out_fill_time(opened)
    page.get_by_role("button", name=button).click()


# --- the tests -----------------------------------------------------------------------------


def test_a_german_reader_signs_up_confirms_reads_and_leaves_all_in_german(
    start_service: Callable[..., LiveService],
    new_page: Callable[..., Page],
    browser: Browser,
    tmp_path: Path,
) -> None:
    service = start_service(**GERMAN_SITE)
    page = new_page(locale="de-DE")

    page.goto(f"{service.url}/subscribe")
    expect(page.get_by_role("heading", name="Die neuesten Nachrichten")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "de"
    expect(page.get_by_label("Sprache")).to_have_value("de")
    no_english("the signup page", page.content())
    page_shots(new_page, f"{service.url}/subscribe", "signup-de", "de-DE")

    sign_up(
        page,
        service.url,
        name="Lea Schmidt",
        email="lea@example.de",
        ticks=[
            "Politik",
            "Wirtschaft",
            "Ich bin einverstanden, E-Mails von Stadtanzeiger zu erhalten",
        ],
        button="Abonnieren",
    )
    expect(page.get_by_role("heading", name="Sehen Sie in Ihrem Postfach nach")).to_be_visible()
    no_english("the signup answer", page.content())
    assert subscriber(service.app, "lea@example.de").language == "de"

    [confirm] = wait_for_mail(service.outbox)
    assert confirm["Subject"] == "Bestätigen Sie Ihr Abonnement von Stadtanzeiger"
    text, html = parts(confirm)
    no_english("the confirmation mail's text", text)
    no_english("the confirmation mail's HTML", html)
    no_english("the confirmation mail's subject", str(confirm["Subject"]))
    mail_shots(browser, html, "mail-confirm-de")

    page.goto(link_in(confirm, "/confirm/"))
    expect(page.get_by_role("heading", name="Bestätigen Sie Ihr Abonnement")).to_be_visible()
    no_english("the confirm page", page.content())
    page.get_by_role("button", name="Bestätigen").click()
    expect(page.get_by_role("heading", name="Sie sind angemeldet")).to_be_visible()
    no_english("the confirmed page", page.content())

    welcome = wait_for_mail(service.outbox, 2)[1]
    assert welcome["Subject"] == "Willkommen bei Stadtanzeiger"
    for part in parts(welcome):
        no_english("the welcome mail", part)

    import_articles(service, tmp_path, GERMAN_ARTICLES)
    digest = wait_for_mail(service.outbox, 3)[2]
    assert digest["Subject"] == (
        "Stadtrat beschließt den Haushalt für 2027 und 2 weitere Artikel | "
        "Wöchentlicher Überblick von Stadtanzeiger"
    )
    text, html = parts(digest)
    assert text.startswith("Stadtanzeiger\n\nHallo Lea Schmidt,\n\nHier ist Ihr wöchentlicher")
    no_english("the digest's text", text)
    no_english("the digest's HTML", html)
    no_english("the digest's subject", str(digest["Subject"]))
    mail_shots(browser, html, "digest-de")
    reading = show_mail(browser, html, 390, "light")
    expect(reading.get_by_text("Hier ist Ihr wöchentlicher Überblick")).to_be_visible()
    reading.context.close()

    page.goto(link_in(digest, "/unsubscribe/"))
    expect(page.get_by_role("heading", name="Abmelden")).to_be_visible()
    no_english("the unsubscribe page", page.content())
    page.get_by_role("button", name="Abmelden").click()
    expect(page.get_by_role("heading", name="Sie sind abgemeldet")).to_be_visible()
    no_english("the unsubscribed page", page.content())
    assert subscriber(service.app, "lea@example.de").status == "unsubscribed"


def test_an_arabic_reader_gets_pages_and_mails_right_to_left_that_fit_a_phone(
    start_service: Callable[..., LiveService],
    new_page: Callable[..., Page],
    browser: Browser,
    tmp_path: Path,
) -> None:
    service = start_service(**ARABIC_SITE)
    phone = new_page(viewport={"width": 390, "height": 844}, locale="ar")

    phone.goto(f"{service.url}/subscribe")
    assert phone.locator("html").get_attribute("dir") == "rtl"
    expect(phone.get_by_role("heading", name="احصل على آخر الأخبار")).to_be_visible()
    # Right to left: the heading's text starts at the right edge of the column.
    heading = phone.get_by_role("heading", name="احصل على آخر الأخبار").bounding_box()
    main = phone.locator("main").bounding_box()
    assert heading is not None and main is not None
    assert heading["x"] + heading["width"] > main["x"] + main["width"] - 40
    fits(phone, 390)
    no_english("the Arabic signup page", phone.content())
    page_shots(new_page, f"{service.url}/subscribe", "signup-ar", "ar")

    sign_up(
        phone,
        service.url,
        name="سارة علي",
        email="sara@example.org",
        ticks=["سياسة", "ثقافة", "أوافق على تلقي رسائل بريد إلكتروني من صحيفة المدينة"],
        button="اشترك",
    )
    expect(phone.get_by_role("heading", name="تحقّق من بريدك الوارد")).to_be_visible()
    fits(phone, 390)
    [confirm] = wait_for_mail(service.outbox)
    assert confirm["Subject"] == "أكّد اشتراكك في صحيفة المدينة"
    _, html = parts(confirm)
    assert 'dir="rtl"' in html
    mail_shots(browser, html, "mail-confirm-ar")

    phone.goto(link_in(confirm, "/confirm/"))
    assert phone.locator("html").get_attribute("dir") == "rtl"
    fits(phone, 390)
    shot(phone, "confirm-ar-390-light.png")
    phone.get_by_role("button", name="تأكيد").click()
    expect(phone.get_by_role("heading", name="تم اشتراكك")).to_be_visible()

    import_articles(service, tmp_path, ARABIC_ARTICLES)
    digest = wait_for_mail(service.outbox, 3)[2]
    text, html = parts(digest)
    assert text.startswith("صحيفة المدينة\n\nمرحبًا سارة علي،")  # noqa: RUF001
    no_english("the Arabic digest's text", text)
    no_english("the Arabic digest's HTML", html)
    mail_shots(browser, html, "digest-ar")
    reading = show_mail(browser, html, 390, "light")
    assert reading.evaluate("getComputedStyle(document.querySelector('.cell')).direction") == "rtl"
    reading.context.close()
