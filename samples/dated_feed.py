"""Write the sample feed dated as if published today.

    python samples/dated_feed.py OUT.xml [--hours-old 3]

``samples/feed.xml`` has fixed dates, and a digest only takes articles of the last day or
week, so read as it is the sample would be too old to preview or send a fortnight after it
was written. This copies it with every date moved by the same amount, keeping the gaps
between articles, so that the newest is a few hours old. Guids are kept: fetching the copy
again later adds nothing, and articles already loaded keep the dates they were loaded with.
``make run`` writes ``instance/sample-feed.xml`` with it and fetches that.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "feed.xml"
DATES = re.compile(r"<(pubDate|lastBuildDate)>([^<]+)</\1>")


def redate(feed: str, now: datetime, hours_old: float = 3) -> str:
    """``feed`` with its dates moved so the newest article was published ``hours_old`` ago."""
    published = [
        parsedate_to_datetime(m.group(2)) for m in DATES.finditer(feed) if m.group(1) == "pubDate"
    ]
    if not published:
        raise ValueError("the feed has no pubDate")
    newest = max(published)
    shift = now - timedelta(hours=hours_old) - newest
    shift -= timedelta(seconds=shift.total_seconds() % 60)  # whole minutes: tidy times

    def moved(found: re.Match[str]) -> str:
        when = (parsedate_to_datetime(found.group(2)) + shift).astimezone(UTC)
        return f"<{found.group(1)}>{format_datetime(when)}</{found.group(1)}>"

    return DATES.sub(moved, feed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="Where to write the dated copy.")
    parser.add_argument(
        "--hours-old", type=float, default=3.0, help="Age of the newest article (default 3)."
    )
    args = parser.parse_args()
    text = redate(SAMPLE.read_text(encoding="utf-8"), datetime.now(UTC), args.hours_old)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
