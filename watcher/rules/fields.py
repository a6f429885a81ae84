"""Field types of rules.yaml: durations, cents, dollars, times of day, name lists, templates.

Each type is an ``Annotated`` pydantic type with one plain validator, so a bad value gives exactly
one error whose text says what was expected and what was seen (the loader adds ``file:line:col``).
Numbers are never binary floats: the loader reads YAML numbers as ``int`` or ``Decimal``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeAlias, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, PlainValidator

from watcher.domain.alert import SEVERITIES, Severity
from watcher.rules.template import check_template

__all__ = [
    "Basis",
    "Cents",
    "CentsOrZero",
    "Contracts",
    "Dollars",
    "Duration",
    "Expires",
    "Level",
    "Names",
    "PositiveDuration",
    "RuleName",
    "Severities",
    "SeverityName",
    "SideName",
    "Template",
    "TimeOfDay",
    "TimeZoneName",
    "Urls",
    "describe",
    "mask_urls",
    "parse_duration",
]

SEEN_MAX = 40
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d{1,9}[smhd])+")
_DURATION_PART = re.compile(r"(\d{1,9})([smhd])")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_MAX_DOLLARS = Decimal(1_000_000_000)
_MAX_CONTRACTS = Decimal(1_000_000_000_000)
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://\S*")


def mask_urls(text: str) -> str:
    """``text`` with everything after the scheme of each ``scheme://...`` replaced by ``***``.

    Error messages echo what the user wrote, and an Apprise URL carries passwords and tokens
    anywhere after its scheme (``tgram://bottoken/chatid``); a misplaced URL must not reach a
    log line, an alert or the database through an error.
    """
    return _URL.sub(lambda match: f"{match[1]}://***", text)


def describe(value: Any) -> str:
    """A value as the user wrote it, shortened and with URLs masked, for error messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        seen = repr(mask_urls(value))
        return seen if len(seen) <= SEEN_MAX else f"{seen[: SEEN_MAX - 4]}...'"
    if isinstance(value, int | Decimal | float):
        text = str(value)
        return text if len(text) <= SEEN_MAX else f"{text[:SEEN_MAX]}..."
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# Durations


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``1d``, ``1h30m`` or a whole number of seconds → timedelta.

    Raises:
        ValueError: anything else, or a negative number.
    """
    seconds = _duration_seconds(value)
    if seconds is None:
        raise ValueError(
            "expected a duration like 30s, 15m, 2h or 1d, or a number of seconds, "
            f"but got {describe(value)}"
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration is too long: {describe(value)}") from None


def _duration_seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value) if abs(value) < 10**12 else None
    if isinstance(value, int):
        return value if 0 <= value < 10**12 else None
    if not isinstance(value, str):
        return None
    text = value.replace(" ", "").lower()
    if text.isdigit() and len(text) <= 12:
        return int(text)
    if not _DURATION.fullmatch(text):
        return None
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if not duration:
        raise ValueError(f"expected a duration more than 0, but got {describe(value)}")
    return duration


Duration: TypeAlias = Annotated[timedelta, PlainValidator(parse_duration)]
PositiveDuration: TypeAlias = Annotated[timedelta, PlainValidator(_positive_duration)]


# Numbers


def _decimal(value: Any) -> Decimal | None:
    """A finite int, Decimal or numeric string as Decimal; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)  # Python callers only; the loader never makes floats
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _cents_validator(*, low: int, high: int, zero_ok: bool, high_ok: bool) -> PlainValidator:
    above = f"at least {low}" if zero_ok else f"more than {low}"
    below = f"at most {high}" if high_ok else f"less than {high}"
    expected = f"a number of cents {above} and {below}"

    def check(value: Any) -> Decimal:
        cents = _decimal(value)
        low_bad = cents is None or (cents < low if zero_ok else cents <= low)
        if cents is None or low_bad or (cents > high if high_ok else cents >= high):
            raise ValueError(f"expected {expected}, but got {describe(value)}")
        if cents != cents.quantize(Decimal("0.0001")):
            raise ValueError(f"cents can have at most 4 decimals, but got {describe(value)}")
        return cents

    return PlainValidator(check)


