"""Shared pieces of the benchmarks: services, child processes, memory, smtp-sink, results.

Only the standard library and what the project already depends on (psycopg, redis,
SQLAlchemy) are used here, so ``bench/digest.py`` and ``bench/web.py`` need no extra install.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent

POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST_URL = os.environ.get("NEWSLETTER_BENCH_REDIS_URL", "redis://127.0.0.1:6379")


class BenchError(RuntimeError):
    """A clear, expected failure: printed without a traceback."""


class Timeout(BenchError):
    """A bounded wait ran out."""


# ---- output


def say(message: str = "") -> None:
    print(message, flush=True)


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the files that differed from it (figures depend on both)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.rstrip()  # not strip(): porcelain lines begin with a status column
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [
        line[3:]
        for line in git(
            "status", "--porcelain", "--", "newsletter", "templates", "worker.py"
        ).splitlines()
    ]
    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted_changes": changed}


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


def write_result(path: Path, result: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


# ---- settings and environment


def settings_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """A child's environment: ours without any NEWSLETTER_*, plus ``settings`` as NEWSLETTER_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings.items():
        if value is None:
            continue
        env[f"NEWSLETTER_{key}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs from ``--set``; values that parse as JSON are taken as JSON."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().removeprefix("NEWSLETTER_")
        if not sep or not key:
            raise BenchError(f"--set wants KEY=VALUE, got {pair!r}")
        try:
            found[key] = json.loads(raw)
        except ValueError:
            found[key] = raw
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(host: str, port: int, within: float, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if process.poll() is not None:
            raise BenchError(f"{process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise Timeout(f"nothing listened on {host}:{port} within {within:.0f}s")
        time.sleep(0.05)


# ---- services


def check_redis(url: str) -> None:
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5) as client:
            client.ping()
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {url} is not reachable: {exc}") from exc


def flush_redis(url: str) -> None:
    import redis

    with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10) as client:
        client.flushdb()


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` as a URL psycopg itself accepts."""
    from sqlalchemy import make_url

    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def create_database(prefix: str) -> str:
    """A new, empty PostgreSQL database; returns its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy import make_url

    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(
            libpq_url(POSTGRES_ADMIN_URL), autocommit=True, connect_timeout=5
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(
            f"PostgreSQL at {admin.render_as_string()} is not reachable "
            f"(set NEWSLETTER_BENCH_POSTGRES_URL): {exc}"
        ) from exc
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    import psycopg
    from sqlalchemy import make_url

    name = make_url(url).database
    with psycopg.connect(libpq_url(POSTGRES_ADMIN_URL), autocommit=True, connect_timeout=5) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(settings: Mapping[str, Any]) -> None:
    """``newsletter db upgrade`` against the database of ``settings``, in a child process."""
    completed = subprocess.run(
        [str(VENV_BIN / "newsletter"), "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"newsletter db upgrade failed:\n{completed.stdout}{completed.stderr}")


@contextlib.contextmanager
def exclusive(name: str, within: float) -> Iterator[None]:
    """One run of benchmark ``name`` on this machine at a time: a second one waits.

    Two digest runs would share the Redis broker database (each flushes it) and the cores.
    """
    import fcntl
    import tempfile

    path = Path(tempfile.gettempdir()) / f"newsletter-bench-{name}.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"Another {name} benchmark is running on this machine ({path}); waiting for it")
            deadline = time.monotonic() + within
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Timeout(f"the other {name} run took over {within:.0f}s") from None
                    time.sleep(1)
        yield


# ---- processes


def start(
    command: list[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path = PROJECT_ROOT,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    """A child in its own session: Ctrl-C reaches only us, and we stop it in order."""
    out: Any = stdout
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("wb")
    try:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()


def stop(
    process: subprocess.Popen[Any] | None, *, grace: float = 15.0, sig: int = signal.SIGTERM
) -> None:
    """Ask ``process`` to stop, then kill it (and only it) if it does not within ``grace``."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Guarded(Protocol):
    result: dict[str, Any]

    def _run(self) -> int: ...
    def _write(self) -> Path: ...
    def cleanup(self) -> None: ...


def guarded(bench: Guarded) -> int:
    """Run a benchmark; on Ctrl-C or SIGTERM record it as interrupted; always clean up."""
    try:
        with sigterm_as_exit():
            return bench._run()
    except KeyboardInterrupt:
        say("\nInterrupted; cleaning up.")
        bench.result["status"] = "interrupted"
        bench._write()
        return 130
    finally:
        with uninterruptible():
            bench.cleanup()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` cleanup runs."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Cleanup is not cut short by a second Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- memory, from /proc (no psutil)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(x) for x in f.read().split()]
        return found
    except OSError:
        pass
    for entry in os.listdir("/proc"):  # kernels without /proc/<pid>/task/<tid>/children
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the kernel's peak RSS) of one process, in KiB; {} once it is gone."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    found[key] = int(value.split()[0])
    except OSError:
        return {}
    return found


@dataclass
class TreeMemory:
    """RSS of one process and its descendants, sampled: the peak of the sum, and VmHWM."""

    pid: int
    first_kib: int = 0
    last_kib: int = 0
    peak_kib: int = 0
    hwm_kib: dict[int, int] = field(default_factory=dict)
    processes: int = 1

    def sample(self) -> None:
        tree = process_tree(self.pid)
        total = 0
        for pid in tree:
            info = memory_kib(pid)
            total += info.get("VmRSS", 0)
            if "VmHWM" in info:
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), info["VmHWM"])
        if total:
            self.first_kib = self.first_kib or total
            self.last_kib = total
            self.peak_kib = max(self.peak_kib, total)
            self.processes = max(self.processes, len(tree))

    def figures(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "processes": self.processes,
            "start_rss_mib": mib(self.first_kib),
            "end_rss_mib": mib(self.last_kib),
            "peak_rss_mib": mib(self.peak_kib),
            # Sum of each process's own lifetime peak: an upper bound between samples.
            "peak_hwm_mib": mib(sum(self.hwm_kib.values())),
        }


