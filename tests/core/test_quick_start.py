"""The quick start works on any day, and `make test`/`make bench` bring what they run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner

from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "feed.xml"
DATED_FEED = ROOT / "samples" / "dated_feed.py"
SYSTEM_PACKAGES = ROOT / ".ci" / "system-packages"


def recipe(target: str) -> list[str]:
    """The command lines of one Makefile target."""
    text = (ROOT / "Makefile").read_text()
    found = re.search(rf"^{target}:.*\n((?:\t.*\n|#.*\n)+)", text, re.MULTILINE)
    assert found, f"no {target} target"
    return [line[1:] for line in found.group(1).splitlines() if line.startswith("\t")]


def pub_dates(feed: str) -> list[datetime]:
    return [parsedate_to_datetime(d) for d in re.findall(r"<pubDate>([^<]+)</pubDate>", feed)]


def test_the_sample_is_dated_so_its_newest_article_is_three_hours_old(tmp_path: Path) -> None:
    out = tmp_path / "sample-feed.xml"
    subprocess.run([sys.executable, str(DATED_FEED), str(out)], check=True, timeout=60)
    dated, original = pub_dates(out.read_text()), pub_dates(SAMPLE.read_text())
    age = datetime.now(UTC) - max(dated)
    assert timedelta(hours=3) <= age < timedelta(hours=3, minutes=2)
    # The same articles in the same order, the same gaps between them.
    shift = dated[0] - original[0]
    assert [d - shift for d in dated] == original
    # Everything else is as it was: titles, guids, categories.
    strip = re.compile(r"<(pubDate|lastBuildDate)>[^<]+<")
    assert strip.sub("<", out.read_text()) == strip.sub("<", SAMPLE.read_text())


def test_make_run_loads_a_sample_that_a_preview_and_a_weekly_send_find(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    # What `make run` does, on a fresh database (the `app` fixture's).
    lines = recipe("run")
    assert "$(BIN)/python samples/dated_feed.py instance/sample-feed.xml" in lines
    assert any("articles fetch --feed instance/sample-feed.xml" in line for line in lines)
    sample = tmp_path / "sample-feed.xml"
    subprocess.run([sys.executable, str(DATED_FEED), str(sample)], check=True, timeout=60)
    fetched = runner.invoke(args=["articles", "fetch", "--feed", str(sample)])
    assert fetched.exit_code == 0, fetched.output
    assert "14 new, 0 already known" in fetched.output

    preview = runner.invoke(args=["digest", "preview"])
    assert preview.exit_code == 0, preview.output
    assert preview.output.startswith("Subject: ")
    assert "Here is your daily digest" in preview.output
    # The newest articles of the sample, the lead one first.
    assert "Winter storm warning for the valley from Wednesday night" in preview.output
    assert "River Road bridge closed after overnight flooding" in preview.output

    weekly = runner.invoke(args=["digest", "send", "--frequency", "weekly", "--dry-run"])
    assert "a weekly edition of 14 articles" in weekly.output, weekly.output

    # The console's first owner: created and shown once; a second run only says where to go.
    assert "FLASK_DEBUG=1 $(BIN)/newsletter operators first-owner $(OWNER_EMAIL)" in lines
    owner = runner.invoke(args=["operators", "first-owner", "owner@example.com"])
    assert owner.exit_code == 0, owner.output
    assert re.search(r"email +owner@example.com\n +password \S{12,}", owner.output), owner.output
    again = runner.invoke(args=["operators", "first-owner", "owner@example.com"])
    assert "password" not in again.output and "/admin/sign-in" in again.output


# ---- .ci/system-packages, with a fake dpkg-query, apt-get, debconf-set-selections and id


def fake_debian(tmp_path: Path, *, uid: int, installed: set[str]) -> dict[str, str]:
    """A PATH whose package tools record what they were asked, in ``tmp_path/calls``."""
    bin_dir, state = tmp_path / "bin", tmp_path / "installed"
    bin_dir.mkdir()
    state.mkdir()
    for package in installed:
        (state / package).touch()
    calls = tmp_path / "calls"
    tools = {
        # The package is its last argument; "installed" when its file exists.
        "dpkg-query": f'for last; do :; done; [ -e "{state}/$last" ] && '
        'printf "install ok installed"; exit 0',
        "apt-get": f'echo "apt-get $*" >> "{calls}"; '
        f'if [ "$1" = install ]; then for p in "$@"; do touch "{state}/$p"; done; fi',
        "debconf-set-selections": f'echo "debconf $(cat)" >> "{calls}"',
        "id": f"echo {uid}",
    }
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}


def system_packages(
    env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    result = subprocess.run(
        [str(SYSTEM_PACKAGES), *args], env=env, capture_output=True, text=True, timeout=60
    )
    calls = Path(env["PATH"].split(":")[0]).parent / "calls"
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_as_root_the_missing_packages_are_installed_postfix_unconfigured(
    tmp_path: Path,
) -> None:
    env = fake_debian(tmp_path, uid=0, installed={"wrk"})
    result, calls = system_packages(env)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "debconf postfix postfix/main_mailer_type select No configuration",
        "apt-get update -qq",
        "apt-get install -y -qq chromium postfix",
    ]
    again, calls_again = system_packages(env)
    assert again.returncode == 0 and calls_again == calls  # nothing left to install


def test_without_root_the_exact_command_is_printed(tmp_path: Path) -> None:
    env = fake_debian(tmp_path, uid=1000, installed=set())
    result, calls = system_packages(env)
    assert result.returncode == 1
    assert calls == []
    assert "  chromium (the browser tests)" in result.stderr
    assert "  postfix (smtp-sink, the digest benchmark's relay)" in result.stderr
    assert (
        "  sudo sh -c \"apt-get update && echo 'postfix postfix/main_mailer_type select No "
        "configuration' | debconf-set-selections && DEBIAN_FRONTEND=noninteractive "
        'apt-get install -y chromium postfix wrk"\n'
    ) in result.stderr


def test_the_benchmark_asks_only_for_postfix(tmp_path: Path) -> None:
    env = fake_debian(tmp_path, uid=1000, installed={"postfix"})
    result, _ = system_packages(env, "postfix")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_make_test_make_bench_and_ci_use_the_one_script() -> None:
    assert recipe("test")[0].startswith(".ci/system-packages ||")
    # The digest bench brings smtp-sink itself, through the same script.
    assert recipe("bench")[0].startswith("$(BIN)/python bench/digest.py")
    assert '".ci" / "system-packages"' in (ROOT / "bench" / "_support.py").read_text()
    assert "\n.ci/system-packages" in (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()


def test_a_missing_chromium_skip_gives_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEWSLETTER_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        services.require_executable("Chromium", "chromium", "/nonexistent/chromium")
    message = str(skipped.value)
    assert message == (
        "Chromium is not installed (no /nonexistent/chromium); "
        "install it with: sudo apt-get install -y chromium"
    )
    assert "start it" not in message
