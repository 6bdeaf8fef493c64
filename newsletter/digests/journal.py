"""A batch's journal: one line per message handed to the server, in a local file.

The ledger hears a chunk's outcomes in one transaction every ``JOURNAL_EVERY`` messages: a
commit per message would cost a round trip and a WAL flush each (``bench/digest.py``
measures the send path with this journal in it). Between those commits the outcomes live
here. A line is one ``write(2)`` into the page cache, which outlives the process that wrote
it (``kill -9``, the OOM killer, a crash, a lost database connection), so a batch that dies
mid-chunk leaves the truth about every message of it except the one or two on the wire.

A journal is ``<JOURNAL_DIR>/<claim token>.journal``, held under ``flock(LOCK_EX)`` while
its batch runs. The kernel drops the lock when the process dies, which is how ``orphans``
tells a dead batch's journal from a live one without guessing from process ids. Lines:

``batch <edition> <first id> <last id> <boot id>``  the first line
``o <delivery>``                          its envelope goes out: from here it may be delivered
``a <delivery> <unix time>``              the server accepted it (250 to its final dot)
``f <delivery> <code>``                   refused for good (5xx): failed, address suppressed
``r <delivery> <code>``                   deferred (4xx, or no reply before the content): retry
``n <delivery>``                          its content never left: back to the queue as it was
``x <unix time> <reason>``                the batch gave up (an error): the rest waits until then

Lines are not fsynced: a process's death keeps them, a machine's (power loss, a kernel
panic) may not. The boot id in the first line tells the two apart: a journal from an earlier
boot is trusted only for what it says was accepted, and every other row it held is marked
unknown, never queued again.

The folder must be on the machine's own disk: each machine's workers read back the journals
of their own dead processes (``ledger.replay``). A whole machine lost takes its journals with
it; its rows then end "unknown" after the lease, as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)

SUFFIX = ".journal"
# A journal being created: not yet locked, so not to be taken for a dead batch's.
STAGING = ".new"


def folder() -> Path:
    return Path(str(current_app.config["JOURNAL_DIR"]))


def boot_id() -> str:
    """This boot of the machine (Linux); elsewhere a constant, which trusts every journal."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or "-"
    except OSError:
        return "-"


class Journal:
    """The open journal of one running batch."""

    def __init__(self, path: Path, edition_id: int, first_id: int, last_id: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Created and locked under a name ``orphans`` does not look at, then renamed: no
        # reader can find it unlocked or without its first line.
        staging = path.with_suffix(STAGING)
        self._fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._header = f"batch {edition_id} {first_id} {last_id} {boot_id()}\n".encode()
        self._write(self._header)
        os.rename(staging, path)

    def _write(self, line: bytes) -> None:
        # One line, one call; a short write (a full disk) must stop the batch, not leave a
        # cut line that would read as "never offered".
        if os.write(self._fd, line) != len(line):
            raise OSError(f"journal {self.path}: short write")

    @classmethod
    def start(cls, token: str, edition_id: int, first_id: int, last_id: int) -> Journal:
        return cls(folder() / f"{token}{SUFFIX}", edition_id, first_id, last_id)

    def offered(self, delivery_id: int) -> None:
        self._write(b"o %d\n" % delivery_id)

    def accepted(self, delivery_id: int) -> None:
        self._write(b"a %d %.3f\n" % (delivery_id, time.time()))

    def failed(self, delivery_id: int, code: int | None) -> None:
        self._write(b"f %d %d\n" % (delivery_id, code or 0))

    def deferred(self, delivery_id: int, code: int | None) -> None:
        self._write(b"r %d %d\n" % (delivery_id, code or 0))

    def not_handed_over(self, delivery_id: int) -> None:
        self._write(b"n %d\n" % delivery_id)

    def gave_up(self, until: float, reason: str) -> None:
        """The batch stops on an error: its rest is not to be tried again before ``until``."""
        text = " ".join(reason.split())[:300] or "error"
        self._write(b"x %.3f %s\n" % (until, text.encode("utf-8", "replace")))

    def recorded(self) -> None:
        """The ledger has committed every outcome so far: keep only the header."""
        os.ftruncate(self._fd, len(self._header))

    def close(self, *, finished: bool) -> None:
        """Release the journal; a batch that did not finish leaves it to be replayed."""
        if self._fd < 0:
            return
        if finished:
            # Removed while still locked, so no reader takes a finished batch for a dead one.
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)  # drops the lock
        self._fd = -1


