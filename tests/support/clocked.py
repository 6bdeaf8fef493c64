"""``python -m tests.support.clocked ARGS``: ``celery ARGS``, living at the time a test writes.

The file named by TEST_CLOCK_FILE holds an ISO 8601 moment (``FakeClock`` writes it); every
``utcnow()`` of the worker reads it, so a test moves the worker's time along with its own.
Only the app's clock moves: Celery's own timers (countdowns, heartbeats) keep real time.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from celery.__main__ import main

from newsletter import clock

_FILE = Path(os.environ["TEST_CLOCK_FILE"])


def _now() -> datetime:
    return datetime.fromisoformat(_FILE.read_text())


if __name__ == "__main__":
    clock.use(_now)
    sys.argv[0] = "celery"
    sys.exit(main())
