"""Articles: feeds (file and HTTP), cleaning, idempotent storage, and the operators' commands."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from newsletter.articles import cleaning, feeds, store
from newsletter.db.models import Article
from newsletter.errors import FeedError, InvalidArticle
from newsletter.extensions import db

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_FEED = SAMPLES / "feed.xml"
SAMPLE_JSONL = SAMPLES / "articles.jsonl"


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # A hanging feed must fail fast in tests.
    return {"FEED_TIMEOUT": 1.0}


def rss(items: str, title: str = "Test Feed") -> bytes:
    """An RSS 2.0 document around ``items``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://ledger.example/</link>"
        f"<description>d</description>{items}</channel></rss>"
    ).encode()


def item(n: int, *, title: str | None = None, link: str | None = "", extra: str = "") -> str:
    """One RSS item numbered ``n``; ``link=None`` leaves the link out."""
    title = title if title is not None else f"Story number {n}"
    link = f"https://ledger.example/story-{n}" if link == "" else link
    link_xml = f"<link>{link}</link>" if link is not None else ""
    return (
        f'<item><title>{title}</title>{link_xml}<guid isPermaLink="false">test-{n}</guid>'
        f"<pubDate>Mon, 23 Nov 2026 0{n % 10}:00:00 +0000</pubDate>"
        f"<category>Business</category>{extra}</item>"
    )


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Ledger (Atom)</title>
  <id>urn:ledger:atom</id>
  <updated>2026-11-23T10:00:00Z</updated>
  <entry>
    <id>tag:ledger.example,2026:atom-1</id>
    <title type="html">Prices &lt;em&gt;up&lt;/em&gt; again &amp;amp; again</title>
    <link rel="alternate" href="/business/prices-up"/>
    <category term="Business"/>
    <updated>2026-11-23T09:00:00+01:00</updated>
    <summary type="html">&lt;p&gt;Shop prices rose &lt;b&gt;2 %&lt;/b&gt;.&lt;/p&gt;</summary>
  </entry>
  <entry>
    <id>tag:ledger.example,2026:atom-2</id>
    <title>A quiet day at the harbour</title>
    <link rel="alternate" href="https://ledger.example/culture/harbour"/>
    <category term="Culture" label="Culture"/>
    <published>2026-11-22T08:00:00Z</published>
    <updated>2026-11-22T09:00:00Z</updated>
    <content type="html">&lt;p&gt;Boats, gulls and rain.&lt;/p&gt;</content>
  </entry>
</feed>
"""


class FeedServer:
    """A loopback HTTP server answering registered paths with fixed bodies."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = routes.get(self.path, (404, "text/plain", b"no"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, path: str, body: bytes, content_type: str = "application/rss+xml") -> str:
        self.routes[path] = (200, content_type, body)
        return self.base + path


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/feed.xml"
    sock.close()


def fetch(runner: FlaskCliRunner, *feeds: str | Path) -> Any:
    args = ["articles", "fetch"]
    for feed in feeds:
        args += ["--feed", str(feed)]
    return runner.invoke(args=args)


def stored(app: Flask) -> dict[str, Article]:
    with app.app_context():
        rows = db.session.scalars(select(Article)).all()
        db.session.expunge_all()
        return {row.guid: row for row in rows}


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --- Feeds through the CLI ------------------------------------------------------------------


