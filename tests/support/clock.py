"""A clock tests set and move, for this process and for a worker process.

``clock`` (function fixture, registered in tests/conftest.py): every ``utcnow()`` of the
app reads it until the test ends::

    def test_x(clock: FakeClock) -> None:
        clock.set(datetime(2027, 3, 14, 6, 59, tzinfo=UTC))
        clock.advance(minutes=2)

A ``FakeClock`` made with a ``path`` also writes the time there, where a worker started with
``CeleryWorker(..., clock_file=path)`` reads it (``tests/support/clocked.py``): both
processes then live at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter import clock as app_clock


class FakeClock:
    """The time, as the test says; it moves only when told."""

    def __init__(self, now: datetime | None = None, path: Path | None = None) -> None:
        self.path = path
        self.set(now or datetime(2027, 1, 4, 7, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        assert now.tzinfo is not None, "an aware datetime"
        self.now = now.astimezone(UTC)
        if self.path is not None:
            # Renamed into place, so the worker never reads half a line.
            part = self.path.with_suffix(".part")
            part.write_text(self.now.isoformat())
            part.replace(self.path)

    def advance(self, **delta: float) -> datetime:
        self.set(self.now + timedelta(**delta))
        return self.now


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    app_clock.use(fake)
    yield fake
    app_clock.use(None)
