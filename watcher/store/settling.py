"""How a delivery attempt ends, mapped once for every alert store.

The four ``mark_*`` methods of :class:`~watcher.store.ports.AlertStore` differ only in the
status they set, whether the attempt counts and whether a next attempt is scheduled; each
backend implements the one :meth:`SettlesDeliveries._settle` that writes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from watcher.store.records import DeliveryRef, DeliveryStatus

__all__ = ["SettlesDeliveries"]


class SettlesDeliveries:
    """The ``mark_*`` half of an alert store, over the backend's ``_settle``."""

    async def mark_delivered(self, refs: Iterable[DeliveryRef], *, now_ms: int) -> None:
        """The service accepted the message: count the attempt and close the rows."""
        await self._settle(refs, DeliveryStatus.DELIVERED, now_ms, None, None, 1)

    async def mark_retry(
        self, refs: Iterable[DeliveryRef], *, next_attempt_ms: int, error: str, now_ms: int
    ) -> None:
        """The attempt failed: count it, keep the (masked) ``error``, try again later."""
        await self._settle(refs, DeliveryStatus.RETRYING, now_ms, error, next_attempt_ms, 1)

    async def mark_config_error(
        self, refs: Iterable[DeliveryRef], *, error: str, now_ms: int
    ) -> None:
        """The target cannot work as configured: close the rows without counting an attempt."""
        await self._settle(refs, DeliveryStatus.CONFIG_ERROR, now_ms, error, None, 0)

    async def mark_failed(self, refs: Iterable[DeliveryRef], *, error: str, now_ms: int) -> None:
        """The last attempt failed and the sender gives up: count it and close the rows."""
        await self._settle(refs, DeliveryStatus.FAILED, now_ms, error, None, 1)

    async def _settle(
        self,
        refs: Iterable[DeliveryRef],
        status: DeliveryStatus,
        now_ms: int,
        error: str | None,
        next_ms: int | None,
        attempt: int,
    ) -> None:
        """Set ``status`` on the rows, adding ``attempt`` to their attempts (backend's own)."""
        raise NotImplementedError