class MemorySampler:
    """Samples process trees every ``interval`` seconds in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        self.trees = [TreeMemory(pid) for pid in pids]
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for tree in self.trees:
            tree.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


# ---- smtp-sink


def find_smtp_sink() -> str | None:
    for candidate in ("/usr/sbin/smtp-sink", shutil.which("smtp-sink")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_smtp_sink() -> str | None:
    """smtp-sink's path, installing Debian's postfix package for it first where it is missing.

    ``.ci/system-packages postfix`` installs it when run as root on Debian (without setting
    up a mail system) and otherwise prints the one command that does; None then.
    """
    found = find_smtp_sink()
    if found is not None:
        return found
    say("smtp-sink (Debian's postfix package) is missing: .ci/system-packages postfix")
    try:
        subprocess.run(
            [str(PROJECT_ROOT / ".ci" / "system-packages"), "postfix"], timeout=900, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"  could not run .ci/system-packages: {exc}")
    return find_smtp_sink()


class SmtpSink:
    """Postfix's smtp-sink on a loopback port, discarding mail and counting it.

    ``-c`` makes it print ``sess=S quit=Q mesg=M`` followed by a carriage return after every
    session end, QUIT and accepted message (the "." of DATA): a reader thread keeps the
    latest count, which costs one small pipe write per message, no disk.
    """

    COUNTER = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")

    def __init__(self, path: str, *, backlog: int = 1024, max_sessions: int = 256) -> None:
        self.path = path
        self.port = free_port()
        self.host = "127.0.0.1"
        self.backlog = backlog
        self.max_sessions = max_sessions
        self.process: subprocess.Popen[bytes] | None = None
        self.messages = 0
        self.sessions = 0
        self._target = 0
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> SmtpSink:
        command = [self.path, "-c", "-m", str(self.max_sessions)]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to run as root without dropping privileges
        command += [f"{self.host}:{self.port}", str(self.backlog)]
        self.process = start(command, stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name="smtp-sink-counter", daemon=True)
        self._reader.start()
        wait_port(self.host, self.port, 10, self.process)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            pending += chunk
            complete, _, pending = pending.rpartition(b"\r")
            if not complete:
                continue
            last = complete.rsplit(b"\r", 1)[-1]
            match = self.COUNTER.search(last)
            if match:
                self.sessions = int(match.group(1))
                self.messages = int(match.group(3))
                if self.messages >= self._target:  # wake a waiter only when it is done
                    with self._changed:
                        self._changed.notify_all()
            # Read in batches: a wake-up per message cost this process about a tenth of what
            # the whole sending path costs, taken from the cores the senders share. The pipe
            # holds some 2,000 counter lines, 20 ms at 100,000 messages a second.
            time.sleep(0.02)

    def count(self) -> int:
        return self.messages

    def wait_for(self, total: int, within: float) -> int:
        """Wait until ``total`` messages have been accepted; returns the count either way."""
        deadline = time.monotonic() + within
        with self._changed:
            self._target = total
            while self.messages < total:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
            return self.messages

    def environ(self) -> dict[str, Any]:
        return {"SMTP_HOST": self.host, "SMTP_PORT": self.port, "SMTP_SECURITY": "none"}

    def stop(self) -> None:
        stop(self.process, grace=5)
        if self._reader is not None:
            self._reader.join(timeout=2)  # it ends at the pipe's end of file
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


class SmtpDelay:
    """``bench/smtp_delay.py`` in front of a server: each reply is held ``delay_ms``."""

    def __init__(self, target: tuple[str, int], delay_ms: float) -> None:
        self.target = target
        self.delay_ms = delay_ms
        self.host = "127.0.0.1"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SmtpDelay:
        self.process = start(
            [
                sys.executable,
                str(BENCH_DIR / "smtp_delay.py"),
                "--listen",
                f"{self.host}:{self.port}",
                "--to",
                f"{self.target[0]}:{self.target[1]}",
                "--delay-ms",
                str(self.delay_ms),
            ],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready", or nothing if it failed
        if line.strip() != b"ready":
            raise BenchError(f"bench/smtp_delay.py did not start (exit {self.process.poll()})")
        return self

    def environ(self) -> dict[str, Any]:
        return {"SMTP_HOST": self.host, "SMTP_PORT": self.port, "SMTP_SECURITY": "none"}

    def stop(self) -> None:
        stop(self.process, grace=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


def open_connections(port: int) -> int:
    """Established TCP connections to a loopback ``port``, counted from the clients' side."""
    wanted = f":{port:04X} "
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    # "sl local_address rem_address st ...": 01 is ESTABLISHED.
                    fields = line.split(None, 4)
                    if fields[3] == "01" and (fields[2] + " ").endswith(wanted):
                        count += 1
        except OSError:
            continue
    return count


