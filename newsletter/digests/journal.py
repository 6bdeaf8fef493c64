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

``batch <edition> <first id> <last id>``  the first line
``o <delivery>``                          its content is about to go: it may reach the server
``a <delivery> <unix time>``              the server accepted it (250 to its final dot)
``n <delivery>``                          refused or deferred: the server did not keep it

The folder must be on the machine's own disk: each machine's workers read back the journals
of their own dead processes (``ledger.replay``). A whole machine lost takes its journals with
it; its rows then end "unknown" after the lease, as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)

SUFFIX = ".journal"


def folder() -> Path:
    return Path(str(current_app.config["JOURNAL_DIR"]))


class Journal:
    """The open journal of one running batch."""

    def __init__(self, path: Path, edition_id: int, first_id: int, last_id: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._header = f"batch {edition_id} {first_id} {last_id}\n".encode()
        os.write(self._fd, self._header)

    @classmethod
    def start(cls, token: str, edition_id: int, first_id: int, last_id: int) -> Journal:
        return cls(folder() / f"{token}{SUFFIX}", edition_id, first_id, last_id)

    def offered(self, delivery_id: int) -> None:
        os.write(self._fd, b"o %d\n" % delivery_id)

    def accepted(self, delivery_id: int) -> None:
        os.write(self._fd, b"a %d %.3f\n" % (delivery_id, time.time()))

    def refused(self, delivery_id: int) -> None:
        os.write(self._fd, b"n %d\n" % delivery_id)

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
    offered: set[int] = field(default_factory=set)
    accepted: dict[int, float] = field(default_factory=dict)
    refused: set[int] = field(default_factory=set)


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
        except ValueError as exc:
            log.error("journal %s cannot be read (%s); moved aside, not replayed", path, exc)
            with contextlib.suppress(OSError):
                path.rename(path.with_suffix(".bad"))
            os.close(fd)
            continue
        yield orphan, fd


def _parse(path: Path, data: bytes) -> Orphan:
    lines = data.split(b"\n")
    header = lines[0].split()
    if len(header) != 4 or header[0] != b"batch":
        raise ValueError("no batch header")
    edition_id, first_id, last_id = (int(part) for part in header[1:])
    orphan = Orphan(path, path.name[: -len(SUFFIX)], edition_id, first_id, last_id)
    # The last line may be cut short by the death it records: it is left out.
    complete = lines[1:-1] if not data.endswith(b"\n") else lines[1:]
    for line in complete:
        parts = line.split()
        if not parts:
            continue
        try:
            kind, delivery_id = parts[0], int(parts[1])
        except IndexError:
            raise ValueError(f"line {line[:40]!r} names no delivery") from None
        if kind == b"o":
            orphan.offered.add(delivery_id)
        elif kind == b"a":
            orphan.accepted[delivery_id] = float(parts[2])
        elif kind == b"n":
            orphan.refused.add(delivery_id)
        else:
            raise ValueError(f"unknown line {line[:40]!r}")
    return orphan


def discard(orphan: Orphan, fd: int) -> None:
    """The ledger holds everything the journal said: remove it."""
    with contextlib.suppress(FileNotFoundError):
        orphan.path.unlink()
    os.close(fd)
