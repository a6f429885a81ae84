"""The dashboard's SVG charts (watcher.faces.web.charts): pure functions, exact prices in,
pixels out."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from watcher.faces.web.charts import (
    CENT,
    ChartPoint,
    Frame,
    Marker,
    band_path,
    carry_forward,
    grid_levels,
    price_chart,
    price_range,
    sparkline,
    step_path,
)

SVG = "{http://www.w3.org/2000/svg}"
FRAME = Frame(t0=0, t1=1000, lo=400_000, hi=600_000, left=10.0, top=0.0, width=100.0, height=50.0)


def parse(svg: str) -> ET.Element:
    """The chart as XML (it must be well-formed to be swapped into the page)."""
    return ET.fromstring(svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def label(ms: int) -> str:
    return f"t{ms}"


@pytest.mark.parametrize(
    ("ts", "micros", "xy"),
    [
        (0, 600_000, (10.0, 0.0)),  # the start at the top price: top left
        (1000, 400_000, (110.0, 50.0)),  # the end at the bottom price: bottom right
        (500, 500_000, (60.0, 25.0)),  # the middle of both spans
        (250, 450_000, (35.0, 37.5)),
    ],
)
def test_a_frame_maps_time_and_price_linearly_onto_its_rectangle(ts, micros, xy) -> None:
    """x grows with time from `left`, y falls as the price rises from `top`."""
    assert (FRAME.x(ts), FRAME.y(micros)) == xy


def test_a_frame_of_one_moment_or_one_price_draws_in_the_middle() -> None:
    """A span of zero width or height puts everything in its middle (no division by zero)."""
    flat = Frame(t0=5, t1=5, lo=450_000, hi=450_000, left=0.0, top=0.0, width=80.0, height=20.0)
    assert (flat.x(5), flat.y(450_000)) == (40.0, 10.0)


@pytest.mark.parametrize(
    ("values", "span"),
    [
        ([], (0, 1_000_000)),  # nothing known: the whole dollar
        ([None, None], (0, 1_000_000)),
        ([450_000], (440_000, 460_000)),  # one price: padded a cent either way
        ([5_000, 995_000], (0, 1_000_000)),  # clamped to $0..$1
        ([420_000, None, 470_000], (410_000, 480_000)),
    ],
)
def test_the_price_range_pads_the_known_prices_within_a_dollar(values, span) -> None:
    assert price_range(values) == span


def test_grid_lines_fall_on_whole_cents_and_stay_few() -> None:
    """At most six lines, on the smallest of 1/2/5/10/20/25/50¢ steps that fits."""
    assert grid_levels(440_000, 460_000) == [440_000, 450_000, 460_000]
    assert grid_levels(400_000, 600_000) == [400_000 + n * 5 * CENT for n in range(5)]
    assert grid_levels(0, 1_000_000) == [n * 20 * CENT for n in range(6)]
    assert grid_levels(401_000, 403_000) == []  # no whole cent in between


def test_unknown_prices_carry_the_last_known_one_forward() -> None:
    points = [
        ChartPoint(1, None, None, None),
        ChartPoint(2, 400_000, 420_000, None),
        ChartPoint(3, None, 430_000, 410_000),
        ChartPoint(4, None, None, None),
    ]
    assert carry_forward(points) == [
        ChartPoint(1, None, None, None),
        ChartPoint(2, 400_000, 420_000, None),
        ChartPoint(3, 400_000, 430_000, 410_000),
        ChartPoint(4, 400_000, 430_000, 410_000),
    ]


def test_a_step_path_holds_each_price_until_the_next_and_skips_repeats() -> None:
    """Steps: move, then H to the next time and V to its price; equal prices are one segment;
    the path reaches end_ms; an unknown price leaves a gap."""
    pairs = [(0, 500_000), (250, 500_000), (500, 600_000), (750, None), (1000, 400_000)]
    assert step_path(FRAME, pairs) == "M10.0,25.0H60.0V0.0H85.0M110.0,50.0"
    assert step_path(FRAME, pairs[:3], end_ms=1000) == "M10.0,25.0H60.0V0.0H110.0"
    assert step_path(FRAME, [(0, None)]) == ""
    assert step_path(FRAME, []) == ""


def test_the_band_runs_forward_along_the_bids_and_back_along_the_asks() -> None:
    """Each quote holds until the next; the band reaches end_ms and closes; points without
    both sides are left out."""
    points = [
        ChartPoint(0, 500_000, 600_000, None),
        ChartPoint(250, None, 550_000, None),
        ChartPoint(500, 400_000, 500_000, None),
    ]
    assert band_path(FRAME, points, 1000) == "M10.0,25.0H60.0V50.0H110.0V25.0H60.0V0.0H10.0Z"
    assert band_path(FRAME, points[1:2]) == ""


def test_a_sparkline_without_prices_is_an_empty_box() -> None:
    svg = sparkline([(0, None), (10, None)], entry=400_000)
    tree = parse(svg)
    assert tree.find(f"{SVG}path") is None
    assert tree.findtext(f"{SVG}title") == "no price yet"


def test_a_sparkline_draws_the_price_and_the_entry_line() -> None:
    """One point is enough for a line; the title says first → last price in cents."""
    tree = parse(sparkline([(0, 455_000)], entry=400_000, label="KXT YES"))
    (path,) = tree.findall(f"{SVG}path")
    assert path.get("class") == "spark-line" and path.get("d", "").startswith("M")
    (entry,) = tree.findall(f"{SVG}line")
    assert entry.get("class") == "spark-entry"
    assert tree.findtext(f"{SVG}title") == "KXT YES: 45.5¢ → 45.5¢"


def test_the_price_chart_draws_band_line_entry_and_alert_markers() -> None:
    """The last price path, the bid-ask band, one entry line per position with its label,
    and a marker (with hover text) per alert inside the window; labels in cents."""
    points = [
        ChartPoint(1_000, 440_000, 460_000, 450_000),
        ChartPoint(2_000, 450_000, 470_000, None),
        ChartPoint(3_000, 460_000, 480_000, 470_000),
    ]
    svg = price_chart(
        points,
        start_ms=1_000,
        end_ms=4_000,
        time_label=label,
        entries=[(420_000, "YES entry #1")],
        markers=[Marker(2_500, "rule: a <b>", "critical"), Marker(9_999, "outside")],
    )
    tree = parse(svg)
    paths = {p.get("class"): p.get("d") for p in tree.iter(f"{SVG}path")}
    assert paths["chart-last"].startswith("M") and paths["chart-last"].endswith("H750.0")
    assert paths["chart-band"].endswith("Z")
    (marker,) = [g for g in tree.iter(f"{SVG}g") if "chart-alert" in (g.get("class") or "")]
    assert marker.get("class") == "chart-alert chart-alert-critical"
    assert marker.findtext(f"{SVG}title") == "rule: a <b>"  # escaped in the markup
    texts = [t.text for t in tree.iter(f"{SVG}text")]
    assert "YES entry #1 42¢" in texts
    assert {"t1000", "t4000"} <= set(texts)
    axis = [t.text or "" for t in tree.iter(f"{SVG}text") if t.get("class") == "chart-axis"]
    assert [t for t in axis if t.endswith("¢")] == ["42¢", "44¢", "46¢", "48¢"]


def test_an_empty_price_chart_says_so_and_still_parses() -> None:
    tree = parse(price_chart([], start_ms=0, end_ms=3_600_000, time_label=label))
    assert tree.findtext(f"{SVG}text[@class='chart-empty']") == "no ticks in this window"
    paths = {p.get("class"): p.get("d") for p in tree.iter(f"{SVG}path")}
    assert paths == {"chart-band": "", "chart-last": ""}


def test_prices_enter_as_integers_and_only_pixels_are_fractional() -> None:
    """Every number in the markup is a pixel (one decimal) or a whole ms; no price float."""
    svg = price_chart(
        [ChartPoint(0, 333_333, 666_667, 500_001)], start_ms=0, end_ms=10, time_label=label
    )
    numbers = re.findall(r"\d+\.\d+", svg)
    assert numbers and all(len(n.split(".")[1]) == 1 for n in numbers)
