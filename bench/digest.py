#!/usr/bin/env python
"""Digest throughput and memory: N readers, W real Celery workers, a real SMTP sink.

    .venv/bin/python bench/digest.py --subscribers 100000 --workers 2
    .venv/bin/python bench/digest.py --smoke               # 200 readers, a quick check

What it does, end to end, and undoes afterwards (also on Ctrl-C or an error):

1. creates a PostgreSQL database ``newsletter_bench_<hex>``, runs ``newsletter db upgrade``
   on it and loads N active daily readers (three topic sets over analytics, business,
   technology) with COPY, plus ten articles published in the last hours;
2. starts Postfix's ``smtp-sink`` on a free loopback port, counting accepted messages (and
   with ``--smtp-latency MS``, ``bench/smtp_delay.py`` in front of it, holding each reply);
3. flushes Redis database 13 and starts W ``celery worker`` processes (one process each,
   solo pool by default) configured only through NEWSLETTER_* variables;
4. times ``digest send`` (``planning.plan`` + ``sending.dispatch`` in this process with the
   same settings, or the real CLI with ``--via-cli``) until the sink has accepted N messages
   and the ledger has no unfinished row, while sampling each worker's RSS from /proc;
5. measures the ceiling: the same messages (real digests rendered by the app, one per topic
   set) sent with a bare smtplib loop over W connections (``--ceiling-connections``), one
   process each, to the same sink;
6. prints both rates, their ratio, the SMTP connections the app had open at once, peak RSS
   per worker and the planning time, and writes a JSON result to
   ``bench/results/digest-<N>-<W>-<timestamp>.json`` (``-<MS>ms`` added with a latency).

Exit status: 0 when the sink got exactly N messages and the ledger says N sent, 1 on a
failure, a timeout or a mismatch (partial figures are still printed and written), 2 when a
prerequisite (smtp-sink, PostgreSQL, Redis) is missing. A missing smtp-sink is installed
first on Debian when run as root (``.ci/system-packages postfix``), or the command printed.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support as support
from _support import BenchError, say

# Redis database of the broker, flushed before and after a run; another one with
# NEWSLETTER_BENCH_BROKER_DB (the web bench's signup mails use 12, the tests 12 and 15).
BROKER_DB = int(os.environ.get("NEWSLETTER_BENCH_BROKER_DB", "13"))
QUEUES = "newsletter,signup"
LOCAL_HOSTNAME = "bench.localhost"
MAIL_FROM = "The Daily Ledger <newsletter@news.example>"
UNFINISHED = ("queued", "sending", "attempting")

TOPIC_SETS: tuple[tuple[str, ...], ...] = (
    ("analytics",),
    ("business", "technology"),
    ("analytics", "business", "technology"),
)
NAMES = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia", "", "Edsger")

# (topic slug, section name, title, summary): ten articles across the three topics.
ARTICLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "technology",
        "Technology",
        "Chipmakers race to add memory as AI demand outstrips supply",
        "Three of the world's largest chip manufacturers said this week that they would raise "
        "spending on high-bandwidth memory lines by a third, after customers building data "
        "centres for machine-learning workloads booked most of next year's output in advance. "
        "Analysts warn that prices for ordinary laptops and phones could rise as capacity "
        "shifts, while smaller cloud providers say they are already waiting months for parts.",
    ),
    (
        "technology",
        "Technology",
        "City council votes to open its transit data to developers",
        "After two years of pilots, the council approved a plan to publish live bus and tram "
        "positions, timetables and disruption notices under an open licence. Local developers "
        "who built unofficial apps by scraping the operator's website welcomed the decision, "
        "and the transport authority says a single official feed will cut the number of "
        "conflicting departure times passengers see on the platforms and on their phones.",
    ),
    (
        "technology",
        "Technology",
        "A decade-old encryption bug is finally fixed in routers",
        "Security researchers disclosed a flaw in the way a widely used firmware library "
        "generated keys for encrypted management connections, affecting home routers sold "
        "since 2014. Manufacturers have shipped updates, but the researchers estimate that "
        "millions of devices never install them automatically, and they urge owners to check "
        "the settings page and replace hardware that no longer receives any updates at all.",
    ),
    (
        "technology",
        "Technology",
        "Satellite operator shows direct-to-phone texting in trials",
        "Engineers sent and received text messages between unmodified smartphones and a "
        "satellite in low orbit during a week of tests over rural areas with no mobile "
        "coverage. The company says the service will start with emergency messages next "
        "spring and expand to ordinary texts later, though regulators have yet to decide how "
        "the radio spectrum will be shared with the terrestrial networks already using it.",
    ),
    (
        "business",
        "Business",
        "Regional grocer agrees to buy rival in all-share deal",
        "The two chains, which together run more than four hundred stores, said the merger "
        "would let them negotiate better terms with suppliers and invest in home delivery. "
        "Competition authorities are expected to look closely at towns where both have large "
        "supermarkets, and unions asked for guarantees on jobs at the distribution centres "
        "that the companies have said they plan to combine over the next eighteen months.",
    ),
    (
        "business",
        "Business",
        "Small exporters feel the pinch as shipping rates climb again",
        "Container rates on the main routes between Asia and Europe have doubled since the "
        "summer, and freight forwarders say smaller firms without long-term contracts are "
        "paying the most. Several furniture and clothing importers told us they have moved "
        "orders earlier to avoid the holiday rush, while others are testing rail links that "
        "are slower than air but far cheaper, and more reliable than they were a year ago.",
    ),
    (
        "business",
        "Business",
        "Central bank holds rates but signals cuts may come next year",
        "Policymakers kept the benchmark rate unchanged for a fourth meeting, saying inflation "
        "had fallen faster than expected but that wage growth remained strong. The governor "
        "said the committee would need several more months of data before it could consider "
        "lowering borrowing costs. Mortgage lenders have already begun trimming fixed rates "
        "in anticipation, and the currency weakened slightly after the announcement today.",
    ),
    (
        "analytics",
        "Analytics",
        "What the latest census tells us about who works from home",
        "Newly released census tables show that the share of people working mainly from home "
        "has settled at about a fifth of the workforce, well below its peak but twice the "
        "level of a decade ago. The figures vary sharply by region and occupation: software "
        "and finance lead, while fewer than one in twenty care and retail workers ever work "
        "remotely. We mapped the numbers by district and compared them with commuting data.",
    ),
    (
        "analytics",
        "Analytics",
        "Hospital waiting lists, charted: where the backlog is shrinking",
        "We analysed monthly waiting-list figures for every hospital trust since 2019. The "
        "overall backlog has started to fall for the first time in four years, driven mostly "
        "by ophthalmology and orthopaedics, but waits for diagnostic tests are still longer "
        "than before the pandemic in two thirds of trusts. Our interactive charts let you look "
        "up your local hospital and compare it with the national targets set for this year.",
    ),
    (
        "analytics",
        "Analytics",
        "Polling averages explained: why single surveys mislead",
        "A single opinion poll can move by several points from week to week through sampling "
        "noise alone. We explain how our polling average weights each survey by its size, its "
        "recency and the pollster's track record, and why the average moved less than the "
        "headlines suggested last month. The methodology, the code and the raw polls are "
        "published alongside the tracker so that readers can check each of our calculations.",
    ),
)


# ---- setup


def load_data(
    url: str, subscribers: int, now: datetime, zones: tuple[str, ...] = ()
) -> dict[str, Any]:
    """N active daily readers and their topics with COPY, and the edition's articles;
    with ``zones``, the readers spread evenly over those time zones."""
    import psycopg

    started = time.perf_counter()
    topic_rows = 0
    with psycopg.connect(support.libpq_url(url)) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY subscriber (id, uid, email, name, status, frequency, created_at, confirmed_at,"
            " timezone) FROM STDIN"
        ) as copy:
            for i in range(1, subscribers + 1):
                name = NAMES[i % len(NAMES)]
                created = now - timedelta(days=30, seconds=i)
                copy.write_row(
                    (
                        i,
                        secrets.token_urlsafe(16),
                        f"reader{i}@bench.example",
                        f"{name} Reader{i}" if name else "",
                        "active",
                        "daily",
                        created,
                        created,
                        zones[i % len(zones)] if zones else None,
                    )
                )
        with cur.copy("COPY subscriber_topic (subscriber_id, topic) FROM STDIN") as copy:
            for i in range(1, subscribers + 1):
                for topic in TOPIC_SETS[i % len(TOPIC_SETS)]:
                    copy.write_row((i, topic))
                    topic_rows += 1
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('subscriber', 'id'), %s)", (max(subscribers, 1),)
        )
        with cur.copy(
            "COPY article (guid, url, title, summary, category, topic, source, published_at,"
            " added_at) FROM STDIN"
        ) as copy:
            for index, (topic, category, title, summary) in enumerate(ARTICLES):
                slug = "-".join(title.lower().split()[:6]).strip(",:")
                link = f"https://news.example/{topic}/{slug}"
                copy.write_row(
                    (
                        link,
                        link,
                        title,
                        f"<p>{summary}</p>",
                        category,
                        topic,
                        "The Daily Ledger",
                        now - timedelta(minutes=40 * (index + 1)),
                        now - timedelta(minutes=40 * (index + 1) - 5),
                    )
                )
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "subscribers": subscribers,
        "subscriber_topics": topic_rows,
        "articles": len(ARTICLES),
    }


def worker_command(index: int, tag: str, pool: str, concurrency: int) -> tuple[str, list[str]]:
    nodename = f"bench{index}-{tag}@localhost"
    return nodename, [
        sys.executable,
        "-m",
        "celery",
        # worker.py also holds the Flask app; name the Celery app explicitly.
        "--app=worker:celery",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={QUEUES}",
        f"--hostname={nodename}",
        "--loglevel=WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def wait_ready(
    broker_url: str, nodenames: list[str], processes: list[Any], logs: list[Path], within: float
) -> float:
    """Wait until every worker answers a ping; returns how long that took."""
    from celery import Celery

    control = Celery("bench-control", broker=broker_url, set_as_current=False)
    started = time.monotonic()
    waiting = set(nodenames)
    try:
        while waiting:
            for process, log in zip(processes, logs, strict=True):
                if process.poll() is not None:
                    raise BenchError(
                        f"a worker exited with {process.returncode}:\n{support.tail(log)}"
                    )
            if time.monotonic() - started > within:
                raise support.Timeout(
                    f"workers {sorted(waiting)} did not answer a ping within {within:.0f}s"
                )
            replies = control.control.ping(destination=sorted(waiting), timeout=1.0) or []
            for reply in replies:
                waiting -= set(reply)
    finally:
        control.close()
    return time.monotonic() - started


# ---- measuring


def ledger(conn: Any, edition_id: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state, count(*) FROM delivery WHERE edition_id = %s GROUP BY state", (edition_id,)
    ).fetchall()
    return {state: int(number) for state, number in rows}


def edition_row(conn: Any, edition_id: int | None = None) -> dict[str, Any] | None:
    if edition_id is None:
        row = conn.execute("SELECT max(id) FROM edition").fetchone()
        edition_id = row[0] if row else None
        if edition_id is None:
            return None
    row = conn.execute(
        "SELECT id, state, planning_seconds, created_at, finished_at FROM edition WHERE id = %s",
        (edition_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(
        zip(("id", "state", "planning_seconds", "created_at", "finished_at"), row, strict=True)
    )


def rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds else None


# ---- the benchmark


class DigestBench:
    def __init__(self, args: argparse.Namespace, sink_path: str) -> None:
        self.args = args
        self.sink_path = sink_path
        self.n: int = args.subscribers
        self.w: int = args.workers
        self.tag = secrets.token_hex(3)
        self.broker_url = f"{support.REDIS_HOST_URL}/{BROKER_DB}"
        self.workdir = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
        self.database_url: str | None = None
        self.sink: support.SmtpSink | None = None
        self.delay: support.SmtpDelay | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.profilers: list[subprocess.Popen[bytes]] = []
        self.app: Any = None
        self.result: dict[str, Any] = {
            "benchmark": "digest",
            "status": "incomplete",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": support.machine(),
            "code": support.code_version(),
            "subscribers": self.n,
            "workers": self.w,
            "pool": args.pool,
            "concurrency": args.concurrency,
            "smtp_latency_ms": args.smtp_latency,
            "via": "cli" if args.via_cli else "in-process",
            "settings": {},
        }

    # -- lifecycle

    @property
    def relay(self) -> support.SmtpSink | support.SmtpDelay:
        """Where senders connect: the sink, or the delaying relay in front of it."""
        if self.delay is not None:
            return self.delay
        assert self.sink is not None
        return self.sink

    def settings(self) -> dict[str, Any]:
        assert self.database_url is not None and self.sink is not None
        return {
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "BROKER_URL": self.broker_url,
            "BASE_URL": "https://news.example",
            "MAIL_FROM": MAIL_FROM,
            "MAIL_BACKEND": "smtp",
            **self.relay.environ(),
            "SMTP_LOCAL_HOSTNAME": LOCAL_HOSTNAME,
            "RATELIMIT_STORAGE_URI": "memory://",
            **self.args.overrides,
        }

    def run(self) -> int:
        self.secret_key = secrets.token_urlsafe(32)
        with support.exclusive("digest", within=4 * 3600):
            return support.guarded(self)

    def _run(self) -> int:
        n, w = self.n, self.w
        say(
            f"Digest benchmark: {n:,} readers, {w} worker(s) ({self.args.pool} pool), "
            f"{os.cpu_count()} CPUs, Python {self.result['machine']['python']}"
        )

        say("[1/5] database")
        support.check_redis(self.broker_url)
        self.database_url = support.create_database("newsletter_bench")
        say(f"  created {self.database_url.rsplit('/', 1)[-1]}")
        self.sink = support.SmtpSink(self.sink_path).start()
        if self.args.smtp_latency:
            self.delay = support.SmtpDelay(
                (self.sink.host, self.sink.port), self.args.smtp_latency
            ).start()
        settings = self.settings()
        self.result["settings"] = {
            k: v for k, v in settings.items() if k not in ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI")
        }
        support.migrate(settings)
        now = datetime.now(UTC)
        loaded = load_data(self.database_url, n, now)
        self.result["load"] = loaded
        say(
            f"  migrated; loaded {n:,} readers, {loaded['subscriber_topics']:,} topic rows and "
            f"{len(ARTICLES)} articles in {loaded['seconds']:.1f}s"
        )

        say(
            f"[2/5] workers (smtp-sink listening on 127.0.0.1:{self.sink.port}"
            + (
                f", behind bench/smtp_delay.py on port {self.delay.port} holding each reply "
                f"{self.args.smtp_latency:g} ms)"
                if self.delay
                else ")"
            )
        )
        support.flush_redis(self.broker_url)
        env = support.settings_env(settings)
        nodenames, logs = [], []
        for index in range(w):
            nodename, command = worker_command(
                index, self.tag, self.args.pool, self.args.concurrency
            )
            log = self.workdir / f"worker{index}.log"
            self.workers.append(support.start(command, env=env, log=log))
            nodenames.append(nodename)
            logs.append(log)
        self.logs = logs
        took = wait_ready(self.broker_url, nodenames, self.workers, logs, within=120)
        say(
            f"  {w} worker(s) answered a ping after {took:.1f}s: "
            + ", ".join(
                f"{name} (pid {p.pid})" for name, p in zip(nodenames, self.workers, strict=True)
            )
        )

        load = support.background_load(1.0, self.db_name)
        self.result["background_cpu_per_second"] = load
        busy = sum(v for k, v in load.items() if k not in support.SERVICES)
        if busy > 0.1:
            say(
                f"  WARNING: other processes are using {busy:.2f} CPU while idle ({load}); "
                "the figures will be disturbed"
            )
        say("[3/5] digest send")
        status = self._send(settings, env)
        if status != 0:
            return status

        counts = ", ".join(str(c) for c in self.ceiling_connections())
        say(
            f"[4/5] ceiling: bare loops sending the same messages over {counts} connection(s), "
            f"one process each: {', '.join(self.args.ceiling)}"
        )
        self._ceiling()

        say("[5/5] results")
        return self._report()

    def cleanup(self) -> None:
        for profiler in self.profilers:
            support.stop(profiler, grace=5, sig=2)
        for process in self.workers:
            with contextlib.suppress(ProcessLookupError):
                if process.poll() is None:
                    process.terminate()
        for process in self.workers:
            support.stop(process, grace=20)
        if self.delay is not None:
            self.delay.stop()
        if self.sink is not None:
            self.sink.stop()
        with contextlib.suppress(Exception):
            support.flush_redis(self.broker_url)
        if self.app is not None:
            from newsletter.extensions import db

            with contextlib.suppress(Exception), self.app.app_context():
                db.session.remove()
                db.engine.dispose()
        if self.database_url is not None:
            if self.args.keep:
                say(f"Kept the database: {self.database_url}")
            else:
                try:
                    support.drop_database(self.database_url)
                except Exception as exc:
                    say(f"Could not drop {self.database_url}: {exc}")
        if self.args.keep:
            say(f"Kept worker logs in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- phases

    def _app(self, settings: dict[str, Any]) -> Any:
        if self.app is None:
            from newsletter import create_app

            self.app = create_app(settings)
        return self.app

    def _send(self, settings: dict[str, Any], env: dict[str, str]) -> int:
        import psycopg

        assert self.sink is not None and self.database_url is not None
        n = self.n
        timeout = self.args.timeout
        sink_before = self.sink.count()
        sessions_before = self.sink.sessions
        conn = psycopg.connect(support.libpq_url(self.database_url), autocommit=True)
        send: dict[str, Any] = {"timeout_seconds": timeout}
        self.result["send"] = send
        sampler = support.MemorySampler([p.pid for p in self.workers])
        connections = support.ConnectionSampler(self.relay.port)
        if not self.args.via_cli:
            self._app(settings)  # built before the clock starts, as a running service has it
        cpu_before = support.cpu_snapshot(self.db_name)
        with conn, sampler, connections:
            started = time.perf_counter()
            if self.args.via_cli:
                completed = subprocess.run(
                    [
                        str(support.VENV_BIN / "newsletter"),
                        "digest",
                        "send",
                        "--frequency",
                        "daily",
                        "--no-wait",
                    ],
                    cwd=support.PROJECT_ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
                if completed.returncode != 0:
                    raise BenchError(f"digest send failed:\n{completed.stdout}{completed.stderr}")
                say("  " + completed.stdout.strip().replace("\n", "\n  "))
                dispatched = time.perf_counter()
                edition = edition_row(conn)
                if edition is None:
                    raise BenchError("digest send created no edition")
                edition_id = int(edition["id"])
                send["batches"] = None
            else:
                from newsletter.digests import planning, sending

                app = self._app(settings)
                with app.app_context():
                    planned_edition = planning.plan("daily")
                    planned = time.perf_counter()
                    if planned_edition is None:
                        raise BenchError("no new articles: planning created no edition")
                    edition_id = planned_edition.id
                    send["batches"] = sending.dispatch(edition_id)
                dispatched = time.perf_counter()
                send["plan_call_seconds"] = round(planned - started, 3)
            send["edition_id"] = edition_id
            send["dispatch_done_seconds"] = round(dispatched - started, 3)
            planned_rows = sum(ledger(conn, edition_id).values())
            edition = edition_row(conn, edition_id) or {}
            send["planned_rows"] = planned_rows
            self.result["planning_seconds"] = edition.get("planning_seconds")
            say(
                f"  edition {edition_id}: {planned_rows:,} ledger rows planned in "
                f"{edition.get('planning_seconds') or 0:.2f}s (Edition.planning_seconds); "
                f"queued after {dispatched - started:.2f}s"
                + (f", {send['batches']} batches" if send.get("batches") else "")
            )
            if planned_rows != n:
                say(f"  WARNING: expected {n:,} rows, planned {planned_rows:,}")

            if self.args.profile:
                stem = self.args.output_dir / f"profile-worker-{self.run_stamp}"
                pids = [p.pid for p in self.workers]
                self.profilers = support.start_profilers(
                    pids, self.args.profile, stem, self.workdir
                )
                if self.profilers:
                    send["profile"] = {
                        "svg": f"{stem}.svg",
                        "svg_pid": pids[0],
                        "raw": f"{stem}.txt",
                        "raw_pid": pids[-1],
                        "seconds": self.args.profile,
                    }
                    say(
                        f"  py-spy for {self.args.profile}s: worker 0 -> {stem}.svg, "
                        f"worker {len(pids) - 1} -> {stem}.txt (collapsed stacks)"
                    )

            target = sink_before + n
            deadline = started + timeout
            last_print, last_count, last_time = time.perf_counter(), sink_before, started
            while True:
                count = self.sink.wait_for(target, within=0.25)
                now = time.perf_counter()
                if count >= target:
                    break
                if now > deadline:
                    return self._timed_out(conn, edition_id, started, sink_before, "the sink")
                for process, log in zip(self.workers, self.logs, strict=True):
                    if process.poll() is not None:
                        send["sink_received"] = self.sink.count() - sink_before
                        raise BenchError(
                            f"worker pid {process.pid} exited with {process.returncode}:\n"
                            f"{support.tail(log)}"
                        )
                if now - last_print >= self.args.progress:
                    recent = (count - last_count) / (now - last_time)
                    say(
                        f"  {now - started:7.1f}s  sink {count - sink_before:>10,} / {n:,}   "
                        f"{(count - sink_before) / (now - started):8,.0f} msg/s overall, "
                        f"{recent:8,.0f} msg/s recently"
                    )
                    last_print, last_count, last_time = now, count, now
            sink_done = time.perf_counter()

            # The last chunk's outcome is committed just after its messages are accepted.
            while True:
                counts = ledger(conn, edition_id)
                edition = edition_row(conn, edition_id) or {}
                if not any(counts.get(s) for s in UNFINISHED) and edition.get("state") == "done":
                    break
                if time.perf_counter() > max(deadline, sink_done + 30):
                    return self._timed_out(conn, edition_id, started, sink_before, "the ledger")
                time.sleep(0.05)
            ledger_done = time.perf_counter()
            cpu = support.cpu_usage(
                cpu_before, support.cpu_snapshot(self.db_name), self._cpu_groups()
            )
        time.sleep(self.args.settle)  # a duplicate would arrive after the N-th message
        received = self.sink.count() - sink_before
        send.update(
            {
                "sink_received": received,
                "ledger": counts,
                "edition_state": edition.get("state"),
                "sink_seconds": round(sink_done - started, 3),
                "ledger_seconds": round(ledger_done - started, 3),
                "sink_rate": rate(n, sink_done - started),
                "rate": rate(n, ledger_done - started),
                # Without planning: what the workers themselves sustain.
                "after_queue_rate": rate(n, ledger_done - dispatched),
            }
        )
        self.result["worker_memory"] = [t.figures() for t in sampler.trees]
        # Sessions: connections the sink saw opened (each batch opens its own); peak: the
        # most open at once, sampled every 0.2 s.
        self.result["smtp_connections"] = {
            "peak_open": connections.peak,
            "sessions": self.sink.sessions - sessions_before,
        }
        send["cpu_seconds"] = cpu
        send["foreign_cpu_seconds"] = support.foreign_cpu(cpu, self._cpu_groups())
        send["cpu_available_seconds"] = round((ledger_done - started) * (os.cpu_count() or 1), 1)
        send["worker_cpu_us_per_message"] = round(1e6 * cpu.get("celery workers", 0.0) / n)
        say(
            f"  done: sink {received:,} messages after {sink_done - started:.2f}s, "
            f"ledger {counts} after {ledger_done - started:.2f}s; SMTP connections: "
            f"{connections.peak} open at most, {self.result['smtp_connections']['sessions']} "
            "opened"
        )
        return 0

    @property
    def db_name(self) -> str | None:
        return self.database_url.rsplit("/", 1)[-1] if self.database_url else None

    def _cpu_groups(self, **extra: set[int]) -> dict[str, set[int]]:
        workers = {pid for p in self.workers for pid in support.process_tree(p.pid)}
        groups = {"celery workers": workers, "bench (this process)": {os.getpid()}, **extra}
        if self.sink is not None and self.sink.process is not None:
            groups["smtp-sink"] = {self.sink.process.pid}
        if self.delay is not None and self.delay.process is not None:
            groups["smtp delay relay"] = {self.delay.process.pid}
        return groups

    def _timed_out(
        self, conn: Any, edition_id: int, started: float, sink_before: int, what: str
    ) -> int:
        assert self.sink is not None
        elapsed = time.perf_counter() - started
        received = self.sink.count() - sink_before
        counts = ledger(conn, edition_id)
        self.result["status"] = "timeout"
        self.result["send"].update(
            {
                "sink_received": received,
                "ledger": counts,
                "elapsed_seconds": round(elapsed, 1),
                "partial_rate": rate(received, elapsed),
            }
        )
        say(
            f"TIMEOUT after {elapsed:.0f}s waiting for {what} (--timeout {self.args.timeout:.0f}):"
            f" sink has {received:,} of {self.n:,} messages "
            f"({received / elapsed:,.0f} msg/s so far); ledger {counts}"
        )
        for index, log in enumerate(self.logs):
            say(f"--- worker {index} log (tail)\n{support.tail(log, 15)}")
        self._write()
        return 1

    def _messages(self) -> list[tuple[str, str, bytes]]:
        """Real digests, one per topic set, exactly as the workers composed them."""
        from sqlalchemy import select

        from newsletter.db.models import Delivery
        from newsletter.digests import ledger as ledger_rows
        from newsletter.digests.compose import Composer
        from newsletter.digests.content import load_content
        from newsletter.extensions import db

        app = self._app(self.settings())
        edition_id = self.result["send"]["edition_id"]
        with app.app_context():
            ids = list(
                db.session.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.edition_id == edition_id,
                        Delivery.subscriber_id.in_(range(1, len(TOPIC_SETS) + 1)),
                    )
                    .order_by(Delivery.subscriber_id)
                )
            )
            composer = Composer(load_content(edition_id))
            readers = ledger_rows.readers(ids)
            built = []
            for delivery_id in ids:
                reader = readers[delivery_id].reader
                assert reader is not None
                message = composer.message(reader)
                built.append((message.sender, message.recipient, message.data))
            db.session.remove()
        return built

    def _ceiling(self) -> None:
        """The bare loops, each mode in turn; the faster one is the ceiling."""
        messages = self._messages()
        sizes = [len(m[2]) for m in messages]
        # Readers cycle through the topic sets, so the average message is the same mix.
        self.result["message_bytes"] = {
            "per_topic_set": sizes,
            "mean": round(sum(sizes) / len(sizes)),
        }
        ceilings: dict[str, dict[str, Any]] = {}
        self.result["ceilings"] = ceilings
        counts = self.ceiling_connections()
        for index, count in enumerate(counts):
            for mode in self.args.ceiling:
                # Keyed by mode alone at the first count (the headline), as results always were.
                key = mode if index == 0 else f"{mode}, {count} connections"
                ceilings[key] = self._ceiling_run(mode, messages, count)
        finished = [
            c
            for c in ceilings.values()
            if c.get("sink_received") == self.n and c["connections"] == counts[0]
        ]
        if finished:
            self.result["ceiling"] = max(finished, key=lambda c: c["rate"] or 0)

    def ceiling_connections(self) -> list[int]:
        """The connection counts of the bare loops: W, or what the app had open at most."""
        app = self.result.get("smtp_connections", {}).get("peak_open") or self.w
        found: list[int] = []
        for item in self.args.ceiling_connections:
            count = app if item == "app" else int(item)
            if count not in found:
                found.append(count)
        return found

    def _ceiling_run(
        self, mode: str, messages: list[tuple[str, str, bytes]], w: int
    ) -> dict[str, Any]:
        assert self.sink is not None
        n = self.n
        context = multiprocessing.get_context("spawn")
        ready: Any = context.Queue()
        results: Any = context.Queue()
        go = context.Event()
        shares = [n // w + (1 if i < n % w else 0) for i in range(w)]
        processes = []
        for index, share in enumerate(shares):
            # Start each process on a different message, like the workers' interleaved batches.
            rotated = messages[index % len(messages) :] + messages[: index % len(messages)]
            process = context.Process(
                target=support.ceiling_sender,
                args=(mode, self.relay.host, self.relay.port, LOCAL_HOSTNAME, rotated, share),
                kwargs={"ready": ready, "go": go, "results": results},
                daemon=True,
            )
            process.start()
            processes.append(process)
        ceiling: dict[str, Any] = {"mode": mode, "connections": w, "processes": w}
        try:
            for _ in processes:
                ready.get(timeout=60)
            senders = {p.pid for p in processes if p.pid is not None}
            groups = self._cpu_groups(**{"smtplib senders": senders})
            cpu_before = support.cpu_snapshot(self.db_name)
            base = self.sink.count()
            started = time.perf_counter()
            go.set()
            count = self.sink.wait_for(base + n, within=self.args.timeout)
            done = time.perf_counter()
            cpu = support.cpu_usage(cpu_before, support.cpu_snapshot(self.db_name), groups)
            outcomes = []
            for _ in processes:
                with contextlib.suppress(queue.Empty):
                    outcomes.append(results.get(timeout=30))
            errors = [o[2] for o in outcomes if o[0] != "ok"]
            ceiling.update(
                {
                    "sink_received": count - base,
                    "seconds": round(done - started, 3),
                    "cpu_available_seconds": round((done - started) * (os.cpu_count() or 1), 1),
                    "rate": rate(count - base, done - started),
                    "errors": errors,
                    "cpu_seconds": cpu,
                    "sender_cpu_us_per_message": round(1e6 * cpu.get("smtplib senders", 0.0) / n),
                    "foreign_cpu_seconds": support.foreign_cpu(cpu, groups),
                }
            )
            if count - base < n:
                say(f"  TIMEOUT or error: the sink got {count - base:,} of {n:,} ceiling messages")
            if errors:
                say(f"  ceiling sender errors: {errors}")
            say(f"  {mode}, {w} connection(s): {count - base:,} messages in {done - started:.2f}s")
        finally:
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
                    process.join()
        return ceiling

    def _report(self) -> int:
        send = self.result["send"]
        ceiling = self.result.get("ceiling", {})
        app_rate, top_rate = send.get("rate"), ceiling.get("rate")
        ratio = round(app_rate / top_rate, 3) if app_rate and top_rate else None
        self.result["ratio"] = ratio
        self.result["ratios"] = {
            mode: round(app_rate / c["rate"], 3) if app_rate and c.get("rate") else None
            for mode, c in self.result.get("ceilings", {}).items()
        }
        ok = (
            send.get("sink_received") == self.n
            and send.get("ledger", {}).get("sent") == self.n
            and send.get("edition_state") == "done"
        )
        self.result["status"] = "ok" if ok else "mismatch"
        if self.profilers:
            for profiler in self.profilers:
                try:
                    profiler.wait(timeout=self.args.profile + 30)
                except subprocess.TimeoutExpired:
                    support.stop(profiler, grace=5, sig=2)
            raw = Path(send["profile"]["raw"])
            if raw.exists():
                self.result["profile"] = support.summarize_profile(raw)
        planning = self.result.get("planning_seconds") or 0.0

        say("")
        say(
            f"Digest throughput: {self.n:,} readers, {self.w} worker(s), "
            f"{os.cpu_count()} CPUs, Python {self.result['machine']['python']}"
        )
        say(f"  planning (Edition.planning_seconds)  {planning:9.2f} s")
        say(
            f"  app: send -> sink has all N         {send['sink_seconds']:9.2f} s "
            f"{send['sink_rate']:>10,.0f} msg/s"
        )
        say(
            f"  app: send -> ledger all sent        {send['ledger_seconds']:9.2f} s "
            f"{app_rate:>10,.0f} msg/s   (after queueing: {send['after_queue_rate']:,.0f} msg/s)"
        )
        for mode, bare in self.result.get("ceilings", {}).items():
            if bare.get("rate"):
                label = f"ceiling: {bare['mode']}, {bare['connections']} connection(s)"
                say(
                    f"  {label:<35} {bare['seconds']:9.2f} s "
                    f"{bare['rate']:>10,.0f} msg/s   app at "
                    f"{100 * (self.result['ratios'][mode] or 0):.1f}%"
                )
        if top_rate:
            label = f"app / best ceiling ({ceiling['mode']}, {ceiling['connections']})"
            say(f"  {label:<35} {100 * (ratio or 0):9.1f} %")
        say(
            f"  sink received {send['sink_received']:,} (expected {self.n:,}); "
            f"ledger {send['ledger']}; mean message {self.result['message_bytes']['mean']:,} bytes"
        )
        say(
            f"  CPU during the send ({send['cpu_available_seconds']:.0f} CPU-s available): "
            + ", ".join(f"{k} {v:.1f}s" for k, v in list(send["cpu_seconds"].items())[:6])
        )
        if top_rate:
            say(
                f"  CPU during the ceiling ({ceiling['mode']}): "
                + ", ".join(f"{k} {v:.1f}s" for k, v in list(ceiling["cpu_seconds"].items())[:4])
            )
            say(
                f"  CPU per message: workers {send['worker_cpu_us_per_message']} µs, bare loop "
                + ", ".join(
                    f"{mode} {c['sender_cpu_us_per_message']} µs"
                    for mode, c in self.result["ceilings"].items()
                    if "sender_cpu_us_per_message" in c
                )
            )
        disturbed = [
            f"{phase} {figures['foreign_cpu_seconds']:.1f} CPU-s"
            for phase, figures in (("send", send), *self.result.get("ceilings", {}).items())
            if figures.get("foreign_cpu_seconds", 0)
            > max(0.5, 0.05 * figures.get("cpu_available_seconds", 0))
        ]
        if disturbed:
            say(
                "  WARNING: processes outside the benchmark used CPU during the run ("
                + ", ".join(disturbed)
                + "); rerun on a quiet machine for clean figures"
            )
        for index, memory in enumerate(self.result.get("worker_memory", [])):
            say(
                f"  worker {index} RSS: peak {memory['peak_rss_mib']} MiB (start "
                f"{memory['start_rss_mib']}, end {memory['end_rss_mib']}, VmHWM "
                f"{memory['peak_hwm_mib']}; {memory['processes']} process(es))"
            )
        used = self.result.get("smtp_connections")
        if used:
            say(
                f"  SMTP connections of the app: {used['peak_open']} open at most, "
                f"{used['sessions']} opened in all"
                + (f"; each reply held {self.args.smtp_latency:g} ms" if self.delay else "")
            )
        profile = self.result.get("profile")
        if profile:
            say(
                f"  profile of worker {self.w - 1} ({profile['samples']:,} samples of wall-clock "
                "time, waits included):"
            )
            for row in profile["by_category"][:10]:
                say(f"    {row['percent']:5.1f}%  {row['frame']}")
        path = self._write()
        say(f"Result: {path}  [{self.result['status']}]")
        return 0 if ok else 1

    @property
    def variant(self) -> str:
        """What sets a run's name apart from the default one (2 workers, one batch each)."""
        parts = []
        if self.args.concurrency != 1:
            parts.append(f"x{self.args.concurrency}")
        if self.args.smtp_latency:
            parts.append(f"{self.args.smtp_latency:g}ms")
        return "".join(f"-{part}" for part in parts)

    @property
    def run_stamp(self) -> str:
        if not hasattr(self, "_stamp"):
            self._stamp = support.timestamp()
        return self._stamp

    def _write(self) -> Path:
        self.result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        path = self.args.output or (
            self.args.output_dir / f"digest-{self.n}-{self.w}{self.variant}-{self.run_stamp}.json"
        )
        return support.write_result(path, self.result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Digest throughput and worker memory against a real SMTP sink.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--subscribers",
        "-n",
        type=int,
        default=None,
        help="active daily readers (default 100000; 200 with --smoke)",
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=int,
        default=None,
        help="celery worker processes (default 2; 1 with --smoke)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick correctness run: 200 readers, tolerant timeouts",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and the worker logs afterwards"
    )
    parser.add_argument(
        "--pool",
        choices=("solo", "prefork", "threads"),
        default="solo",
        help="worker pool; prefork runs --concurrency children per worker, threads as many threads",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="batches each worker runs at once (prefork or threads pool)",
    )
    parser.add_argument(
        "--smtp-latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="hold each SMTP reply this long (bench/smtp_delay.py between senders and sink)",
    )
    parser.add_argument(
        "--ceiling-connections",
        default=None,
        metavar="N[,N|app...]",
        help="connection counts of the bare loops, the first one the headline ceiling "
        "(default: W; with --smtp-latency, the most the app had open: app)",
    )
    parser.add_argument(
        "--via-cli",
        action="store_true",
        help="start the send with `newsletter digest send --no-wait` instead "
        "of planning.plan + sending.dispatch in this process",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds allowed for each timed phase (default max(120, N/250))",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="record worker 0 with py-spy for this long during the send",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra NEWSLETTER_* setting (e.g. BATCH_SIZE=1000)",
    )
    parser.add_argument(
        "--ceiling",
        choices=(*support.CEILING_MODES, "both"),
        default="both",
        help="bare loop(s) to measure: smtplib's sendmail (4 round trips a message), "
        "pipelined (2, as the app's backend does when the server offers PIPELINING), or both",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the JSON result here")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=support.RESULTS_DIR,
        help="folder for results and profiles",
    )
    parser.add_argument(
        "--progress", type=float, default=5.0, help="seconds between progress lines"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds to wait after the N-th message to catch duplicates",
    )
    args = parser.parse_args(argv)
    if args.subscribers is None:
        args.subscribers = 200 if args.smoke else 100_000
    if args.workers is None:
        args.workers = 1 if args.smoke else 2
    if args.subscribers < 1 or args.workers < 1:
        parser.error("--subscribers and --workers must be at least 1")
    args.ceiling = support.CEILING_MODES if args.ceiling == "both" else (args.ceiling,)
    if args.concurrency < 1 or (args.concurrency > 1 and args.pool == "solo"):
        parser.error("--concurrency above 1 needs --pool prefork or threads")
    if args.smtp_latency < 0:
        parser.error("--smtp-latency must not be negative")
    default = "app" if args.smtp_latency else str(args.workers)
    args.ceiling_connections = (args.ceiling_connections or default).split(",")
    if not all(c == "app" or (c.isdigit() and int(c) > 0) for c in args.ceiling_connections):
        parser.error("--ceiling-connections wants positive numbers or app, comma-separated")
    if args.timeout is None:
        args.timeout = 180.0 if args.smoke else max(120.0, args.subscribers / 250)
    try:
        args.overrides = support.parse_overrides(args.overrides)
    except BenchError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sink = support.ensure_smtp_sink()
    if sink is None:
        return 2
    bench = DigestBench(args, sink)
    try:
        return bench.run()
    except BenchError as exc:
        say(f"ERROR: {exc}")
        bench.result["status"] = "error"
        bench.result["error"] = str(exc)
        with contextlib.suppress(Exception):
            bench._write()
        unreachable = "not reachable" in str(exc)
        return 2 if unreachable else 1


if __name__ == "__main__":
    sys.exit(main())
