"""Server-rendered SVG charts: the overview's sparklines and the market page's price chart.

Pure functions, no I/O. Prices go in as exact integer micro-dollars and times as Unix ms; only
the pixel coordinates they become are floats (one decimal in the markup). Prices are shown as
cents through :func:`watcher.kalshi.fixed.format_cents`, never through a float. Every element
carries a class (``chart-last``, ``chart-band``, ``chart-entry``, ``chart-alert``, ...) that
the stylesheet colours: the markup has no inline style, as the Content-Security-Policy wants.

A price holds until the next tick, so lines are drawn as steps. A ``None`` price (not known)
keeps the previous one (:func:`carry_forward`); before the first known price nothing is drawn.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape

from watcher.kalshi.fixed import format_cents

__all__ = [
    "CENT",
    "ChartPoint",
    "Frame",
    "Marker",
    "band_path",
    "carry_forward",
    "grid_levels",
    "price_chart",
    "price_range",
    "sparkline",
    "step_path",
]

#: One cent in micro-dollars.
CENT = 10_000
#: A whole dollar, the top of any Kalshi price.
DOLLAR = 1_000_000
#: Grid steps tried for the price axis, in cents (the first giving at most MAX_GRID lines wins).
GRID_STEPS = (1, 2, 5, 10, 20, 25, 50)
MAX_GRID = 6


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """A market's YES quote and last price at one moment (micro-dollars, None if unknown)."""

    ts_ms: int
    bid: int | None
    ask: int | None
    last: int | None


@dataclass(frozen=True, slots=True)
class Marker:
    """An alert drawn on the chart at ``ts_ms``; ``text`` is shown on hover (SVG ``<title>``)."""

    ts_ms: int
    text: str
    severity: str = "info"


@dataclass(frozen=True, slots=True)
class Frame:
    """Maps a time span (ms) and a price span (micro-dollars) onto a pixel rectangle."""

    t0: int
    t1: int
    lo: int
    hi: int
    left: float
    top: float
    width: float
    height: float

    def x(self, ts_ms: int) -> float:
        """The pixel column of ``ts_ms`` (the middle when the span is a single moment)."""
        if self.t1 <= self.t0:
            return self.left + self.width / 2
        return self.left + self.width * (ts_ms - self.t0) / (self.t1 - self.t0)

    def y(self, micros: int) -> float:
        """The pixel row of a price (higher prices higher up; the middle for a flat span)."""
        if self.hi <= self.lo:
            return self.top + self.height / 2
        return self.top + self.height * (self.hi - micros) / (self.hi - self.lo)


def carry_forward(points: Iterable[ChartPoint]) -> list[ChartPoint]:
    """``points`` with each unknown price replaced by the last known one before it."""
    bid = ask = last = None
    out = []
    for p in points:
        bid = p.bid if p.bid is not None else bid
        ask = p.ask if p.ask is not None else ask
        last = p.last if p.last is not None else last
        out.append(ChartPoint(p.ts_ms, bid, ask, last))
    return out


def price_range(values: Iterable[int | None], *, pad: int = CENT) -> tuple[int, int]:
    """The price span a chart shows: the known values padded by ``pad``, within $0..$1.

    No known value gives the whole $0..$1.
    """
    known = [v for v in values if v is not None]
    if not known:
        return 0, DOLLAR
    return max(0, min(known) - pad), min(DOLLAR, max(known) + pad)


