"""Every mail the service sends, opened in a real Chromium as a phone and a desktop would.

The confirmation, the "already subscribed" notice, a digest and a breaking-news alert are
produced the way readers get them (the signup form, ``articles fetch`` and ``articles
import``, ``digest send``, ``sending.start_alert``) and their HTML part is shown at 320, 390
and 1280 px, in a light and a dark colour scheme, and as the Outlook apps' dark mode marks it.
Nothing may stick out sideways, and every visible piece of text, links included, must reach a
contrast of 4.5:1 against what is behind it (WCAG 2.2 AA, 1.4.3). Screenshots go to
test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select

from newsletter import create_app
from newsletter.articles import store
from newsletter.db.models import Subscriber
from newsletter.digests import sending
from newsletter.extensions import db, limiter
from newsletter.mail.backends import MemoryBackend
from tests.conftest import base_config, link_from, path_of, signup
from tests.support import services

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SAMPLE_FEED = ROOT / "samples" / "feed.xml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IMAGES = "https://images.ledger.example/"
# Links as long as real ones get: a signed token, a tracking-free but deep article path.
LONG_URL = "https://ledger.example/analytics/" + "a-very-long-article-path-" * 8 + "end"
WIDTHS = (320, 390, 1280)
SCHEMES = ("light", "dark", "outlook-dark")
AA = 4.5
TOPICS = ["breaking-news", "politics", "business", "analytics", "technology", "culture"]

_PLAYWRIGHT_MISSING: ImportError | None = None
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError as exc:  # pragma: no cover
    _PLAYWRIGHT_MISSING = exc


# --- the mails -----------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    """A plain grey picture, standing in for a feed's photo."""
    row = b"\x00" + b"\x88\x99\xaa" * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _html(message: Any) -> str:
    parsed: EmailMessage = message_from_bytes(message.data, policy=policy.default)
    part = parsed.get_body(("html",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture(scope="module")
def mails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The HTML part of each mail, as sent."""
    tmp = tmp_path_factory.mktemp("mail-layout")
    app: Flask = create_app(
        {
            **base_config(f"sqlite:///{tmp / 'newsletter.db'}", tmp),
            "BASE_URL": "https://newsletter.ledger.example",
            "POSTAL_ADDRESS": "Ledger Media Ltd, 12 Fleet Street, London EC4Y 1AA",
        }
    )
    with app.app_context():
        upgrade()
    limiter.reset()
    MemoryBackend.outbox.clear()
    client = app.test_client()
    signup(client, "pat@example.com", name="Pat Reader", frequency="weekly", topics=TOPICS)
    [confirm] = MemoryBackend.outbox
    # The reader presses the confirmation page's button: the welcome mail follows.
    assert client.post(path_of(link_from(confirm, "/confirm/"))).status_code == 200
    with app.app_context():
        reader = db.session.scalars(select(Subscriber)).one()
        assert (reader.status, reader.name) == ("active", "Pat Reader")
    assert len(MemoryBackend.outbox) == 2, "no welcome mail"
    welcome = MemoryBackend.outbox[1]
    signup(client, "pat@example.com", name="Pat Reader", frequency="weekly", topics=TOPICS)
    assert len(MemoryBackend.outbox) == 3, "no already-subscribed mail"
    notice = MemoryBackend.outbox[2]

    runner = app.test_cli_runner()
    result = runner.invoke(args=["articles", "fetch", "--feed", str(SAMPLE_FEED)])
    assert result.exit_code == 0, result.output
    extra = tmp / "extra.jsonl"
    extra.write_text(
        json.dumps(
            {
                "url": LONG_URL,
                "title": "How the valley's water use changed over ten years, street by street",
                "category": "Analytics",
                "summary": f"<p>A map of every meter: <a href='{LONG_URL}'>{LONG_URL}</a></p>",
                "author": "Maria Okafor",
                "image_url": IMAGES + "water-map.png",
                "image_alt": "Map of the valley, darker where more water is used",
                "image_width": 1200,
                "image_height": 675,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["articles", "import", str(extra)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["digest", "send", "--frequency", "weekly"])
    assert result.exit_code == 0, result.output
    assert len(MemoryBackend.outbox) == 4, "no digest sent"
    digest = MemoryBackend.outbox[3]
    with app.app_context():
        # The imported story, picture and long link included, as a breaking-news alert.
        [story] = [a for a in store.recent_articles(50) if a.title.startswith("How the valley")]
        sending.start_alert(story.id, "breaking-news")
    assert len(MemoryBackend.outbox) == 5, "no alert sent"
    alert = MemoryBackend.outbox[4]
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    found = {
        "confirm": _html(confirm),
        "welcome": _html(welcome),
        "already-subscribed": _html(notice),
        "digest": _html(digest),
        "alert": _html(alert),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    for name, html in found.items():
        (ARTIFACTS / f"mail-{name}.html").write_text(html, encoding="utf-8")
    return found


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if _PLAYWRIGHT_MISSING is not None:
        services.unavailable("Playwright", _PLAYWRIGHT_MISSING)
    if not Path(CHROMIUM).exists():
        services.unavailable("Chromium", f"{CHROMIUM} does not exist")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:
            services.unavailable("Chromium", exc)
        yield chromium
        chromium.close()


@pytest.fixture
def open_mail(browser: Browser) -> Iterator[Callable[[str, int, str], Page]]:
    contexts = []
    picture = _png(1200, 675)

    def show(html: str, width: int, scheme: str) -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": 800},
            color_scheme="dark" if scheme == "dark" else "light",
        )
        contexts.append(context)
        page = context.new_page()
        # The feed's image host, answered here: nothing leaves the machine.
        page.route(
            f"{IMAGES}**", lambda route: route.fulfill(body=picture, content_type="image/png")
        )
        page.set_content(html, wait_until="load")
        if scheme == "outlook-dark":
            # Outlook.com and the Outlook apps mark a mail they darken with these attributes.
            page.evaluate(
                "document.documentElement.setAttribute('data-ogsc', '');"
                "document.documentElement.setAttribute('data-ogsb', '')"
            )
        return page

    yield show
    for context in contexts:
        context.close()


# Every visible element holding text of its own: its colour, and the colour behind it, found
# by compositing the backgrounds of it and its ancestors over the page's canvas.
_TEXT_COLOURS = """
(canvas) => {
  const parse = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const parts = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const over = (top, below) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + below[i] * (1 - a)).concat([1]);
  };
  const behind = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] >= 1) break;
    }
    let result = canvas;
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const found = [];
  for (const element of document.body.querySelectorAll('*')) {
    const own = [...element.childNodes]
      .filter(n => n.nodeType === Node.TEXT_NODE)
      .map(n => n.textContent.trim()).join(' ').trim();
    if (!own || element.getClientRects().length === 0) continue;
    const style = getComputedStyle(element);
    if (style.visibility !== 'visible') continue;
    const background = behind(element);
    found.push({
      tag: element.tagName.toLowerCase(),
      text: own.slice(0, 50),
      colour: over(parse(style.color), background),
      background: background,
    });
  }
  return found;
}
"""


def _luminance(rgb: list[float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(value) for value in rgb[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: list[float], second: list[float]) -> float:
    """The WCAG contrast ratio of two colours, from 1 to 21."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _canvas(page: Page, scheme: str) -> list[float]:
    """The colour under a mail that paints no background of its own: the viewer's."""
    return [18.0, 18.0, 18.0, 1.0] if scheme == "dark" else [255.0, 255.0, 255.0, 1.0]


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mail", ["confirm", "welcome", "already-subscribed", "digest", "alert"])
def test_every_mail_fits_the_screen_and_its_text_is_readable(
    mails: dict[str, str],
    open_mail: Callable[[str, int, str], Page],
    mail: str,
    width: int,
    scheme: str,
) -> None:
    page = open_mail(mails[mail], width, scheme)
    screenshot(page, f"mail-{mail}-{width}-{scheme}.png")

    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{mail} is {scroll_width} px wide on a {width} px screen"
    widest = page.evaluate(
        "Math.max(...[...document.body.querySelectorAll('*')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= width, f"an element of {mail} reaches {widest} px on a {width} px screen"

    texts = page.evaluate(_TEXT_COLOURS, _canvas(page, scheme))
    assert any(item["tag"] == "a" for item in texts), "no link found to check"
    unreadable = [
        f"<{item['tag']}> {item['text']!r}: {contrast(item['colour'], item['background']):.2f}:1"
        for item in texts
        if contrast(item["colour"], item["background"]) < AA
    ]
    assert not unreadable, f"{mail} in {scheme} at {width} px: " + "; ".join(unreadable)
    if scheme != "light":
        # Dark means dark: the column behind the text, not only the text, changed.
        column = page.evaluate("getComputedStyle(document.querySelector('.wrap')).backgroundColor")
        assert column != "rgb(255, 255, 255)", f"{mail} keeps a white column in {scheme}"


def test_the_digest_picture_keeps_its_proportions_and_is_not_needed_to_read_it(
    mails: dict[str, str], open_mail: Callable[[str, int, str], Page]
) -> None:
    page = open_mail(mails["digest"], 390, "light")
    picture = page.locator("img")
    assert picture.count() == 1
    assert picture.get_attribute("alt") == "Map of the valley, darker where more water is used"
    assert (picture.get_attribute("width"), picture.get_attribute("height")) == ("552", "310")
    box = picture.bounding_box()
    assert box is not None and box["width"] <= 390 - 2 * 16
    assert abs(box["height"] - box["width"] * 675 / 1200) < 2
    # With images off the headline, dateline and summary are all still there.
    page.route(f"{IMAGES}**", lambda route: route.abort())
    page.set_content(mails["digest"].replace(IMAGES, "https://images.invalid/"))
    body = page.locator("body").inner_text()
    assert "How the valley's water use changed" in body
    assert "Maria Okafor" in body
