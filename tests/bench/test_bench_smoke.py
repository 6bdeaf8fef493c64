"""The benchmarks still run end to end: bench/digest.py (and bench/web.py, bench/planning.py)
on a small scale.

No speed is asserted; only that the harness works and that the digest run delivered
exactly one message per reader through real workers to a real SMTP sink.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import services

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _bench_env() -> dict[str, str]:
    """Point the benchmarks at the services the tests use."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    redis = urlsplit(services.REDIS_URL)
    env["NEWSLETTER_BENCH_POSTGRES_URL"] = services.POSTGRES_ADMIN_URL
    env["NEWSLETTER_BENCH_REDIS_URL"] = f"{redis.scheme}://{redis.netloc}"
    return env


def _require_postgres_and_redis() -> None:
    import psycopg
    import redis
    from sqlalchemy import make_url

    admin = make_url(services.POSTGRES_ADMIN_URL)
    try:
        libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(libpq, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        services.unavailable(f"PostgreSQL at {admin.render_as_string()}", exc)
    try:
        with redis.Redis.from_url(services.REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        services.unavailable(f"Redis at {services.REDIS_URL}", exc)


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=ROOT,
        env=_bench_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_digest_bench_smoke(tmp_path: Path) -> None:
    services.require_executable("smtp-sink", "postfix", "/usr/sbin/smtp-sink", "smtp-sink")
    _require_postgres_and_redis()
    output = tmp_path / "digest.json"

    completed = _run(
        [sys.executable, str(BENCH / "digest.py"), "--smoke", "--workers", "1",
         "--output", str(output), "--output-dir", str(tmp_path)],
        timeout=600,
    )  # fmt: skip

    log = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, log
    result = json.loads(output.read_text())
    assert result["status"] == "ok", log
    assert result["subscribers"] == 200
    assert result["send"]["sink_received"] == 200, log
    assert result["send"]["ledger"] == {"sent": 200}, log
    assert result["ceiling"]["sink_received"] == 200, log
    assert {mode: c["sink_received"] for mode, c in result["ceilings"].items()} == {
        "sendmail": 200,
        "pipelined": 200,
    }, log
    assert result["machine"]["cpu_count"] == os.cpu_count()
    assert len(result["worker_memory"]) == 1
    assert result["worker_memory"][0]["peak_rss_mib"] > 0
    assert result["planning_seconds"] is not None


def test_web_bench_smoke(tmp_path: Path) -> None:
    services.require_executable("wrk", "wrk", "wrk")
    if not (Path(sys.executable).parent / "gunicorn").exists():
        pytest.skip("gunicorn is not installed (it comes with the dev extra)")
    _require_postgres_and_redis()
    output = tmp_path / "web.json"

    completed = _run(
        [sys.executable, str(BENCH / "web.py"), "--duration", "1", "--warmup", "0",
         "--readers", "200", "--output", str(output), "--output-dir", str(tmp_path)],
        timeout=120,
    )  # fmt: skip

    log = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, log
    result = json.loads(output.read_text())
    endpoints = result["endpoints"]
    assert set(endpoints) == {
        "trivial",
        "floor",
        "subscribe_form",
        "signup",
        "api_signup",
        "unsubscribe",
    }
    for figures in endpoints.values():
        assert figures["requests_per_second"] > 0, log
        assert figures["unexpected"] == 0, log
    assert result["database_check"]["subscribers_written"] >= 1, log
    assert result["database_check"]["api_subscribers_written"] >= 1, log


def test_planning_bench_smoke(tmp_path: Path) -> None:
    _require_postgres_and_redis()
    output = tmp_path / "planning.json"
    completed = _run(
        [sys.executable, str(BENCH / "planning.py"), "-n", "500", "--output", str(output)],
        timeout=300,
    )
    log = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, log
    result = json.loads(output.read_text())
    assert result["status"] == "ok", log
    # 24 zones, some of which share a moment: as many windows as distinct moments.
    assert 1 < result["reader_time"]["windows"] <= 24, log
    assert result["reader_time"]["rows"] == result["baseline"]["rows"] == 500, log