def test_fetching_the_sample_feed_twice_adds_nothing_the_second_time(
    app: Flask, runner: FlaskCliRunner
) -> None:
    first = fetch(runner, SAMPLE_FEED)
    assert first.exit_code == 0, first.output
    assert f"{SAMPLE_FEED}: 14 new, 0 already known" in first.output

    second = fetch(runner, SAMPLE_FEED)
    assert second.exit_code == 0, second.output
    assert f"{SAMPLE_FEED}: 0 new, 14 already known" in second.output

    rows = stored(app)
    assert len(rows) == 14
    topics = {row.topic for row in rows.values()}
    assert topics == {"breaking-news", "politics", "business", "analytics", "technology", "culture"}

    hearing = rows["ledger-2026-11-23-0004"]
    assert hearing.category == "Politics"
    # WordPress's "The post ... appeared first on ..." line is boilerplate, dropped entirely.
    assert hearing.source == ""
    assert "appeared first" not in hearing.summary
    assert hearing.summary.endswith("December 3.</p>")
    assert rows["ledger-2026-11-24-0001"].author == "Maria Okafor"  # its dc:creator
    assert hearing.author is None
    assert hearing.summary.startswith("<p>Three evening hearings")
    assert hearing.published_at == datetime(2026, 11, 23, 16, 45, tzinfo=UTC)

    cafe = rows["ledger-2026-11-22-0012"]
    assert cafe.title == "Café Müller reopens with a stage for local musicians"
    assert "“We wanted a living room for the whole town.”" in cafe.summary


def test_rss_and_atom_over_http(
    app: Flask, runner: FlaskCliRunner, feed_server: FeedServer
) -> None:
    rss_url = feed_server.serve("/rss.xml", rss(item(1) + item(2)))
    atom_url = feed_server.serve("/atom.xml", ATOM, "application/atom+xml")

    result = fetch(runner, rss_url, atom_url)

    assert result.exit_code == 0, result.output
    assert f"{rss_url}: 2 new, 0 already known" in result.output
    assert f"{atom_url}: 2 new, 0 already known" in result.output
    rows = stored(app)
    assert set(rows) == {
        "test-1",
        "test-2",
        "tag:ledger.example,2026:atom-1",
        "tag:ledger.example,2026:atom-2",
    }
    prices = rows["tag:ledger.example,2026:atom-1"]
    assert prices.title == "Prices up again & again"
    # A relative link is resolved against the address the feed was served from.
    assert prices.url == f"{feed_server.base}/business/prices-up"
    assert prices.published_at == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert prices.summary == "<p>Shop prices rose <b>2 %</b>.</p>"
    harbour = rows["tag:ledger.example,2026:atom-2"]
    assert (harbour.category, harbour.topic) == ("Culture", "culture")
    assert harbour.summary == "<p>Boats, gulls and rain.</p>"
    assert harbour.published_at == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_a_feed_that_never_answers_times_out_and_the_others_are_kept(
    app: Flask, runner: FlaskCliRunner, feed_server: FeedServer, silent_server: str
) -> None:
    good = feed_server.serve("/rss.xml", rss(item(1)))

    result = fetch(runner, silent_server, good)

    assert result.exit_code == 1
    assert f"error: {silent_server}: timed out after 1 s" in result.output
    assert f"{good}: 1 new, 0 already known" in result.output
    assert set(stored(app)) == {"test-1"}


def test_http_errors_and_missing_files_name_the_feed(
    app: Flask, runner: FlaskCliRunner, feed_server: FeedServer, tmp_path: Path
) -> None:
    missing_url = feed_server.base + "/gone.xml"
    missing_file = tmp_path / "nope.xml"

    result = fetch(runner, missing_url, missing_file, SAMPLE_FEED)

    assert result.exit_code == 1
    assert f"error: {missing_url}: HTTP 404" in result.output
    assert f"error: {missing_file}: cannot read the file" in result.output
    assert "2 of 3 feeds failed" in result.output
    assert len(stored(app)) == 14


