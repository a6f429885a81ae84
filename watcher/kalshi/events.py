"""The events :class:`~watcher.kalshi.protocol.KalshiProtocol` emits besides decoded frames.

Sans-I/O. A session never stops for these: a sequence gap, an undecodable frame or a refused
command is reported as an event, in arrival order among the frames, and the session goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.kalshi import messages as m
from watcher.kalshi.errors import DecodeError

__all__ = ["CommandRejected", "DecodeFailure", "Event", "SequenceGapEvent"]


@dataclass(frozen=True, slots=True)
class SequenceGapEvent:
    """A sequenced subscription skipped ``seq`` numbers: events were missed."""

    sid: int
    channel: str
    expected: int
    received: int
    market_tickers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A frame could not be decoded; the session goes on."""

    error: DecodeError


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """The server answered a command with an error frame."""

    code: int
    message: str
    command: m.Command | None


Event = m.Message | m.UnknownMessage | SequenceGapEvent | DecodeFailure | CommandRejected
