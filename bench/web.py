#!/usr/bin/env python
"""Web throughput: the reader-facing endpoints under gunicorn, against a trivial view and a floor.

    .venv/bin/python bench/web.py                      # PostgreSQL, wrk -t2 -c16 -d10s
    .venv/bin/python bench/web.py --database sqlite --duration 5

Serves the app with ``gunicorn --workers 2`` (sync) on a loopback port, configured only
through NEWSLETTER_* variables, on a freshly migrated database holding ``--readers`` active
readers; then serves ``bench/trivial_app.py`` and ``bench/floor_app.py`` the same way. wrk
measures, one after the other:

- ``GET /`` of the trivial app (the baseline of the pages),
- ``POST /`` of the floor app (the baseline of the durable writes: one INSERT and its COMMIT
  on the same database, with a small urlencoded body),
- ``GET /subscribe`` (the form: a template, a signed start time, a CSRF token and session),
- ``POST /subscribe`` (a complete signup with a unique address per request, CSRF token and
  session cookie taken from one real GET; written to the database and the consent log, and
  the confirmation mail handed to the Redis broker as in production; no worker runs, the
  queue is flushed afterwards. ``--signup-mail memory`` sends it in-process instead),
- ``POST /api/v1/subscriptions`` (the same signup through the JSON API, with a bearer token
  of scope subscribe: the token looked up, the body checked, the same double opt-in, and the
  act written to the audit log too),
- ``POST /unsubscribe/<token>`` with ``List-Unsubscribe=One-Click`` (RFC 8058), cycling
  through the readers' signed tokens; a reader met a second time is already unsubscribed,
  which the endpoint answers the same way.

Prints requests/s, the ratio to the trivial view, latency, gunicorn's CPU per request and the
count of unexpected answers (anything but a 2xx, or for a signup anything but its 303 to the
answer's page, for the API's anything but its 202) and socket errors; then each target as a
ratio of two rates of this run, PASS or FAIL (``TARGETS``); checks the database (each 303 or
202 signup wrote a reader, each floor answer a row), and writes
``bench/results/web-<timestamp>.json``. Exit status 0 when every answer was the expected
one (whether the targets were met is in the output and the JSON), 1 if not (or on a
failure), 2 when wrk, gunicorn or a service is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookies
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support as support
from _support import BenchError, say

BROKER_DB = 12
SIGNUP_DOMAIN = "signup.bench.example"

LUA_COMMON = r"""
-- Each thread counts answers by status; done() prints the totals for bench/web.py.
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
statuses = {}
-- wrk ... -- RUN OFFSET: a unique tag for this run's addresses, where to start in the tokens
function init(args)
  run = args[1] or "x"
  offset = tonumber(args[2] or "0")
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("STATUS %d %d\n", status, n))
  end
end
"""

LUA_SIGNUP = r"""
counter = 0
function request()
  counter = counter + 1
  local body = form .. "&email=r" .. run .. "t" .. id .. "n" .. counter .. "%40" .. domain
  return wrk.format("POST", "/subscribe", headers, body)
end
"""

LUA_API_SUBSCRIBE = r"""
counter = 0
function request()
  counter = counter + 1
  local body = '{"email": "a' .. run .. 't' .. id .. 'n' .. counter .. '@' .. domain .. '", '
    .. fields .. '}'
  return wrk.format("POST", "/api/v1/subscriptions", headers, body)