#: Cents more than 0 and at most 100 (a distance between prices).
Cents: TypeAlias = Annotated[
    Decimal, _cents_validator(low=0, high=100, zero_ok=False, high_ok=True)
]
#: Cents from 0 to 100 (a spread, a hysteresis).
CentsOrZero: TypeAlias = Annotated[
    Decimal, _cents_validator(low=0, high=100, zero_ok=True, high_ok=True)
]
#: A price level strictly between 0¢ and 100¢.
Level: TypeAlias = Annotated[
    Decimal, _cents_validator(low=0, high=100, zero_ok=False, high_ok=False)
]


def _dollars(value: Any) -> Decimal:
    dollars = _decimal(value)
    if dollars is None or abs(dollars) > _MAX_DOLLARS:
        raise ValueError(
            f"expected an amount of dollars such as -10 or 25.50, but got {describe(value)}"
        )
    if dollars != dollars.quantize(Decimal("0.000001")):
        raise ValueError(f"dollars can have at most 6 decimals, but got {describe(value)}")
    return dollars


def _contracts(value: Any) -> Decimal:
    count = _decimal(value)
    if count is None or count <= 0 or count > _MAX_CONTRACTS:
        raise ValueError(f"expected a number of contracts more than 0, but got {describe(value)}")
    if count != count.quantize(Decimal("0.01")):
        raise ValueError(f"contracts can have at most 2 decimals, but got {describe(value)}")
    return count


Dollars: TypeAlias = Annotated[Decimal, PlainValidator(_dollars)]
Contracts: TypeAlias = Annotated[Decimal, PlainValidator(_contracts)]


# Words


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


SeverityName: TypeAlias = Annotated[Severity, BeforeValidator(_lower)]
Basis: TypeAlias = Annotated[Literal["last", "bid", "mid"], BeforeValidator(_lower)]
SideName: TypeAlias = Annotated[Literal["YES", "NO"], BeforeValidator(_upper)]


def _severities(value: Any) -> tuple[Severity, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    found: list[Severity] = []
    for item in items:
        word = _lower(item)
        if word not in get_args(Severity):
            raise ValueError(
                f"expected a severity ({', '.join(SEVERITIES)}) or a list of them, "
                f"but got {describe(item)}"
            )
        found.append(word)
    return tuple(found)


Severities: TypeAlias = Annotated[tuple[Severity, ...], PlainValidator(_severities)]


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"expected a name or a list of names, but got {describe(item)}")
    return tuple(item.strip() for item in items)


Names: TypeAlias = Annotated[tuple[str, ...], PlainValidator(_names)]


def _rule_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty name, but got {describe(value)}")
    return value.strip()


RuleName: TypeAlias = Annotated[str, PlainValidator(_rule_name)]


def _urls(value: Any) -> tuple[str, ...]:
    """Apprise URLs: a string or a list of strings; empty ones (an unset variable) are dropped.

    The URLs are not echoed in errors: they usually carry a token.
    """
    items = value if isinstance(value, list | tuple) else [value]
    urls: list[str] = []
    for item in items:
        if item is None or item == "":
            continue
        if not isinstance(item, str):
            raise ValueError(f"expected an Apprise URL or a list of them, but got {describe(item)}")
        if "://" not in item:
            raise ValueError(
                "expected an Apprise URL such as tgram://bottoken/chatid (no '://' found)"
            )
        urls.append(item.strip())
    return tuple(urls)


Urls: TypeAlias = Annotated[tuple[str, ...], PlainValidator(_urls)]


# Times


def _time_of_day(value: Any) -> time:
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'expected a time of day like "23:00", but got {describe(value)}')
    return time(int(match[1]), int(match[2]))


TimeOfDay: TypeAlias = Annotated[time, PlainValidator(_time_of_day)]


def _expires(value: Any) -> date | datetime:
    if isinstance(value, date):  # a datetime is a date too
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                return parse(text)
            except ValueError:
                continue
    raise ValueError(
        f"expected a date like 2026-01-31 or a date and time like 2026-01-31T16:00, "
        f"but got {describe(value)}"
    )


Expires: TypeAlias = Annotated[date | datetime, PlainValidator(_expires)]


def _time_zone(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return name
    raise ValueError(
        f"expected an IANA time zone such as America/New_York or UTC, but got {describe(value)}"
    )


TimeZoneName: TypeAlias = Annotated[str, PlainValidator(_time_zone)]


def _template(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a message template (a string), but got {describe(value)}")
    return check_template(value)


Template: TypeAlias = Annotated[str, PlainValidator(_template)]
