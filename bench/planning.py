#!/usr/bin/env python
"""Planning an edition for N readers spread over Z time zones (SEND_IN_READER_TIME).

    .venv/bin/python bench/planning.py                       # 1,000,000 readers, 24 zones
    .venv/bin/python bench/planning.py -n 100000 --zones 6

Creates a PostgreSQL database ``newsletter_bench_<hex>``, migrates it, loads N active daily
readers with COPY (as ``bench/digest.py`` does), each in one of the first Z zones of
``ZONES`` (one per hour of offset, round the world), and times ``planning.plan`` with
SEND_IN_READER_TIME on: the ledger and its send windows in one transaction. Then, on the
same data, the same planning without the setting (``--no-baseline`` skips it). Prints both
times (``Edition.planning_seconds``), checks that every reader has one row and that the
windows cover the rows in order, writes ``bench/results/planning-<N>-<Z>-<timestamp>.json``
and drops the database. Needs only PostgreSQL: nothing is sent.

Exit status: 0 when the ledger is right and planning took less than ``--limit`` seconds
(30), 1 otherwise, 2 when PostgreSQL is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support as support
from _support import BenchError, say
from digest import load_data

# Round the world, one zone a step of offset (half and quarter hours among them).
ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Noumea",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
)


def plan_once(settings: dict[str, Any]) -> dict[str, Any]:
    """Plan the daily edition in a fresh app with ``settings``; its figures."""
    from sqlalchemy import func, select

    from newsletter import create_app
    from newsletter.db.models import Delivery, SendWindow
    from newsletter.digests import planning
    from newsletter.extensions import db

    app = create_app(settings)
    with app.app_context():
        try:
            edition = planning.plan("daily")
            if edition is None:
                raise BenchError("no new articles: planning created no edition")
            rows = db.session.scalar(select(func.count()).where(Delivery.edition_id == edition.id))
            windows = db.session.execute(
                select(
                    SendWindow.opens_at, SendWindow.first_id, SendWindow.last_id, SendWindow.readers
                )
                .where(SendWindow.edition_id == edition.id)
                .order_by(SendWindow.opens_at)
            ).all()
            ordered = all(a.last_id < b.first_id for a, b in pairwise(windows))
            return {
                "edition_id": edition.id,
                "planning_seconds": round(float(edition.planning_seconds or 0.0), 3),
                "rows": int(rows or 0),
                "windows": len(windows),
                "windows_in_id_order": ordered,
                "rows_in_windows": sum(w.readers for w in windows),
            }
        finally:
            db.session.remove()
            db.engine.dispose()


def forget_editions(url: str) -> None:
    """Drop the planned editions (and their ledger), so the next planning starts afresh."""
    import psycopg

    with psycopg.connect(support.libpq_url(url), autocommit=True) as conn:
        conn.execute("DELETE FROM edition")
        conn.execute("VACUUM ANALYZE delivery")


def run(args: argparse.Namespace) -> int:
    zones = ZONES[: args.zones]
    result: dict[str, Any] = {
        "benchmark": "planning",
        "status": "incomplete",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": support.machine(),
        "code": support.code_version(),
        "subscribers": args.subscribers,
        "zones": list(zones),
    }
    url = None
    try:
        url = support.create_database("newsletter_bench")
        say(f"Planning benchmark: {args.subscribers:,} readers over {len(zones)} zone(s)")
        settings: dict[str, Any] = {
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SQLALCHEMY_DATABASE_URI": url,
            "BASE_URL": "https://news.example",
            "MAIL_BACKEND": "memory",
        }
        support.migrate(settings)
        loaded = load_data(url, args.subscribers, datetime.now(UTC), zones)
        result["load"] = loaded
        say(f"  loaded {args.subscribers:,} readers in {loaded['seconds']:.1f}s")
        # The next hour as DIGEST_HOUR: every zone's window still ahead, none merged into
        # the one that opens at once.
        hour = (datetime.now(UTC).hour + 1) % 24
        timed = plan_once({**settings, "SEND_IN_READER_TIME": True, "DIGEST_HOUR": hour})
        result["reader_time"] = timed
        say(
            f"  in readers' time: {timed['planning_seconds']:.2f}s, {timed['rows']:,} rows "
            f"in {timed['windows']} windows"
        )
        if not args.no_baseline:
            forget_editions(url)
            plain = plan_once({**settings, "SEND_IN_READER_TIME": False})
            result["baseline"] = plain
            say(f"  without the setting: {plain['planning_seconds']:.2f}s, {plain['rows']:,} rows")
        right = (
            timed["rows"] == args.subscribers == timed["rows_in_windows"]
            and timed["windows_in_id_order"]
            and timed["windows"] >= 1
        )
        fast = timed["planning_seconds"] < args.limit
        result["status"] = "ok" if right and fast else "failed"
        if not right:
            say("  FAILED: the ledger or its windows do not cover every reader once, in order")
        if not fast:
            say(f"  FAILED: planning took {timed['planning_seconds']:.2f}s (limit {args.limit}s)")
        return 0 if right and fast else 1
    except BenchError as exc:
        say(f"ERROR: {exc}")
        result["status"] = "error"
        result["error"] = str(exc)
        return 2 if "not reachable" in str(exc) else 1
    finally:
        if url is not None:
            with contextlib.suppress(Exception):
                support.drop_database(url)
        path = args.output or (
            support.RESULTS_DIR
            / f"planning-{args.subscribers}-{len(zones)}-{support.timestamp()}.json"
        )
        say(f"  result: {support.write_result(path, result)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Planning time with readers spread over time zones.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--subscribers", "-n", type=int, default=1_000_000)
    parser.add_argument(
        "--zones", type=int, default=len(ZONES), help=f"how many zones, 1 to {len(ZONES)}"
    )
    parser.add_argument("--limit", type=float, default=30.0, help="seconds planning may take")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without zones")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    if args.subscribers < 1 or not 1 <= args.zones <= len(ZONES):
        parser.error(f"--subscribers at least 1, --zones from 1 to {len(ZONES)}")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args()))