@dataclass
class Orphan:
    """What a dead batch's journal says."""

    path: Path
    token: str
    edition_id: int
    first_id: int
    last_id: int
    # False when the journal may have lost lines (the machine, not the process, went down):
    # a row it says nothing of may have been sent, so it is unknown, not queued.
    same_boot: bool = True
    offered: set[int] = field(default_factory=set)
    accepted: dict[int, float] = field(default_factory=dict)  # delivery: unix time
    failed: dict[int, int] = field(default_factory=dict)  # delivery: reply code (0: none)
    deferred: dict[int, int] = field(default_factory=dict)
    not_handed_over: set[int] = field(default_factory=set)
    # Set when the batch gave up on an error: when its rest may be tried, and why.
    retry_at: datetime | None = None
    reason: str = ""

    def in_flight(self) -> set[int]:
        """Offered, with no verdict: these may or may not have been delivered."""
        decided = self.accepted.keys() | self.failed.keys() | self.deferred.keys()
        return self.offered - decided - self.not_handed_over


def orphans() -> Iterator[tuple[Orphan, int]]:
    """Journals whose batch died, each with a descriptor holding its lock (close it after).

    A file that cannot be read as a journal is renamed aside with ``.bad`` and logged, not
    replayed: nothing in it can be trusted to say what was sent.
    """
    try:
        paths = sorted(folder().glob(f"*{SUFFIX}"))
    except OSError:
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its batch finished meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            continue  # a live batch holds it
        if not path.exists():  # finished between the open and the lock
            os.close(fd)
            continue
        try:
            with os.fdopen(os.dup(fd), "rb") as stream:
                orphan = _parse(path, stream.read())
        except (ValueError, OSError) as exc:
            log.error("journal %s cannot be read (%s); moved aside, not replayed", path, exc)
            with contextlib.suppress(OSError):
                path.rename(path.with_suffix(".bad"))
            os.close(fd)
            continue
        yield orphan, fd


def _parse(path: Path, data: bytes) -> Orphan:
    lines = data.split(b"\n")
    header = lines[0].split()
    if len(header) not in (4, 5) or header[0] != b"batch":
        raise ValueError("no batch header")
    edition_id, first_id, last_id = (int(part) for part in header[1:4])
    orphan = Orphan(path, path.name[: -len(SUFFIX)], edition_id, first_id, last_id)
    orphan.same_boot = len(header) == 5 and header[4].decode("ascii", "replace") == boot_id()
    # The last line may be cut short by the death it records: it is left out.
    for line in lines[1:-1]:
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == b"x":
                orphan.retry_at = _moment(parts[1])
                orphan.reason = line.split(maxsplit=2)[2].decode("utf-8", "replace")
                continue
            kind, delivery_id = parts[0], int(parts[1])
            if kind == b"o":
                orphan.offered.add(delivery_id)
            elif kind == b"a":
                orphan.accepted[delivery_id] = _moment(parts[2]).timestamp()
            elif kind == b"f":
                orphan.failed[delivery_id] = int(parts[2])
            elif kind == b"r":
                orphan.deferred[delivery_id] = int(parts[2])
            elif kind == b"n":
                orphan.not_handed_over.add(delivery_id)
            else:
                raise ValueError("unknown kind")
        except (IndexError, ValueError) as exc:
            raise ValueError(f"line {line[:40]!r}: {exc}") from None
    return orphan


def _moment(text: bytes) -> datetime:
    """A journal's unix time, refused if it is not one (nan, the year 3000, ...)."""
    value = float(text)
    if not math.isfinite(value) or not 0 < value < 32503680000:
        raise ValueError(f"time {text!r}")
    return datetime.fromtimestamp(value, UTC)


def discard(orphan: Orphan, fd: int) -> None:
    """The ledger holds everything the journal said: remove it."""
    with contextlib.suppress(FileNotFoundError):
        orphan.path.unlink()
    os.close(fd)
