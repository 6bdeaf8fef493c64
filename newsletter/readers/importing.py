"""Importing readers from CSV: every row checked first, then written in bulk in one transaction.

Memory stays bounded whatever the file's size: rows are streamed, the checked rows and the
problems wait in temporary files between the two passes, and only the set of addresses seen
(to catch duplicates) and the ids of pending readers (8 bytes each, for their mails) grow.
"""

from __future__ import annotations

import csv
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, TypeVar

from sqlalchemy import select

from newsletter.clock import utcnow
from newsletter.db.dialect import among
from newsletter.db.models import WITHDRAWN, Status, Subscriber, Suppression
from newsletter.errors import ImportFileError, InvalidAddress, InvalidReaderField
from newsletter.extensions import db
from newsletter.readers import consent, roster, topics
from newsletter.readers.addresses import address_hash, normalize
from newsletter.readers.export import unescape_cell
from newsletter.readers.roster import clean_name, operator
from newsletter.readers.topics import resolve_frequency, resolve_topics

COLUMNS = ("email", "name", "topics", "frequency", "status")
CHECK_CHUNK = 1000  # addresses looked up in the database per query
# Rows per round of INSERTs; SQLAlchemy sends each as multi-row VALUES statements.
INSERT_CHUNK = 2000
MEMO_SIZE = 10_000  # distinct topics/frequency texts remembered (a file repeats a few)
Progress = Callable[[int], None]
T = TypeVar("T")


def _no_progress(done: int) -> None:
    pass


class Problem(NamedTuple):
    """A row left out: an error (bad data) or a skip (already there, suppressed, withdrawn)."""

    line: int
    reason: str
    skip: bool = False

    def __str__(self) -> str:
        return f"line {self.line}: {'skipped: ' if self.skip else ''}{self.reason}"


class Candidate(NamedTuple):
    line: int
    email: str
    name: str
    topics: list[str]
    frequency: str


@dataclass
class CheckResult:
    """What the checking pass found."""

    rows: int = 0  # data rows read (blank lines aside)
    valid: int = 0  # rows to import
    errors: int = 0
    skipped: int = 0
    ignored_columns: list[str] = field(default_factory=list)


@dataclass
class WriteResult:
    """What the writing pass stored; ``pending_ids`` are the readers to send a confirmation."""

    imported: int = 0
    pending_ids: array[int] = field(default_factory=lambda: array("q"))
    raced: list[Problem] = field(default_factory=list)


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _shown(value: str, width: int = 60) -> str:
    return repr(value if len(value) <= width else value[: width - 1] + "…")