def test_malformed_xml_is_a_clear_error(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.xml", "<rss><channel><item><title>Half a feed</ti")
    page = write(tmp_path, "page.html", "<html><body><p>Not a feed</p></body></html>")

    result = fetch(runner, broken, page)

    assert result.exit_code == 1
    assert f"error: {broken}: not a well-formed RSS or Atom feed" in result.output
    assert f"error: {page}: not an RSS or Atom feed" in result.output
    assert "Traceback" not in result.output
    assert stored(app) == {}


def test_an_entry_without_link_is_named_and_the_others_are_kept(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    feed = write(
        tmp_path,
        "feed.xml",
        rss(item(1) + item(2, title="Nowhere to click", link=None) + item(3)),
    )

    result = fetch(runner, feed)

    assert result.exit_code == 0, result.output
    assert f"{feed}: 2 new, 0 already known" in result.output
    problem = next(line for line in result.output.splitlines() if "Nowhere to click" in line)
    assert problem == f'skipped: {feed}: entry 2 "Nowhere to click": link: the entry has no link'
    assert set(stored(app)) == {"test-1", "test-3"}


def test_hostile_html_is_removed_from_summaries(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    hostile = (
        "<p>Read <a href=\"javascript:alert('x')\">this</a> and "
        '<a href="https://ledger.example/ok" onclick="steal()">that</a>.</p>'
        '<img src="x" onerror="alert(1)"><script>alert("script")</script>'
        '<style>body { display: none }</style><iframe src="https://evil.example"></iframe>'
        '<div style="color:red">kept text</div>'
    )
    feed = write(
        tmp_path,
        "feed.xml",
        rss(item(1, extra=f"<description><![CDATA[{hostile}]]></description>")),
    )

    assert fetch(runner, feed).exit_code == 0
    summary = stored(app)["test-1"].summary

    for bad in (
        "<script",
        "alert",
        "onerror",
        "onclick",
        "javascript:",
        "<style",
        "display",
        "<img",
        "<iframe",
        "evil.example",
        "style=",
    ):
        assert bad not in summary, (bad, summary)
    assert '<a href="https://ledger.example/ok" rel="noopener noreferrer">that</a>' in summary
    assert "kept text" in summary


def test_a_title_with_line_breaks_comes_out_on_one_line(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    feed = write(
        tmp_path,
        "feed.xml",
        rss(item(1, title="Bcc: victim@example.com&#13;&#10;Subject: spam\r\n\t  second   line")),
    )

    assert fetch(runner, feed).exit_code == 0
    title = stored(app)["test-1"].title
    assert title == "Bcc: victim@example.com Subject: spam second line"


def test_fetch_reads_the_configured_feeds_by_default(app: Flask, runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["articles", "fetch"]).exit_code == 2  # none configured

    app.config["FEEDS"] = [str(SAMPLE_FEED)]
    result = runner.invoke(args=["articles", "fetch"])
    assert result.exit_code == 0, result.output
    assert "14 new" in result.output


def test_the_beat_task_survives_a_bad_feed(
    app: Flask, feed_server: FeedServer, silent_server: str
) -> None:
    from newsletter.tasks import fetch_feeds

    app.config["FEEDS"] = [silent_server, feed_server.serve("/rss.xml", rss(item(1) + item(2)))]
    with app.app_context():
        totals = fetch_feeds.apply().get()
    assert totals == {
        "feeds": 2,
        "failed": 1,
        "unchanged": 0,
        "deferred": 0,
        "added": 2,
        "skipped": 0,
    }
    assert set(stored(app)) == {"test-1", "test-2"}


# --- add, import, list ----------------------------------------------------------------------


def test_import_is_all_or_nothing(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    good = {"url": "https://ledger.example/a", "title": "A", "category": "Business"}
    lines = [
        json.dumps(good),
        json.dumps({**good, "url": "ftp://ledger.example/b", "guid": "b"}),
        "",
        "{not json",
        json.dumps({**good, "guid": "d", "published": "yesterday"}),
        json.dumps({"url": "https://ledger.example/e", "category": "Culture"}),
        json.dumps({**good, "guid": "f", "titel": "typo"}),
        json.dumps(good),
    ]
    path = write(tmp_path, "bad.jsonl", "\n".join(lines) + "\n")

    result = runner.invoke(args=["articles", "import", str(path)])

    assert result.exit_code == 1
    assert f"{path}: nothing imported; 6 bad lines:" in result.output
    assert "line 2: url: 'ftp://ledger.example/b' is not an absolute http(s) URL" in result.output
    assert "line 4: not valid JSON" in result.output
    assert "line 5: published: 'yesterday' is not an ISO 8601 date" in result.output
    assert "line 6: title: missing" in result.output
    assert "line 7: titel: unknown field" in result.output
    assert "line 8: guid: repeats line 1" in result.output
    assert "line 1:" not in result.output and "line 3:" not in result.output
    assert stored(app) == {}


MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/" xmlns:dc="http://purl.org/dc/elements/1.1/"'


def test_a_feeds_byline_and_image_are_kept_and_an_http_image_is_not(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    items = [
        item(
            1,
            extra="<dc:creator>Maria Okafor</dc:creator>"
            '<media:content url="https://img.ledger.example/1.jpg" medium="image" width="1200"'
            ' height="800"/><media:thumbnail url="https://img.ledger.example/1-small.jpg"/>',
        ),
        # An RSS <author> is an address with a name; only the name is a byline.
        item(
            2,
            extra="<author>jo@ledger.example (Jo Bloggs)</author>"
            '<enclosure url="https://img.ledger.example/2.png" type="image/png" length="1"/>',
        ),
        # Not https: a mail would load it in the clear, so it is left out; the next one is used.
        item(
            3,
            extra='<media:content url="http://img.ledger.example/3.jpg" medium="image"/>'
            '<media:thumbnail url="https://img.ledger.example/3.jpg" width="150" height="-4"/>',
        ),
        item(
            4, extra='<enclosure url="https://ledger.example/4.mp3" type="audio/mpeg" length="1"/>'
        ),
    ]
    feed = rss("".join(items)).replace(
        b'<rss version="2.0">', f'<rss version="2.0" {MEDIA}>'.encode()
    )
    path = tmp_path / "media.xml"
    path.write_bytes(feed)

    result = fetch(runner, path)

    assert result.exit_code == 0, result.output
    rows = stored(app)
    first, second, third, fourth = (rows[f"test-{n}"] for n in range(1, 5))
    assert (first.author, first.image_url, first.image_width, first.image_height) == (
        "Maria Okafor",
        "https://img.ledger.example/1.jpg",
        1200,
        800,
    )
    assert (second.author, second.image_url, second.image_width) == (
        "Jo Bloggs",
        "https://img.ledger.example/2.png",
        None,
    )
    # A size that cannot be is dropped, the picture kept.
    assert (third.image_url, third.image_width, third.image_height) == (
        "https://img.ledger.example/3.jpg",
        None,
        None,
    )
    assert (fourth.author, fourth.image_url) == (None, None)


def test_import_takes_an_optional_byline_and_image_and_names_a_bad_one(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    good = {
        "url": "https://ledger.example/a",
        "title": "A",
        "category": "Business",
        "author": "Maria Okafor",
        "image_url": "https://img.ledger.example/a.jpg",
        "image_alt": "The new depot at dawn",
        "image_width": 800,
        "image_height": 450,
    }
    bad_lines = [
        {**good, "guid": "b", "image_url": "http://img.ledger.example/b.jpg"},
        {**good, "guid": "c", "image_width": "800"},
        {**good, "guid": "d", "image_height": 0},
        {"url": "https://ledger.example/e", "title": "E", "category": "Business", "image_alt": "x"},
    ]
    path = write(tmp_path, "bad.jsonl", "\n".join(json.dumps(line) for line in bad_lines) + "\n")
    result = runner.invoke(args=["articles", "import", str(path)])
    assert result.exit_code == 1
    assert "line 1: image_url: 'http://img.ledger.example/b.jpg' is not an absolute https URL" in (
        result.output
    )
    assert "line 2: image_width: must be a whole number, not str" in result.output
    assert "line 3: image_height: must be a number of pixels from 1 to 10000" in result.output
    assert "line 4: image_alt: given without image_url" in result.output

    path = write(tmp_path, "good.jsonl", json.dumps(good) + "\n")
    result = runner.invoke(args=["articles", "import", str(path)])
    assert result.exit_code == 0, result.output
    row = stored(app)["https://ledger.example/a"]
    assert (row.author, row.image_url, row.image_alt, row.image_width, row.image_height) == (
        "Maria Okafor",
        "https://img.ledger.example/a.jpg",
        "The new depot at dawn",
        800,
        450,
    )


def test_import_the_sample_file_twice(app: Flask, runner: FlaskCliRunner) -> None:
    first = runner.invoke(args=["articles", "import", str(SAMPLE_JSONL)])
    assert first.exit_code == 0, first.output
    assert "3 new, 0 already known" in first.output
    second = runner.invoke(args=["articles", "import", str(SAMPLE_JSONL)])
    assert "0 new, 3 already known" in second.output

    wire = stored(app)["ledger-2026-11-20-0102"]
    assert (wire.source, wire.topic) == ("Valley Business Wire", "business")
    assert wire.published_at == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def test_add_one_article(app: Flask, runner: FlaskCliRunner) -> None:
    args = [
        "articles",
        "add",
        "--title",
        "Ferry timetable changes",
        "--url",
        "https://ledger.example/ferry",
        "--category",
        "Breaking News",
        "--published",
        "2026-11-24T08:00:00+01:00",
        "--summary",
        "<p>From <b>Monday</b></p>",
    ]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert 'Added "Ferry timetable changes"' in result.output
    again = runner.invoke(args=args)
    assert again.exit_code == 0 and "Already known" in again.output

    row = stored(app)["https://ledger.example/ferry"]
    assert (row.topic, row.summary) == ("breaking-news", "<p>From <b>Monday</b></p>")
    assert row.published_at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)

    bad = runner.invoke(
        args=["articles", "add", "--title", "x", "--url", "javascript:alert(1)", "--category", "A"]
    )
    assert bad.exit_code == 1
    assert "not added: --url" in bad.output
    assert len(stored(app)) == 1


def test_list_shows_the_newest_first(app: Flask, runner: FlaskCliRunner) -> None:
    assert "No articles." in runner.invoke(args=["articles", "list"]).output
    fetch(runner, SAMPLE_FEED)

    result = runner.invoke(args=["articles", "list", "--limit", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["Published", "(UTC)", "Section", "Title", "URL"]
    assert len(lines) == 4
    assert lines[1].startswith("2026-11-24 07:35  Breaking News  Winter storm warning")
    assert "River Road bridge closed after overnight flooding" in lines[2]
    assert lines[2].endswith("https://ledger.example/breaking-news/river-road-bridge-closed")

    culture = runner.invoke(args=["articles", "list", "--topic", "culture"]).output
    assert "Café Müller reopens" in culture and "River Road" not in culture
    assert len(culture.splitlines()) == 3


# --- The domain functions directly ----------------------------------------------------------


def test_sanitize_html_keeps_only_the_allow_list() -> None:
    raw = (
        '<p class="x" id="y">Hi <em>there</em> <a href="https://a.example/" target="_blank" '
        'title="t">link</a> <a href="/relative">rel</a> <a href="mailto:ed@ledger.example">mail</a>'
        ' <a href="jav&#x09;ascript:alert(1)">js</a> <a href="data:text/html,x">data</a></p>'
        "<script>alert(1)</script><style>p{}</style><h1>Head</h1><table><tr><td>cell</td></tr>"
        "</table><blockquote>q</blockquote><ul><li>one</li></ul><br><!-- comment -->"
    )
    assert cleaning.sanitize_html(raw) == (
        '<p>Hi <em>there</em> <a href="https://a.example/" rel="noopener noreferrer">link</a> '
        '<a rel="noopener noreferrer">rel</a> '
        '<a href="mailto:ed@ledger.example" rel="noopener noreferrer">mail</a> '
        '<a rel="noopener noreferrer">js</a> <a rel="noopener noreferrer">data</a></p>'
        "Headcell<blockquote>q</blockquote><ul><li>one</li></ul><br>"
    )


def test_plain_text_and_single_line() -> None:
    assert cleaning.plain_text("<p>One &amp; two</p><p>three<br>four</p><script>x</script>") == (
        "One & two three four"
    )
    assert cleaning.single_line("a\r\nb\u2028c\x00d\te", 100) == "a b cd e"
    assert cleaning.single_line("x" * 600, 500) == "x" * 499 + "…"


def test_strip_boilerplate_drops_only_a_trailing_wordpress_line_and_its_excerpt_mark() -> None:
    summary = (
        '<p>The post office reopens. [&#8230;]</p><p>The post <a href="https://a.example/p">'
        'Big news</a> appeared first on <a href="https://a.example">Site</a>.</p>'
    )
    assert cleaning.strip_boilerplate(summary) == "<p>The post office reopens.…</p>"
    assert cleaning.strip_boilerplate("<p>The post office reopens.</p>") == (
        "<p>The post office reopens.</p>"
    )


def test_parse_entry_defaults_and_limits() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    entry = {
        "link": "https://ledger.example/x",
        "title": "T" * 700,
        "summary": "<p>" + "word " * 1000 + "</p>",
        "tags": [{"term": ""}, {"term": "  Local   Sport "}],
        "published_parsed": (2030, 1, 1, 0, 0, 0, 0, 1, 0),  # in the future
    }
    record = feeds.parse_entry(entry, default_category="Breaking News", now=now)
    assert record.guid == "https://ledger.example/x"
    assert len(record.title) == 500
    assert (record.category, record.topic) == ("Local Sport", "local-sport")
    assert record.published_at == now
    assert len(record.summary) <= cleaning.SUMMARY_MAX + 10
    assert record.summary.startswith("<p>word") and record.summary.endswith("…</p>")

    untagged = feeds.parse_entry(
        {"link": "https://ledger.example/y", "title": "Y", "id": "g" * 2000},
        default_category="Breaking News",
        now=now,
    )
    assert (untagged.category, untagged.topic) == ("Breaking News", "breaking-news")
    assert untagged.published_at == now
    assert untagged.guid.startswith("sha256:") and len(untagged.guid) == 71

    with pytest.raises(InvalidArticle) as missing:
        feeds.parse_entry({"title": "No link"}, default_category="News")
    assert missing.value.field == "link"
    with pytest.raises(InvalidArticle) as no_title:
        feeds.parse_entry({"link": "https://a.example/"}, default_category="News")
    assert no_title.value.field == "title"


def test_parse_published() -> None:
    assert cleaning.parse_published("2026-11-23T08:15:00Z") == datetime(
        2026, 11, 23, 8, 15, tzinfo=UTC
    )
    assert cleaning.parse_published("2026-11-23") == datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(InvalidArticle):
        cleaning.parse_published("23/11/2026")


def test_upsert_skips_known_and_repeated_guids(app: Flask) -> None:
    def record(n: int) -> cleaning.ArticleRecord:
        return cleaning.make_record(
            url=f"https://ledger.example/{n}", title=f"N{n}", category="Business"
        )

    with app.app_context():
        assert store.upsert_articles([record(1), record(2), record(1)]) == (2, 1)
        db.session.commit()
        many = [record(n) for n in range(1200)]
        assert store.upsert_articles(many) == (1198, 2)
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Article)) == 1200


def test_fetch_feed_refuses_other_schemes() -> None:
    with pytest.raises(FeedError) as error:
        feeds.fetch_feed("ftp://ledger.example/feed.xml", timeout=1)
    assert error.value.feed == "ftp://ledger.example/feed.xml"
    assert "only http and https" in str(error.value)