end
"""

LUA_UNSUBSCRIBE = r"""
counter = 0
function request()
  -- threads start at different places in the list, each reader once before any repeat
  local index = (offset + (id - 1) * math.floor(#tokens / threads_total) + counter) % #tokens + 1
  counter = counter + 1
  return wrk.format("POST", "/unsubscribe/" .. tokens[index], headers, body)
end
"""


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Each target: (name, endpoint, the endpoint it is measured against, the least ratio).
TARGETS = (
    ("one-click unsubscribe >= 0.7x the floor", "unsubscribe", "floor", 0.7),
    ("signup >= 0.5x the floor", "signup", "floor", 0.5),
    ("GET /subscribe >= 0.5x the trivial view", "subscribe_form", "trivial", 0.5),
    ("API subscribe >= 1.0x the form's signup", "api_signup", "signup", 1.0),
)

LUA_FLOOR = r"""
function request()
  return wrk.format("POST", "/", headers, body .. "&run=" .. run)
end
"""


# ---- wrk


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    found: dict[str, Any] = {"statuses": {}}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        found["requests_per_second"] = float(match.group(1))
    if match := re.search(r"(\d+) requests in ([\d.]+\w+)", output):
        found["requests"] = int(match.group(1))
        found["seconds"] = round(parse_duration_ms(match.group(2)) / 1000, 2)
    if match := re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output):
        found["latency_avg_ms"] = round(parse_duration_ms(match.group(1)), 2)
        found["latency_max_ms"] = round(parse_duration_ms(match.group(3)), 2)
    for percentile in ("50", "90", "99"):
        if match := re.search(rf"^\s+{percentile}%\s+(\S+)", output, re.MULTILINE):
            found[f"latency_p{percentile}_ms"] = round(parse_duration_ms(match.group(1)), 2)
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors = dict(zip(errors, map(int, match.groups()), strict=True))
    found["socket_errors"] = errors
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    found["non_2xx_3xx"] = int(match.group(1)) if match else 0
    for status, number in re.findall(r"^STATUS (\d+) (\d+)$", output, re.MULTILINE):
        found["statuses"][status] = int(number)
    return found


# A signup answers 303 to its answer's page (post/redirect/get), the API's signup 202; every
# other endpoint a 2xx.
EXPECTED_STATUS = {"signup": "303", "api_signup": "202"}
# The body of an API signup but for its address, as a CMS would send it.
API_SIGNUP_FIELDS = (
    '"name": "Bench Reader", "topics": ["technology", "analytics"], '
    '"frequency": "weekly", "consent": true'
)


def unexpected(key: str, statuses: dict[str, int]) -> int:
    """How many answers of endpoint ``key`` were not what it answers when all goes well."""
    expected = EXPECTED_STATUS.get(key, "2")
    return sum(n for status, n in statuses.items() if not status.startswith(expected))


# ---- the benchmark


class WebBench:
    def __init__(self, args: argparse.Namespace, wrk: str, gunicorn: str) -> None:
        self.args = args
        self.wrk = wrk
        self.gunicorn = gunicorn
        self.workdir = Path(tempfile.mkdtemp(prefix="newsletter-web-bench-"))
        self.database_url: str | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.broker_url = (
            f"{support.REDIS_HOST_URL}/{BROKER_DB}" if args.signup_mail == "broker" else None
        )
        self.stamp = support.timestamp()
        self.result: dict[str, Any] = {
            "benchmark": "web",
            "status": "incomplete",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": support.machine(),
            "code": support.code_version(),
            "database": args.database,
            "gunicorn_workers": args.gunicorn_workers,
            "wrk": {
                "threads": args.threads,
                "connections": args.connections,
                "duration_seconds": args.duration,
            },
            "signup_mail": args.signup_mail,
            "readers": args.readers,
            "endpoints": {},
        }

    @property
    def db_name(self) -> str | None:
        if self.database_url and self.args.database == "postgresql":
            return self.database_url.rsplit("/", 1)[-1]
        return None

    def settings(self, port: int) -> dict[str, Any]:
        assert self.database_url is not None
        return {
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "BROKER_URL": self.broker_url,
            "BASE_URL": f"http://127.0.0.1:{port}",
            "MAIL_FROM": "The Daily Ledger <newsletter@news.example>",
            # memory: kept in the web process (a 10 s run holds a few thousand messages).
            "MAIL_BACKEND": "memory",
            "SIGNUP_MIN_SECONDS": 0,
            "RATELIMIT_SIGNUP": "100000000 per minute",
            "API_RATE_LIMIT": "100000000 per minute",
            "RATELIMIT_STORAGE_URI": "memory://",
            **self.args.overrides,
        }

    def run(self) -> int:
        self.secret_key = secrets.token_urlsafe(32)
        return support.guarded(self)

    def cleanup(self) -> None:
        support.stop(self.server, grace=10)
        if self.broker_url:
            with contextlib.suppress(Exception):
                support.flush_redis(self.broker_url)
        if self.database_url and self.args.database == "postgresql":
            if self.args.keep:
                say(f"Kept the database: {self.database_url}")
            else:
                try:
                    support.drop_database(self.database_url)
                except Exception as exc:
                    say(f"Could not drop {self.database_url}: {exc}")
        if self.args.keep:
            say(f"Kept logs and scripts in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self) -> int:
        args = self.args
        say(
            f"Web benchmark: gunicorn {args.gunicorn_workers} sync workers, wrk -t{args.threads} "
            f"-c{args.connections} -d{args.duration}s, {args.database}, {os.cpu_count()} CPUs, "
            f"Python {self.result['machine']['python']}"
        )
        if self.broker_url:
            support.check_redis(self.broker_url)
            support.flush_redis(self.broker_url)
        if args.database == "postgresql":
            self.database_url = support.create_database("newsletter_webbench")
        else:
            self.database_url = f"sqlite:///{self.workdir / 'newsletter.db'}"
        port = support.free_port()
        settings = self.settings(port)
        self.result["settings"] = {
            k: v for k, v in settings.items() if k not in ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI")
        }
        support.migrate(settings)
        tokens = self._load_readers(settings)
        api_token = self._api_token(settings)
        say(f"  migrated; {len(tokens):,} active readers with unsubscribe tokens; an API token")
        load = support.background_load(1.0, self.db_name)
        self.result["background_cpu_per_second"] = load
        busy = sum(v for k, v in load.items() if k not in support.SERVICES)
        if busy > 0.1:
            say(
                f"  WARNING: other processes are using {busy:.2f} CPU while idle ({load}); "
                "the figures will be disturbed"
            )

        # The baseline first, on its own port, then the app: never both at once.
        trivial_port = support.free_port()
        self._serve(
            ["--pythonpath", str(support.BENCH_DIR), "trivial_app:app"], trivial_port, settings, "/"
        )
        self._measure("trivial", "GET / (trivial Flask view)", trivial_port, None)
        support.stop(self.server, grace=10)

        from floor_app import create_table

        create_table(self.database_url)
        floor_port = support.free_port()
        floor_app = ["--pythonpath", str(support.BENCH_DIR), "floor_app:create_app()"]
        self._serve(floor_app, floor_port, settings, "/")
        floor = "\n".join(
            [
                "body = 'List-Unsubscribe=One-Click'",
                "headers = {['Content-Type'] = 'application/x-www-form-urlencoded'}",
                LUA_FLOOR,
            ]
        )
        self._measure("floor", "POST / (floor: INSERT + COMMIT)", floor_port, floor)
        support.stop(self.server, grace=10)

        self._serve(["newsletter:create_app()"], port, settings, "/healthz")
        form, cookie = self._signup_form(port)
        self._measure("subscribe_form", "GET /subscribe", port, None, path="/subscribe")
        signup = "\n".join(
            [
                f"form = {lua_string(form)}",
                f"domain = {lua_string(SIGNUP_DOMAIN)}",
                "headers = {['Content-Type'] = 'application/x-www-form-urlencoded', "
                f"['Cookie'] = {lua_string(cookie)}}}",
                LUA_SIGNUP,
            ]
        )
        self._measure("signup", "POST /subscribe (signup)", port, signup)
        api_signup = "\n".join(
            [
                f"fields = {lua_string(API_SIGNUP_FIELDS)}",
                f"domain = {lua_string(SIGNUP_DOMAIN)}",
                "headers = {['Content-Type'] = 'application/json', "
                f"['Authorization'] = {lua_string('Bearer ' + api_token)}}}",
                LUA_API_SUBSCRIBE,
            ]
        )
        self._measure("api_signup", "POST /api/v1/subscriptions (API)", port, api_signup)
        unsubscribe = "\n".join(
            [
                "tokens = {" + ",\n".join(lua_string(t) for t in tokens) + "}",
                f"threads_total = {args.threads}",
                "body = 'List-Unsubscribe=One-Click'",
                "headers = {['Content-Type'] = 'application/x-www-form-urlencoded'}",
                LUA_UNSUBSCRIBE,
            ]
        )
        self._measure("unsubscribe", "POST /unsubscribe/<token> (one-click)", port, unsubscribe)
        support.stop(self.server, grace=10)
        self.server = None
        self._check_database(
            self.result["endpoints"]["signup"]["run"],
            self.result["endpoints"]["api_signup"]["run"],
            self.result["endpoints"]["floor"]["run"],
        )
        return self._report()

    def _load_readers(self, settings: dict[str, Any]) -> list[str]:
        """Active readers, and the one-click token each one's digest would carry."""
        from sqlalchemy import insert

        from newsletter import create_app
        from newsletter.db.models import Subscriber, SubscriberTopic
        from newsletter.extensions import db
        from newsletter.tokens import Purpose, sign

        now = datetime.now(UTC)
        uids = [secrets.token_urlsafe(16) for _ in range(self.args.readers)]
        app = create_app(settings)
        with app.app_context():
            db.session.execute(
                insert(Subscriber),
                [
                    {
                        "id": i + 1,
                        "uid": uid,
                        "email": f"reader{i + 1}@bench.example",
                        "name": f"Reader {i + 1}",
                        "status": "active",
                        "frequency": "daily",
                        "created_at": now - timedelta(days=30),
                        "confirmed_at": now - timedelta(days=30),
                    }
                    for i, uid in enumerate(uids)
                ],
            )
            db.session.execute(
                insert(SubscriberTopic),
                [{"subscriber_id": i + 1, "topic": "technology"} for i in range(len(uids))],
            )
            if db.engine.dialect.name == "postgresql":
                from sqlalchemy import text

                db.session.execute(
                    text("SELECT setval(pg_get_serial_sequence('subscriber', 'id'), :n)"),
                    {"n": len(uids)},
                )
            db.session.commit()
            tokens = [sign(Purpose.UNSUBSCRIBE, {"s": uid}) for uid in uids]
            db.session.remove()
            db.engine.dispose()
        return tokens

    def _api_token(self, settings: dict[str, Any]) -> str:
        """A token of scope subscribe, as ``newsletter api-tokens create`` makes it."""
        from newsletter import create_app
        from newsletter.extensions import db
        from newsletter.operators import api_tokens

        app = create_app(settings)
        with app.app_context():
            _, secret = api_tokens.create("Bench CMS", "subscribe")
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        return secret

    def _serve(self, target: list[str], port: int, settings: dict[str, Any], probe: str) -> None:
        command = [
            self.gunicorn,
            "--workers", str(self.args.gunicorn_workers),
            "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}",
            "--log-level", "warning",
            *target,
        ]  # fmt: skip
        log = self.workdir / f"gunicorn-{port}.log"
        self.server = support.start(command, env=support.settings_env(settings), log=log)
        self.server_log = log
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}{probe}"
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    break
            if self.server.poll() is not None:
                raise BenchError(
                    f"gunicorn exited with {self.server.returncode}:\n{support.tail(log)}"
                )
            if time.monotonic() > deadline:
                raise support.Timeout(
                    f"gunicorn did not answer {url} within 60s:\n{support.tail(log)}"
                )
            time.sleep(0.1)

    def _signup_form(self, port: int) -> tuple[str, str]:
        """The form's hidden fields and session cookie, from one real GET /subscribe."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe", timeout=10) as answer:
            page = answer.read().decode()
            jar = http.cookies.SimpleCookie()
            for header in answer.headers.get_all("Set-Cookie") or []:
                jar.load(header)
        fields = {}
        for tag in re.findall(r"<input\b[^>]*>", page):
            if 'type="hidden"' in tag and (name := re.search(r'name="([^"]*)"', tag)):
                value = re.search(r'value="([^"]*)"', tag)
                fields[name.group(1)] = value.group(1) if value else ""
        if "csrf_token" not in fields or "started" not in fields:
            raise BenchError(f"the signup form lacks csrf_token or started: {sorted(fields)}")
        cookie = "; ".join(f"{k}={morsel.value}" for k, morsel in jar.items())
        if not cookie:
            raise BenchError("GET /subscribe set no session cookie")
        from urllib.parse import urlencode

        form = urlencode(
            [
                ("csrf_token", fields["csrf_token"]),
                ("started", fields["started"]),
                ("website", ""),
                ("name", "Bench Reader"),
                ("consent", "y"),
                ("frequency", "weekly"),
                ("topics", "technology"),
                ("topics", "analytics"),
            ]
        )
        # Wait out SIGNUP_MIN_SECONDS if it was set: faster posts are taken for bots.
        time.sleep(float(self.settings(port)["SIGNUP_MIN_SECONDS"]))
        return form, cookie

    def _measure(
        self, key: str, label: str, port: int, script_body: str | None, path: str = "/"
    ) -> None:
        assert self.server is not None
        script = self.workdir / f"{key}.lua"
        script.write_text(LUA_COMMON + "\n" + (script_body or ""))
        url = f"http://127.0.0.1:{port}{path}"
        command = [
            self.wrk, f"-t{self.args.threads}", f"-c{self.args.connections}",
            f"-d{self.args.duration}s", "--latency", "--timeout", "10s", "-s", str(script), url,
        ]  # fmt: skip
        say(f"  {label}: warming up, then wrk for {self.args.duration}s")
        offset = 0
        run = secrets.token_hex(3)
        if self.args.warmup:
            warm = subprocess.run(
                [*command[:3], f"-d{self.args.warmup}s", *command[4:], "--", f"w{run}"],
                capture_output=True, text=True, timeout=self.args.warmup + 60, check=False,
            )  # fmt: skip
            offset = parse_wrk(warm.stdout).get("requests", 0)
        command += ["--", run, str(offset)]
        server_pids = set(support.process_tree(self.server.pid))
        profilers = []
        if self.args.profile == key:
            # One of gunicorn's workers (not the arbiter), for the whole measured run.
            worker = sorted(server_pids - {self.server.pid})[0]
            stem = self.args.output_dir / f"profile-web-{key}-{self.stamp}"
            profilers = support.start_profilers([worker], self.args.duration, stem, self.workdir)
        before = support.cpu_snapshot(self.db_name)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=self.args.duration + 60, check=False
        )
        groups = {"gunicorn": server_pids, "bench (this process)": {os.getpid()}}
        cpu = support.cpu_usage(before, support.cpu_snapshot(self.db_name), groups)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # wrk has exited by now, so /proc no longer shows it: its time is in our children's.
        cpu["wrk"] = round(
            after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 2
        )
        cpu = dict(sorted(cpu.items(), key=lambda item: -item[1]))
        if completed.returncode != 0:
            raise BenchError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
        for profiler in profilers:
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                support.stop(profiler, grace=5, sig=2)
        figures = parse_wrk(completed.stdout)
        if profilers and Path(f"{stem}.txt").exists():
            figures["profile"] = {
                "pid": worker,
                "svg": f"{stem}.svg",
                "raw": f"{stem}.txt",
                **support.summarize_profile(Path(f"{stem}.txt")),
            }
        if "requests_per_second" not in figures:
            raise BenchError(f"could not read wrk's output:\n{completed.stdout}")
        figures.update(
            {
                "label": label,
                "run": run,
                "unexpected": unexpected(key, figures["statuses"]),
                "cpu_seconds": cpu,
                "foreign_cpu_seconds": support.foreign_cpu(cpu, {**groups, "wrk": set()}),
            }
        )
        requests = figures.get("requests") or 0
        if requests:
            # Per answered request: wrk does not count those in flight when it stops.
            figures["gunicorn_cpu_ms_per_request"] = round(1000 * cpu["gunicorn"] / requests, 3)
            figures["postgres_cpu_ms_per_request"] = round(
                1000 * cpu.get("postgres (bench database)", 0.0) / requests, 3
            )
        self.result["endpoints"][key] = figures
        errors = sum(figures["socket_errors"].values())
        say(
            f"    {figures['requests_per_second']:,.0f} req/s, "
            f"gunicorn {figures.get('gunicorn_cpu_ms_per_request', float('nan')):.2f} ms CPU "
            "a request, p50 "
            f"{figures.get('latency_p50_ms', float('nan')):.1f} ms, p99 "
            f"{figures.get('latency_p99_ms', float('nan')):.1f} ms, statuses "
            f"{figures['statuses']}, socket errors {errors}"
        )

    def _check_database(self, run: str, api_run: str, floor_run: str) -> None:
        """Each 303 (or, through the API, 202) signup must have written a reader: otherwise the
        bench measured a shortcut."""
        from sqlalchemy import create_engine, text

        assert self.database_url is not None
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                signed_up = conn.execute(
                    text("SELECT count(*) FROM subscriber WHERE email LIKE :pattern"),
                    {"pattern": f"r{run}t%@{SIGNUP_DOMAIN}"},
                ).scalar_one()
                api_signed_up = conn.execute(
                    text("SELECT count(*) FROM subscriber WHERE email LIKE :pattern"),
                    {"pattern": f"a{api_run}t%@{SIGNUP_DOMAIN}"},
                ).scalar_one()
                unsubscribed = conn.execute(
                    text(
                        "SELECT count(*) FROM subscriber "
                        "WHERE status = 'unsubscribed' AND email LIKE '%@bench.example'"
                    )
                ).scalar_one()
                consent = conn.execute(
                    text("SELECT action, count(*) FROM consent_event GROUP BY action")
                ).all()
                floor_rows = conn.execute(
                    text("SELECT count(*) FROM bench_floor WHERE body LIKE :pattern"),
                    {"pattern": f"%&run={floor_run}"},
                ).scalar_one()
        finally:
            engine.dispose()
        ok_signups = self.result["endpoints"]["signup"]["statuses"].get("303", 0)
        ok_api_signups = self.result["endpoints"]["api_signup"]["statuses"].get("202", 0)
        self.result["database_check"] = {
            "signups_answered_303": ok_signups,
            "subscribers_written": int(signed_up),
            "api_signups_answered_202": ok_api_signups,
            "api_subscribers_written": int(api_signed_up),
            "readers_unsubscribed": int(unsubscribed),
            "unsubscribe_requests": self.result["endpoints"]["unsubscribe"].get("requests"),
            "consent_events": {action: int(n) for action, n in consent},
            "floor_answered_200": self.result["endpoints"]["floor"]["statuses"].get("200", 0),
            "floor_rows_written": int(floor_rows),
        }
        say(
            f"  database: {signed_up:,} signups written for {ok_signups:,} answers 303, "
            f"{api_signed_up:,} through the API for {ok_api_signups:,} answers 202; "
            f"{unsubscribed:,} readers unsubscribed; consent log {dict(consent)}"
        )

    def _report(self) -> int:
        endpoints = self.result["endpoints"]
        baseline = endpoints["trivial"]["requests_per_second"]
        say("")
        say(
            f"Web throughput: wrk -t{self.args.threads} -c{self.args.connections} "
            f"-d{self.args.duration}s, gunicorn {self.args.gunicorn_workers} sync workers, "
            f"{self.args.database}, {os.cpu_count()} CPUs, Python "
            f"{self.result['machine']['python']}"
        )
        say(
            f"  {'endpoint':<40} {'req/s':>9} {'vs trivial':>10} {'CPU ms':>7} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'unexpected':>10} {'errors':>7}"
        )
        clean = True
        for figures in endpoints.values():
            figures["ratio_to_trivial"] = round(figures["requests_per_second"] / baseline, 3)
            errors = sum(figures["socket_errors"].values())
            clean = clean and figures["unexpected"] == 0 and errors == 0
            say(
                f"  {figures['label']:<40} {figures['requests_per_second']:>9,.0f} "
                f"{100 * figures['ratio_to_trivial']:>9.1f}% "
                f"{figures.get('gunicorn_cpu_ms_per_request', float('nan')):>7.2f} "
                f"{figures.get('latency_p50_ms', float('nan')):>8.1f} "
                f"{figures.get('latency_p99_ms', float('nan')):>8.1f} "
                f"{figures['unexpected']:>10,} {errors:>7,}"
            )
        say("  targets (rates of this run):")
        targets = []
        for name, key, against, least in TARGETS:
            rate, baseline_rate = (endpoints[k]["requests_per_second"] for k in (key, against))
            ratio = rate / baseline_rate
            met = ratio >= least
            targets.append(
                {
                    "target": name,
                    "endpoint": key,
                    "against": against,
                    "ratio": round(ratio, 3),
                    "least": least,
                    "met": met,
                }
            )
            say(f"    {'PASS' if met else 'FAIL'}  {name}: {ratio:.2f}x")
        self.result["targets"] = targets
        self.result["targets_met"] = all(t["met"] for t in targets)
        for figures in endpoints.values():
            if "profile" in figures:
                profile = figures["profile"]
                say(
                    f"  profile of one gunicorn worker, {figures['label']} "
                    f"({profile['samples']:,} samples of wall-clock time, waits included):"
                )
                for row in profile["by_category"][:10]:
                    say(f"    {row['percent']:5.1f}%  {row['frame']}")
        for figures in endpoints.values():
            cpu = figures["cpu_seconds"]
            say(
                f"  CPU, {figures['label']}: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in list(cpu.items())[:5])
            )
        allowed = max(0.5, 0.05 * self.args.duration * (os.cpu_count() or 1))
        disturbed = {
            k: f["foreign_cpu_seconds"]
            for k, f in endpoints.items()
            if f["foreign_cpu_seconds"] > allowed
        }
        if disturbed:
            say(
                f"  WARNING: processes outside the benchmark used CPU during the runs "
                f"({disturbed} CPU-s); rerun on a quiet machine for clean figures"
            )
        check = self.result.get("database_check", {})
        # Requests in flight when wrk stops are still served, but not counted by wrk.
        for answered, written in (
            ("signups_answered_303", "subscribers_written"),
            ("api_signups_answered_202", "api_subscribers_written"),
            ("floor_answered_200", "floor_rows_written"),
        ):
            if check and not (
                check[answered] <= check[written] <= check[answered] + self.args.connections
            ):
                say(f"  WARNING: {answered} and {written} differ (taken for a bot?)")
                clean = False
        self.result["status"] = "ok" if clean else "errors"
        path = self._write()
        say(f"Result: {path}  [{self.result['status']}]")
        return 0 if clean else 1

    def _write(self) -> Path:
        self.result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        path = self.args.output or self.args.output_dir / f"web-{self.stamp}.json"
        return support.write_result(path, self.result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests/s of the reader-facing endpoints against a trivial view and a floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per endpoint")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument(
        "--readers",
        type=int,
        default=20_000,
        help="active readers whose one-click tokens are posted",
    )
    parser.add_argument(
        "--signup-mail",
        choices=("broker", "memory"),
        default="broker",
        help="broker: signups queue their mail in Redis db 12 as in production; "
        "memory: the web process renders and keeps it after the answer",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra NEWSLETTER_* setting",
    )
    parser.add_argument(
        "--profile",
        choices=("trivial", "floor", "subscribe_form", "signup", "api_signup", "unsubscribe"),
        help="record one gunicorn worker with py-spy during this endpoint's run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON result here")
    parser.add_argument("--output-dir", type=Path, default=support.RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.readers < 1 or args.duration < 1:
        parser.error("--readers and --duration must be at least 1")
    try:
        args.overrides = support.parse_overrides(args.overrides)
    except BenchError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    gunicorn = shutil.which("gunicorn", path=f"{support.VENV_BIN}:{os.environ.get('PATH', '')}")
    if wrk is None or gunicorn is None:
        say("wrk and gunicorn are needed: apt-get install wrk; pip install -e '.[dev]'")
        return 2
    bench = WebBench(args, wrk, gunicorn)
    try:
        return bench.run()
    except BenchError as exc:
        say(f"ERROR: {exc}")
        bench.result["status"] = "error"
        bench.result["error"] = str(exc)
        with contextlib.suppress(Exception):
            bench._write()
        return 2 if "not reachable" in str(exc) else 1


if __name__ == "__main__":
    sys.exit(main())
