"""Routing of decoded events to the registered handlers, and the client's counters.

The :class:`Router` is the part of the WebSocket client that runs once per event: it counts the
event in :class:`ClientStats`, logs the unusual ones (unknown frames, undecodable frames,
refused commands) and returns the handlers to call. A handler that raises is logged and the
feed goes on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from watcher.kalshi import messages as m
from watcher.kalshi.events import CommandRejected, DecodeFailure, Event, SequenceGapEvent

__all__ = ["ClientStats", "Handler", "LateTrade", "Router"]

logger = logging.getLogger("watcher.feed")

Handler = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A trade recovered over REST after a ``trade`` sequence gap (rules see it marked late)."""

    trade: m.Trade


@dataclass(slots=True)
class ClientStats:
    """Counters for logs, the shutdown summary and metrics."""

    messages: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    decode_errors: int = 0
    unknown: int = 0
    sequence_gaps: int = 0
    command_errors: int = 0
    connects: int = 0
    reconnects: int = 0
    backfilled_trades: int = 0
    handler_errors: int = 0


class Router:
    """Counts each event and names its handlers: those of its kind, then those of ``"*"``.

    Args:
        stats: the counters to update.
        on_trade: called with every ``trade`` frame as it is routed.
        on_gap: called with every :class:`~watcher.kalshi.protocol.SequenceGapEvent`.
    """

    def __init__(
        self,
        stats: ClientStats,
        *,
        on_trade: Callable[[m.Trade], None],
        on_gap: Callable[[SequenceGapEvent], None],
    ) -> None:
        self.stats = stats
        self.has_data = False  # a ticker or trade was routed since the caller last reset it
        self._on_trade = on_trade
        self._on_gap = on_gap
        self._handlers: dict[str, list[Handler]] = {}
        self._routes: dict[str, tuple[Handler, ...]] = {}  # kind → its handlers, then "*"

    def __repr__(self) -> str:
        return f"<Router kinds={sorted(self._handlers)} messages={self.stats.messages}>"

    # Public methods

    def register(self, kind: str, handler: Handler) -> None:
        """Call ``handler(event)`` for events of ``kind`` (the client's ``register_handler``)."""
        self._handlers.setdefault(kind, []).append(handler)
        self._routes.clear()

    def route(self, event: Event | LateTrade) -> tuple[Handler, ...]:
        """Count ``event`` and return its handlers (those of its kind, then ``"*"``)."""
        kind = m.FRAME_TYPES.get(type(event))
        if kind is None:
            kind = self._note_event(event)  # type: ignore[arg-type]
        else:
            stats = self.stats
            stats.messages += 1
            stats.by_type[kind] = stats.by_type.get(kind, 0) + 1
            if kind == "trade":
                self.has_data = True
                self._on_trade(event)  # type: ignore[arg-type]
            elif kind == "ticker":
                self.has_data = True
        handlers = self._routes.get(kind)
        if handlers is None:
            handlers = (*self._handlers.get(kind, ()), *self._handlers.get("*", ()))
            self._routes[kind] = handlers
        return handlers

    async def dispatch(self, event: Event | LateTrade) -> None:
        """Route ``event`` and call its handlers, awaiting those that return awaitables."""
        for handler in self.route(event):
            try:
                result = handler(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.handler_failed(handler, event, exc)

    def handler_failed(self, handler: Handler, event: object, exc: Exception) -> None:
        """Log a handler's exception (traceback for the first few) and go on with the feed."""
        self.stats.handler_errors += 1
        n = self.stats.handler_errors
        if n <= 5 or n % 1000 == 0:
            logger.error(
                "handler %s raised on a %s; the feed goes on (%d handler errors so far)",
                getattr(handler, "__qualname__", repr(handler)),
                type(event).__name__,
                n,
                exc_info=exc if n <= 5 else None,
            )

    # Private methods

    def _note_event(
        self,
        event: m.UnknownMessage | DecodeFailure | SequenceGapEvent | CommandRejected | LateTrade,
    ) -> str:
        """Count and log an event that is not a known frame; return its handler kind."""
        if isinstance(event, m.UnknownMessage):
            self.stats.unknown += 1
            if self.stats.unknown <= 5 or self.stats.unknown % 1000 == 0:
                logger.info("unknown frame type %r (%d so far)", event.type, self.stats.unknown)
            return "unknown"
        if isinstance(event, DecodeFailure):
            self.stats.decode_errors += 1
            logger.warning(
                "dropping undecodable frame (%d so far): %s; starts %r",
                self.stats.decode_errors,
                event.error,
                event.error.raw[:80],
            )
            return "decode_error"
        if isinstance(event, SequenceGapEvent):
            self.stats.sequence_gaps += 1
            self._on_gap(event)
            return "sequence_gap"
        if isinstance(event, CommandRejected):
            self.stats.command_errors += 1
            logger.warning(
                "server refused %s: error %d %s",
                _describe(event.command),
                event.code,
                event.message,
            )
            return "command_error"
        self.stats.backfilled_trades += 1
        return "late_trade"


def _describe(command: m.Command | None) -> str:
    if command is None:
        return "a command"
    return f"{command.__struct_config__.tag} #{command.id}"
