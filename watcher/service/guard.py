"""Running scheduled jobs so that none can stop the service: :class:`JobGuard`.

A job that raises is logged and counted and runs again at its next time; a job cancelled by
shutdown is not an error. The guard keeps every running job's task, so a shutdown can cancel
and await them before the parts they use are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

__all__ = ["JobGuard", "JobStats"]

logger = logging.getLogger("watcher.jobs")


@dataclass(slots=True)
class JobStats:
    """Per job id: runs finished, runs that raised, and the last error text."""

    runs: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)


class JobGuard:
    """Wraps job bodies: failures are logged and counted, runs reported to :attr:`on_run`."""

    def __init__(self) -> None:
        self.stats = JobStats()
        #: Called after every run with ``(job_id, failed)`` (metrics).
        self.on_run: Callable[[str, bool], None] | None = None
        self.stopping = False
        self._running: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        failures = sum(self.stats.failures.values())
        return f"<JobGuard running={len(self._running)} failures={failures}>"

    def wrap(self, job_id: str, func: Callable[[], Awaitable[None]]) -> Callable[[], Any]:
        """``func`` as a job that never raises (except a cancellation before shutdown)."""

        @wraps(func)
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await func()
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
                logger.debug("job %s cancelled by shutdown", job_id)  # not an error: we stop
            except Exception as exc:  # a job never kills the service: log, count, next time
                self._failed(job_id, exc)
            else:
                self._ran(job_id, failed=False)
                self.stats.runs[job_id] += 1
            finally:
                self._running.discard(task)

        return run

    async def stop(self) -> None:
        """Cancel the jobs still running and wait for them to end."""
        self.stopping = True
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # Private methods

    def _failed(self, job_id: str, exc: Exception) -> None:
        self._ran(job_id, failed=True)
        self.stats.failures[job_id] += 1
        self.stats.last_error[job_id] = f"{type(exc).__name__}: {exc}"
        logger.error(
            "job %s failed: %s: %s",
            job_id,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )

    def _ran(self, job_id: str, *, failed: bool) -> None:
        if self.on_run is not None:
            try:
                self.on_run(job_id, failed)
            except Exception:  # a broken listener must not turn a run into a failure
                logger.exception("job listener failed for %s", job_id)