def grid_levels(lo: int, hi: int) -> list[int]:
    """Whole-cent prices for horizontal grid lines between ``lo`` and ``hi``: at most
    :data:`MAX_GRID`, on the smallest step of :data:`GRID_STEPS` that allows it."""
    for step_cents in GRID_STEPS:
        step = step_cents * CENT
        first = -(-lo // step) * step
        levels = list(range(first, hi + 1, step))
        if len(levels) <= MAX_GRID:
            return levels
    return [lo, hi]


def step_path(
    frame: Frame, pairs: Sequence[tuple[int, int | None]], *, end_ms: int | None = None
) -> str:
    """An SVG path of ``(ts_ms, price)`` as steps (each price holds until the next point),
    extended to ``end_ms`` if given; an unknown price leaves a gap. Empty when nothing is
    known. A run of equal prices is one segment."""
    parts: list[str] = []
    held: tuple[int, float] | None = None  # the price being held: (its ts, its y)
    for ts, value in pairs:
        if value is None:
            if held is not None:
                parts.append(f"H{frame.x(ts):.1f}")
            held = None
            continue
        y = frame.y(value)
        if held is None:
            parts.append(f"M{frame.x(ts):.1f},{y:.1f}")
        elif y != held[1]:
            parts.append(f"H{frame.x(ts):.1f}V{y:.1f}")
        else:
            continue
        held = (ts, y)
    if held is not None:
        last_ts = pairs[-1][0] if end_ms is None else max(end_ms, pairs[-1][0])
        if last_ts != held[0]:
            parts.append(f"H{frame.x(last_ts):.1f}")
    return "".join(parts)


def sparkline(
    pairs: Sequence[tuple[int, int | None]],
    *,
    entry: int | None = None,
    width: int = 120,
    height: int = 28,
    label: str = "price",
) -> str:
    """A small chart of one price over time with a dashed entry line; an empty box when there
    is no price yet."""
    box = f'viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
    head = f'<svg class="spark" {box} role="img" aria-label="{escape(label)}">'
    known = [p for p in pairs if p[1] is not None]
    if not known:
        return f"{head}<title>no price yet</title></svg>"
    lo, hi = price_range([*(v for _, v in known), entry], pad=CENT // 2)
    frame = Frame(pairs[0][0], pairs[-1][0], lo, hi, 1.0, 2.0, width - 2.0, height - 4.0)
    body = [f'<path class="spark-line" d="{step_path(frame, pairs)}"/>']
    if entry is not None:
        y = frame.y(entry)
        body.insert(0, _hline("spark-entry", 0, width, y))
    first, last = format_cents(known[0][1] or 0), format_cents(known[-1][1] or 0)
    title = f"<title>{escape(label)}: {first} → {last}</title>"
    return head + title + "".join(body) + "</svg>"


def price_chart(
    points: Sequence[ChartPoint],
    *,
    start_ms: int,
    end_ms: int,
    time_label: Callable[[int], str],
    entries: Sequence[tuple[int, str]] = (),
    markers: Sequence[Marker] = (),
    width: int = 760,
    height: int = 300,
) -> str:
    """The market page's chart: the bid–ask band, the last price, entry lines and a marker
    per alert (hover text in ``<title>``), over ``start_ms``..``end_ms``.

    Args:
        points: the YES quote over time, oldest first (see :class:`ChartPoint`).
        start_ms, end_ms: the time span shown.
        time_label: how a time is written on the axis (the rules' timezone).
        entries: ``(YES price, label)`` of each position's entry line; markers: the alerts.
        width, height: the size of the drawing in pixels.
    """
    points = carry_forward(points)
    prices = [v for p in points for v in (p.bid, p.ask, p.last)]
    lo, hi = price_range(prices + [e for e, _ in entries])
    frame = Frame(start_ms, max(end_ms, start_ms), lo, hi, 48.0, 10.0, width - 58.0, height - 36.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="price chart">',
        *_grid(frame, time_label),
    ]
    if not any(p.last is not None or p.bid is not None for p in points):
        parts.append(_empty(width, height))
    last = [(p.ts_ms, p.last) for p in points]
    parts += [
        f'<path class="chart-band" d="{band_path(frame, points, end_ms)}"/>',
        f'<path class="chart-last" d="{step_path(frame, last, end_ms=end_ms)}"/>',
        *(_entry(frame, price, text) for price, text in entries),
        *(_marker(frame, points, m) for m in markers if start_ms <= m.ts_ms <= end_ms),
    ]
    return "".join(parts) + "</svg>"


def band_path(frame: Frame, points: Sequence[ChartPoint], end_ms: int | None = None) -> str:
    """The area between bid and ask, as steps: along the bids forward (to ``end_ms`` if
    given), back along the asks. Empty while no point has both."""
    quoted = [(p.ts_ms, p.bid, p.ask) for p in points if p.bid is not None and p.ask is not None]
    if not quoted:
        return ""
    forward = step_path(frame, [(ts, bid) for ts, bid, _ in quoted], end_ms=end_ms)
    back = [f"V{frame.y(quoted[-1][2]):.1f}"]
    for (ts, _, _), (_, _, older_ask) in zip(quoted[:0:-1], quoted[-2::-1], strict=True):
        back.append(f"H{frame.x(ts):.1f}V{frame.y(older_ask):.1f}")
    back.append(f"H{frame.x(quoted[0][0]):.1f}Z")
    return forward + "".join(back)


# Private functions


def _empty(width: int, height: int) -> str:
    return (
        f'<text class="chart-empty" x="{width / 2:.1f}" y="{height / 2:.1f}">'
        "no ticks in this window</text>"
    )


def _hline(css: str, x0: float, x1: float, y: float) -> str:
    return f'<line class="{css}" x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}"/>'


def _grid(frame: Frame, time_label: Callable[[int], str]) -> list[str]:
    """Horizontal lines at whole cents (labelled), and three time labels along the bottom."""
    right = frame.left + frame.width
    out = []
    for level in grid_levels(frame.lo, frame.hi):
        y = frame.y(level)
        out.append(_hline("chart-grid", frame.left, right, y))
        out.append(
            f'<text class="chart-axis" x="{frame.left - 6:.1f}" y="{y + 4:.1f}"'
            f' text-anchor="end">{escape(format_cents(level))}</text>'
        )
    bottom = frame.top + frame.height + 18
    for ts, anchor in (
        (frame.t0, "start"),
        ((frame.t0 + frame.t1) // 2, "middle"),
        (frame.t1, "end"),
    ):
        out.append(
            f'<text class="chart-axis" x="{frame.x(ts):.1f}" y="{bottom:.1f}"'
            f' text-anchor="{anchor}">{escape(time_label(ts))}</text>'
        )
    return out


def _entry(frame: Frame, price: int, text: str) -> str:
    y = frame.y(price)
    right = frame.left + frame.width
    label = f"{text} {format_cents(price)}"
    return (
        f'<g class="chart-entry">{_hline("chart-entry-line", frame.left, right, y)}'
        f'<text class="chart-entry-label" x="{right - 4:.1f}" y="{y - 4:.1f}"'
        f' text-anchor="end">{escape(label)}</text></g>'
    )


def _marker(frame: Frame, points: Sequence[ChartPoint], marker: Marker) -> str:
    """A dot on the last price at the alert's time (at the bottom when no price was known)."""
    times = [p.ts_ms for p in points]
    at = bisect.bisect_right(times, marker.ts_ms) - 1
    price = points[at].last if at >= 0 else None
    y = frame.y(price) if price is not None else frame.top + frame.height
    severity = escape(marker.severity)
    return (
        f'<g class="chart-alert chart-alert-{severity}" data-ts="{marker.ts_ms}">'
        f'<circle cx="{frame.x(marker.ts_ms):.1f}" cy="{y:.1f}" r="5"/>'
        f"<title>{escape(marker.text)}</title></g>"
    )