class CsvImport:
    """One import of ``path``: ``check()`` every row, then ``write()`` the good ones."""

    def __init__(self, path: Path, *, confirmed: bool, source: str) -> None:
        self.path = path
        self.confirmed = confirmed
        self.source = source[:120]
        self.result = CheckResult()
        # Closed by __exit__; the import is used as a context manager.
        self._rows: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
        self._problems: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
        self._seen: dict[str, int] = {}
        self._waiting: list[Candidate | Problem] = []
        self._topics = topics.available()
        self._memo: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> CsvImport:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._rows.close()
        self._problems.close()

    # --- first pass: check ------------------------------------------------------------------

    def line_count(self) -> int:
        """Physical lines in the file, for a progress bar's length."""
        count, last = 0, b"\n"
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                count, last = count + block.count(b"\n"), block[-1:]
        return count + (last != b"\n")  # a last line without its newline is a line too

    def check(self, progress: Progress = _no_progress) -> CheckResult:
        """Read and check every row; raises ImportFileError when the file cannot be read."""
        previous = 0
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.reader(handle)
                columns = self._header(reader)
                previous = reader.line_num
                progress(previous)  # the header's lines count towards the file's length
                for row in reader:
                    line, previous = previous + 1, reader.line_num
                    progress(reader.line_num - line + 1)
                    if not any(cell.strip() for cell in row):
                        continue
                    self.result.rows += 1
                    self._waiting.append(self._parse(line, row, columns))
                    if len(self._waiting) >= CHECK_CHUNK:
                        self._look_up()
                self._look_up()
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                self._undecodable_line(), "not UTF-8 text; save the file as CSV UTF-8"
            ) from exc
        except csv.Error as exc:
            raise ImportFileError(previous + 1, f"not readable as CSV ({exc})") from exc
        return self.result

    def _header(self, reader: Any) -> dict[str, int]:
        for row in reader:
            names = [cell.strip().lower() for cell in row]
            if any(names):
                break
        else:
            raise ImportFileError(1, "the file is empty; expected a header line with email")
        line = reader.line_num
        columns: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in COLUMNS:
                if name in columns:
                    raise ImportFileError(line, f"the column {name!r} appears twice in the header")
                columns[name] = index
            elif name:
                self.result.ignored_columns.append(name)
        if "email" not in columns:
            hint = " (the file must be comma-separated)" if ";" in "".join(row) else ""
            raise ImportFileError(
                line, f"no email column in the header {','.join(row)[:100]!r}{hint}"
            )
        columns["_width"] = len(names)
        return columns

    def _parse(self, line: int, row: list[str], columns: dict[str, int]) -> Candidate | Problem:
        width = columns["_width"]
        if len(row) > width:
            return Problem(
                line,
                f"{len(row)} fields where the header has {width}; "
                'quote values that hold commas, e.g. "politics,business"',
            )

        def cell(name: str) -> str:
            index = columns.get(name)
            # An export escapes cells a spreadsheet would run; read them back as they were.
            return unescape_cell(row[index]) if index is not None and index < len(row) else ""

        raw = cell("email")
        try:
            email = normalize(raw)
        except InvalidAddress as exc:
            return Problem(line, f"invalid address {_shown(raw.strip())}: {exc.reason}")
        first = self._seen.get(email)
        if first is not None:
            return Problem(line, f"duplicate of line {first} ({email})")
        self._seen[email] = line
        reasons: list[str] = []
        values: dict[str, Any] = {}
        for name in ("name", "topics", "frequency"):
            try:
                values[name] = self._field(name, cell(name))
            except InvalidReaderField as exc:
                reasons.append(f"{exc.field}: {exc.reason}")
        status = cell("status").strip().lower()
        if status and status not in list(Status):
            reasons.append(f"status: unknown status {_shown(status, 20)}")
        if reasons:
            return Problem(line, "; ".join(reasons))
        if status in WITHDRAWN:
            # An export of another list carries its unsubscribes: those readers withdrew.
            return Problem(line, f"{email} is {status} in the file", skip=True)
        return Candidate(line, email, values["name"], values["topics"], values["frequency"])

    def _field(self, name: str, raw: str) -> Any:
        """A cell's parsed value; topics and frequency repeat, so each text is parsed once."""
        if name == "name":
            return clean_name(raw)
        key = (name, raw)
        found = self._memo.get(key)
        if found is None:
            try:
                if name == "topics":
                    found = resolve_topics(raw, self._topics)
                else:
                    found = resolve_frequency(raw)
            except InvalidReaderField as exc:
                found = exc
            if len(self._memo) < MEMO_SIZE:
                self._memo[key] = found
        if isinstance(found, InvalidReaderField):
            raise found
        return found

    def _look_up(self) -> None:
        """Settle the waiting rows against the database, in file order."""
        emails = [item.email for item in self._waiting if isinstance(item, Candidate)]
        existing: dict[str, str] = {}
        suppressed: dict[str, str] = {}
        if emails:
            existing = dict(
                db.session.execute(
                    select(Subscriber.email, Subscriber.status).where(
                        among(Subscriber.email, emails)
                    )
                ).all()
            )
            suppressed = dict(
                db.session.execute(
                    select(Suppression.address_hash, Suppression.reason).where(
                        among(Suppression.address_hash, [address_hash(e) for e in emails])
                    )
                ).all()
            )
        rows, problems = csv.writer(self._rows), csv.writer(self._problems)
        for item in self._waiting:
            if isinstance(item, Candidate):
                reason = suppressed.get(address_hash(item.email))
                if reason is not None:
                    item = Problem(item.line, f"{item.email} is suppressed ({reason})", skip=True)
                elif item.email in existing:
                    item = Problem(
                        item.line,
                        f"{item.email} is already on the list ({existing[item.email]})",
                        skip=True,
                    )
            if isinstance(item, Problem):
                problems.writerow([item.line, int(item.skip), item.reason])
                if item.skip:
                    self.result.skipped += 1
                else:
                    self.result.errors += 1
            else:
                rows.writerow(
                    [item.line, item.email, item.name, ";".join(item.topics), item.frequency]
                )
                self.result.valid += 1
        self._waiting = []

    def _undecodable_line(self) -> int:
        """The first line that is not UTF-8 (decoding runs ahead of parsing, so look again)."""
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
        return 1

    def problems(self) -> Iterator[Problem]:
        """Every row left out, in file order."""
        self._problems.seek(0)
        for line, skip, reason in csv.reader(self._problems):
            yield Problem(int(line), reason, skip == "1")

    # --- second pass: write -----------------------------------------------------------------

    def write(self, progress: Progress = _no_progress) -> WriteResult:
        """Insert the checked rows in bulk, in the caller's transaction (the caller commits)."""
        written = WriteResult()
        now, who = utcnow(), operator()
        status = Status.ACTIVE if self.confirmed else Status.PENDING
        self._rows.seek(0)
        for chunk in _batches(csv.reader(self._rows), INSERT_CHUNK):
            ids = roster.create(
                [
                    roster.NewReader(email, name, slugs.split(";"), frequency)
                    for _, email, name, slugs, frequency in chunk
                ],
                status,
                now,
            )
            events: list[consent.NewEvent] = []
            for line, email, _, slugs, frequency in chunk:
                subscriber_id = ids.get(email)
                if subscriber_id is None:
                    written.raced.append(
                        Problem(int(line), f"{email} was added meanwhile; left as it is", True)
                    )
                    continue
                detail = {
                    "status": status,
                    "topics": slugs.split(";"),
                    "frequency": frequency,
                    "line": int(line),
                    "operator": who,
                }
                events.append(consent.NewEvent(subscriber_id, detail))
                if not self.confirmed:
                    written.pending_ids.append(subscriber_id)
            consent.record_many(events, consent.Action.IMPORT, self.source, now)
            written.imported += len(events)
            progress(len(chunk))
        return written
