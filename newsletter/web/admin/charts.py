"""The dashboard's charts as plain geometry for inline SVG (pure: no database, no Flask).

Each chart is drawn in its own coordinates and stretched to the page's width
(``preserveAspectRatio="none"``), so it carries no text of its own: the labels around it
are HTML, which keeps its size on a phone. Every number drawn is also in the table below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from newsletter.readers.stats import Day, Movement

WIDTH = 1000.0  # the drawing's own units; the page stretches them
HEIGHT = 100.0


@dataclass(frozen=True, slots=True)
class Bucket:
    """Days drawn as one bar: a day, or a week in the year's chart."""

    first: date
    last: date
    joined: int
    unsubscribed: int
    bounced: int
    complained: int
    active: int  # active readers at the end of the bucket's last day

    @property
    def left(self) -> int:
        return self.unsubscribed + self.bounced + self.complained

    @property
    def label(self) -> str:
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()} to {self.last.isoformat()}"


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str  # the CSS class: joined, unsubscribed, bounced, complained
    title: str


@dataclass(frozen=True, slots=True)
class Bars:
    """Joined above the axis, left below it (stacked by reason)."""

    rects: list[Rect]
    axis_y: float
    most_joined: int
    most_left: int


@dataclass(frozen=True, slots=True)
class Line:
    """Active readers over the window, on a scale from ``low`` to ``high``."""

    points: str  # for <polyline points=...>
    area: str  # the same line closed along the bottom, for <polygon points=...>
    low: int
    high: int


def bucket_days(days: int) -> int:
    """Days per bar: one for a month or a quarter, seven for a year."""
    return 1 if days <= 90 else 7


def buckets(movement: Movement) -> list[Bucket]:
    """The window's days grouped into bars, counted from today back, so the last bar ends
    today (the first may be shorter)."""
    size = bucket_days(len(movement.days))
    active = movement.active_by_day()
    found: list[Bucket] = []
    end = len(movement.days)
    while end > 0:
        start = max(0, end - size)
        chunk: list[Day] = movement.days[start:end]
        found.append(
            Bucket(
                chunk[0].day,
                chunk[-1].day,
                sum(d.joined for d in chunk),
                sum(d.unsubscribed for d in chunk),
                sum(d.bounced for d in chunk),
                sum(d.complained for d in chunk),
                active[end - 1],
            )
        )
        end = start
    return found[::-1]


def bars(series: list[Bucket]) -> Bars:
    most_joined = max((b.joined for b in series), default=0)
    most_left = max((b.left for b in series), default=0)
    total = most_joined + most_left
    # The axis splits the height in proportion, so a bar of one reader is as tall either way.
    axis = HEIGHT * most_joined / total if total else HEIGHT / 2
    scale = HEIGHT / total if total else 0.0
    slot = WIDTH / max(len(series), 1)
    gap = min(slot * 0.15, 4.0)
    rects: list[Rect] = []
    for index, bucket in enumerate(series):
        x = index * slot + gap / 2
        width = slot - gap
        if bucket.joined:
            height = bucket.joined * scale
            title = f"{bucket.label}: {bucket.joined} joined"
            rects.append(Rect(x, axis - height, width, height, "joined", title))
        y = axis
        for kind, count in (
            ("unsubscribed", bucket.unsubscribed),
            ("bounced", bucket.bounced),
            ("complained", bucket.complained),
        ):
            if count:
                height = count * scale
                rects.append(Rect(x, y, width, height, kind, f"{bucket.label}: {count} {kind}"))
                y += height
    return Bars(rects, axis, most_joined, most_left)


def line(series: list[Bucket]) -> Line:
    values = [bucket.active for bucket in series]
    low, high = (min(values), max(values)) if values else (0, 0)
    if high == low:  # a flat line sits in the middle, not on an edge
        low, high = max(0, low - 1), high + 1
    span = high - low
    step = WIDTH / max(len(values) - 1, 1)
    # A little room above and below, so the line never runs along the frame.
    points = [
        (index * step, HEIGHT - 5 - (value - low) / span * (HEIGHT - 10))
        for index, value in enumerate(values)
    ]
    if len(points) == 1:
        points.append((WIDTH, points[0][1]))
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    area = f"0,{HEIGHT:.0f} {text} {points[-1][0]:.1f},{HEIGHT:.0f}"
    return Line(text, area, low, high)
