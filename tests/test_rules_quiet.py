"""Quiet hours: a daily window in the configured time zone, wrapping midnight, DST-aware."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from watcher.rules import QuietHours, is_quiet, is_suppressed
from watcher.rules.quiet import in_window, local_time

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
NIGHT = QuietHours.model_validate({"start": "23:00", "end": "07:00"})


def utc_ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


@pytest.mark.parametrize(
    ("clock", "start", "end", "quiet"),
    [
        (time(22, 59), time(23), time(7), False),
        (time(23, 0), time(23), time(7), True),
        (time(0, 0), time(23), time(7), True),
        (time(6, 59), time(23), time(7), True),
        (time(7, 0), time(23), time(7), False),
        (time(12, 0), time(23), time(7), False),
        (time(12, 0), time(9), time(17), True),
        (time(8, 59), time(9), time(17), False),
        (time(17, 0), time(9), time(17), False),
        (time(12, 0), time(9), time(9), False),
    ],
)
def test_the_window_includes_its_start_excludes_its_end_and_may_wrap_midnight(
    clock, start, end, quiet
):
    """[start, end) with start > end wrapping midnight; start == end is an empty window."""
    assert in_window(clock, start, end) is quiet


@pytest.mark.parametrize(
    ("now_ms", "quiet"),
    [
        (utc_ms(2026, 1, 15, 3, 59), False),  # 22:59 EST
        (utc_ms(2026, 1, 15, 4, 0), True),  # 23:00 EST
        (utc_ms(2026, 1, 15, 11, 59), True),  # 06:59 EST
        (utc_ms(2026, 1, 15, 12, 0), False),  # 07:00 EST
        (utc_ms(2026, 7, 15, 3, 0), True),  # 23:00 EDT
        (utc_ms(2026, 7, 15, 2, 59), False),  # 22:59 EDT
        (utc_ms(2026, 3, 8, 10, 59), True),  # DST day: 06:59 EDT
        (utc_ms(2026, 3, 8, 11, 0), False),  # DST day: 07:00 EDT (06:00 in EST)
        (utc_ms(2026, 11, 1, 11, 59), True),  # DST ends: 06:59 EST
        (utc_ms(2026, 11, 1, 12, 0), False),  # 07:00 EST
    ],
)
def test_quiet_hours_follow_new_york_wall_clock_across_dst(now_ms, quiet):
    """23:00–07:00 in America/New_York is judged on local time, EST or EDT."""
    assert is_quiet(NIGHT, NEW_YORK, now_ms) is quiet


@pytest.mark.parametrize(
    ("now_ms", "quiet"),
    [
        (utc_ms(2026, 1, 15, 13, 59), False),  # 22:59 JST
        (utc_ms(2026, 1, 15, 14, 0), True),  # 23:00 JST
        (utc_ms(2026, 1, 15, 21, 59), True),  # 06:59 JST, next day
        (utc_ms(2026, 1, 15, 22, 0), False),  # 07:00 JST
        (utc_ms(2026, 3, 8, 14, 0), True),  # the US DST date changes nothing in Tokyo
        (utc_ms(2026, 7, 15, 22, 0), False),
    ],
)
def test_quiet_hours_follow_tokyo_wall_clock(now_ms, quiet):
    """The same window in Asia/Tokyo (no DST) is 14:00–22:00 UTC all year."""
    assert is_quiet(NIGHT, TOKYO, now_ms) is quiet


@pytest.mark.parametrize(
    ("severity", "allowed", "suppressed"),
    [
        ("info", (), True),
        ("warning", (), True),
        ("critical", (), False),
        ("warning", ("warning",), False),
        ("info", ("warning",), True),
    ],
)
def test_critical_and_excepted_severities_bypass_quiet_hours(severity, allowed, suppressed):
    """`critical` always goes through; `except` lets more severities through."""
    quiet = QuietHours.model_validate({"start": "23:00", "end": "07:00", "except": list(allowed)})
    assert is_suppressed(quiet, NEW_YORK, utc_ms(2026, 1, 15, 5, 0), severity) is suppressed


def test_no_quiet_hours_suppress_nothing():
    """An omitted quiet_hours never suppresses."""
    assert is_quiet(None, NEW_YORK, utc_ms(2026, 1, 15, 5, 0)) is False
    assert is_suppressed(None, NEW_YORK, utc_ms(2026, 1, 15, 5, 0), "info") is False


def test_local_time_keeps_milliseconds_and_the_zone():
    """Unix ms become an aware local datetime."""
    moment = local_time(utc_ms(2026, 3, 8, 7, 0) + 250, NEW_YORK)
    assert (moment.hour, moment.microsecond, moment.tzname()) == (3, 250_000, "EDT")