class ConnectionSampler:
    """The most connections open at once to ``port``, sampled every ``interval`` seconds."""

    def __init__(self, port: int, interval: float = 0.2) -> None:
        self.port = port
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smtp-connections", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, open_connections(self.port))
            self._stop.wait(self.interval)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---- the ceiling: plain smtplib, one process per connection


CEILING_MODES = ("sendmail", "pipelined")


def _pipelined_payloads(messages: list[tuple[str, str, bytes]]) -> list[tuple[bytes, bytes]]:
    """Each message as the two writes of a pipelined transaction (RFC 2920), built up front."""
    built = []
    for sender, recipient, data in messages:
        head = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
        body = re.sub(rb"(?m)^\.", b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        built.append((head, body + b".\r\n"))
    return built


def ceiling_sender(
    mode: str,
    host: str,
    port: int,
    local_hostname: str,
    messages: list[tuple[str, str, bytes]],
    count: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Send ``count`` of ``messages`` (cycled) over one connection, once ``go`` is set.

    ``sendmail``: smtplib's own ``sendmail``, four round trips per message (MAIL, RCPT, DATA,
    the body). ``pipelined``: MAIL, RCPT and DATA in one write, then the body, two round trips,
    with the bytes prepared before the clock starts: the least a client can do per message.
    """
    announced = False
    try:
        connection = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=30)
        connection.ehlo()
        if mode == "pipelined" and not connection.has_extn("pipelining"):
            raise RuntimeError("the server does not offer PIPELINING")
        payloads = _pipelined_payloads(messages) if mode == "pipelined" else []
        ready.put(os.getpid())
        announced = True
        go.wait(120)
        started = time.perf_counter()
        if mode == "pipelined":
            for index in range(count):
                head, body = payloads[index % len(payloads)]
                connection.send(head)
                replies = [connection.getreply()[0] for _ in range(3)]
                if replies != [250, 250, 354]:
                    raise RuntimeError(f"envelope refused: {replies}")
                connection.send(body)
                final = connection.getreply()
                if final[0] != 250:
                    raise RuntimeError(f"message refused: {final}")
        else:
            for index in range(count):
                sender, recipient, data = messages[index % len(messages)]
                connection.sendmail(sender, [recipient], data)
        connection.quit()
        results.put(("ok", count, time.perf_counter() - started))
    except BaseException as exc:  # reported to the parent, which decides
        results.put(("error", 0, repr(exc)))
        if not announced:
            ready.put(os.getpid())


# ---- CPU time per process, from /proc/<pid>/stat


def cpu_snapshot(database: str | None = None) -> dict[int, tuple[str, float]]:
    """User+system CPU seconds of every visible process, with a label: its command name, or
    for PostgreSQL whether it is a backend of ``database``, of another one, or the server's own.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        label = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if label == "postgres":
            label = _postgres_label(int(entry), database)
        found[int(entry)] = (label, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def _postgres_label(pid: int, database: str | None) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "postgres"
    # Backends are titled "postgres: 15/main: USER DATABASE HOST(PORT) STATE".
    parts = title.split()
    if len(parts) >= 5 and parts[0] == "postgres:" and "(" in parts[4]:
        return "postgres (bench database)" if parts[3] == database else "postgres (other databases)"
    return "postgres (server processes)"


# CPU that is part of the system under test even though it is not our child.
SERVICES = ("postgres (bench database)", "postgres (server processes)", "redis-server", "py-spy")


def cpu_usage(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    groups: Mapping[str, set[int]],
) -> dict[str, float]:
    """CPU seconds spent between two snapshots: by ``groups`` of pids, the rest by label.

    A process that ended in between is not counted (its time is gone with it).
    """
    owner = {pid: label for label, pids in groups.items() for pid in pids}
    spent: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        used = seconds - before[pid][1] if pid in before else seconds
        if used <= 0:
            continue
        label = owner.get(pid, label)
        spent[label] = spent.get(label, 0.0) + used
    return {label: round(value, 2) for label, value in sorted(spent.items(), key=lambda i: -i[1])}


def foreign_cpu(spent: Mapping[str, float], groups: Mapping[str, set[int]]) -> float:
    """CPU seconds used by processes that are neither ours nor the services we measure."""
    return round(sum(v for k, v in spent.items() if k not in groups and k not in SERVICES), 2)


def background_load(seconds: float = 1.0, database: str | None = None) -> dict[str, float]:
    """What other processes burn while we are idle: a disturbed machine gives wrong figures."""
    before = cpu_snapshot(database)
    time.sleep(seconds)
    spent = cpu_usage(before, cpu_snapshot(database), {"bench (this process)": {os.getpid()}})
    return {k: v for k, v in spent.items() if k != "bench (this process)" and v >= 0.01}


# ---- profiles (py-spy)


def start_profilers(
    pids: list[int], seconds: int, stem: Path, log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    """py-spy: a flame graph of the first worker for people, collapsed stacks of the last one
    (the same one with a single worker) for the summary; one sampler per worker if possible.
    py-spy's own messages go to ``log_dir``."""
    py_spy = shutil.which("py-spy", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if py_spy is None:
        say("  py-spy not found (pip install py-spy into the venv); no profile taken")
        return []
    common = ["record", "--duration", str(seconds), "--rate", "100", "--nonblocking", "--idle"]
    svg_pid, raw_pid = pids[0], pids[-1]
    stem.parent.mkdir(parents=True, exist_ok=True)
    return [
        start(
            [py_spy, *common, "--pid", str(svg_pid), "--format", "flamegraph", "-o", f"{stem}.svg"],
            log=log_dir / f"{stem.name}.svg.log",
        ),
        start(
            [py_spy, *common, "--pid", str(raw_pid), "--format", "raw", "-o", f"{stem}.txt"],
            log=log_dir / f"{stem.name}.txt.log",
        ),
    ]


# py-spy names frames "function (path:line)", the path relative to sys.path. A sample is put
# in the category of its innermost frame that matches, so a socket wait inside smtplib counts
# as SMTP and a psycopg wait under SQLAlchemy counts as the driver.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("smtplib.py", "SMTP conversation (smtplib, incl. waiting for the server)"),
    ("psycopg/", "PostgreSQL driver (psycopg, incl. waiting for the server)"),
    ("itsdangerous/", "link signing (itsdangerous, hmac)"),
    ("hmac.py", "link signing (itsdangerous, hmac)"),
    ("hashlib.py", "link signing (itsdangerous, hmac)"),
    ("newsletter/mail/message.py", "message assembly (newsletter/mail/message.py)"),
    ("email/", "stdlib email package"),
    ("sqlalchemy/", "SQLAlchemy (statement building, ORM, result handling)"),
    ("jinja2/", "templates (Jinja)"),
    ("kombu/", "Celery/kombu/redis (incl. waiting for a task)"),
    ("celery/", "Celery/kombu/redis (incl. waiting for a task)"),
    ("redis/", "Celery/kombu/redis (incl. waiting for a task)"),
    ("email_validator/", "address validation (email_validator)"),
    ("wtforms/", "forms (WTForms, Flask-WTF)"),
    ("flask_wtf/", "forms (WTForms, Flask-WTF)"),
    ("flask_limiter/", "rate limits (Flask-Limiter, limits)"),
    ("limits/", "rate limits (Flask-Limiter, limits)"),
    ("werkzeug/", "Werkzeug"),
    ("flask/", "Flask"),
    ("gunicorn/", "gunicorn (incl. waiting for a request)"),
    ("newsletter/", "newsletter package, own code"),
)


def _path(frame: str) -> str:
    return frame[frame.rfind("(") + 1 :].rsplit(":", 1)[0]


def _function(frame: str) -> str:
    """``func (path:line)`` without the line."""
    head, _, _ = frame.rpartition(" (")
    return f"{head} ({_path(frame)})"


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self time per function and line, inclusive time of our own functions, and time per
    category, from py-spy's raw (collapsed stacks) output.

    Only the main thread counts: with ``--idle``, helper threads that sleep (timers of the
    rate limiter's memory storage, for instance) would otherwise fill the wall-clock profile.
    Their samples are counted apart as ``background_thread_samples``.
    """
    self_time: Counter[str] = Counter()
    self_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = background = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        count = int(number)
        frames = stack.split(";")
        if frames[0].startswith("Thread._bootstrap "):
            background += count
            continue
        total += count
        functions = [_function(frame) for frame in frames]
        self_time[functions[-1]] += count
        self_lines[frames[-1]] += count
        # Inclusive time of the project's own functions: where in our code the time goes.
        for function in {f for f in functions if _path(f).startswith("newsletter/")}:
            inclusive[function] += count
        for frame in reversed(frames):
            path = _path(frame)
            found = next((name for prefix, name in CATEGORIES if path.startswith(prefix)), None)
            if found:
                categories[found] += count
                break
        else:
            categories["other"] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"percent": round(100 * n / max(total, 1), 1), "samples": n, "frame": name}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "background_thread_samples": background,
        "by_category": table(categories),
        "self_functions": table(self_time),
        "self_lines": table(self_lines),
        "inclusive": table(inclusive),
    }
