"""Apprise at the boundary: URL parsing, privacy masking and one-URL sends.

Every Apprise URL the service knows goes through :func:`build_service` or :func:`mask_url`, which
register the URL's secrets with :mod:`watcher.notify.redact` before Apprise sees it, so no log
record nor stored error text can carry them. A URL is only ever printed through :func:`mask_url`.

Apprise 2.2 reports delivery as an ``AppriseResult`` whose ``status`` is SUCCESS, FAILURE,
TIMEOUT or NOMATCH. The asset's ``service_timeout`` bounds each send, and ``async_notify`` runs
blocking plugins in Apprise's own thread pool, so a send never blocks the event loop.

Apprise itself is imported on first use (parsing or sending a URL), not with this module: it
costs ~3 MB of resident memory (17 MB on its own), and a service whose alerts only go to the
console never needs it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from watcher.notify.redact import (
    HTTP_LOGGERS,
    MASK,
    MIN_SECRET_LENGTH,
    SAFE_QUERY_KEYS,
    emit_held,
    holding_apprise_logs,
    redact,
    remember_parsed,
    remember_url,
)

# HTTP_LOGGERS, MIN_SECRET_LENGTH and redact moved to watcher.notify.redact; they are still
# exported here for the code and tests that import them from this module.
__all__ = [
    "HTTP_LOGGERS",
    "MIN_SECRET_LENGTH",
    "SendStatus",
    "TargetResult",
    "UrlOutcome",
    "build_service",
    "make_asset",
    "mask_url",
    "normalize_targets",
    "redact",
    "send_test",
    "send_url",
    "validate_targets",
]

logger = logging.getLogger("watcher.notify")

#: Characters of an Apprise error message kept in an outcome's ``detail``.
MAX_DETAIL = 300


class SendStatus(StrEnum):
    """The outcome of sending one message to one URL."""

    DELIVERED = "delivered"
    FAILED = "failed"  # FAILURE or TIMEOUT: worth retrying
    CONFIG_ERROR = "config_error"  # unparseable URL, NOMATCH, unknown target: never retried


@dataclass(frozen=True, slots=True)
class UrlOutcome:
    """What happened to one message sent to one URL (``url`` is masked, ``detail`` redacted)."""

    url: str
    service: str
    status: SendStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TargetResult:
    """One line of ``watcher notify-test``: a target name and one of its URLs' outcome."""

    target: str
    url: str
    service: str
    status: SendStatus
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the service accepted the message."""
        return self.status is SendStatus.DELIVERED

    def __str__(self) -> str:
        text = f"{self.target}: {self.service or '?'} {self.url} -> {self.status.value}"
        return f"{text} ({self.detail})" if self.detail else text


_LOAD_LOCK = threading.Lock()
_loaded = False


# Parsing -------------------------------------------------------------------------------------


def _ensure_plugins_loaded() -> None:
    """Import Apprise and load its plugins once, hiding the stdlib DeprecationWarning (imghdr)
    they trigger."""
    global _loaded
    with _LOAD_LOCK:
        if _loaded:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise

            manager: Any = apprise.plugins.N_MGR
            manager.load_modules()
        _loaded = True


def make_asset(*, timeout: float = 10.0) -> Any:
    """An ``AppriseAsset`` that keeps state in memory (never the user's home) and bounds a send."""
    import apprise

    return apprise.AppriseAsset(storage_mode="memory", service_timeout=timeout)


def build_service(url: str, *, timeout: float = 10.0) -> Any | None:
    """Parse one Apprise URL into an ``apprise.Apprise`` holding just that service.

    Blocking (the first call loads Apprise's plugins): call it via ``asyncio.to_thread`` from
    async code. Registers the URL's secrets for redaction before Apprise can log anything.

    Returns:
        The ``Apprise`` object, or None when Apprise cannot parse or load the URL.
    """
    remember_url(url)
    _ensure_plugins_loaded()
    import apprise

    asset = make_asset(timeout=timeout)
    with holding_apprise_logs() as held:
        service = apprise.Apprise.instantiate(url, asset=asset)
    remember_parsed(url, service)
    emit_held(held)
    return None if service is None else apprise.Apprise(service, asset=asset)


def _mask_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = [(k, v if k.lower() in SAFE_QUERY_KEYS else MASK) for k, v in pairs]
    return urlencode(masked, safe="*@")


def mask_url(url: str) -> str:
    """Apprise's privacy form of ``url`` with every non-harmless query value masked too.

    Apprise masks passwords and tokens but shows ``+header=value`` query arguments; those are
    replaced by ``***``. A URL Apprise cannot parse becomes ``scheme://***``.
    """
    service = build_service(url)
    if service is None:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://{MASK}" if scheme.isalnum() else MASK
    return _service_url(service[0])


def _service_url(plugin: Any) -> str:
    parts = urlsplit(str(plugin.url(privacy=True)))
    return redact(urlunsplit(parts._replace(query=_mask_query(parts.query))))


def normalize_targets(targets: Mapping[str, Sequence[str] | str]) -> dict[str, tuple[str, ...]]:
    """Copy ``targets`` as name → tuple of URLs; a bare string is one URL, blanks are dropped."""
    normal: dict[str, tuple[str, ...]] = {}
    for name, urls in targets.items():
        listed = [urls] if isinstance(urls, str) else list(urls)
        normal[name] = tuple(u.strip() for u in listed if u and u.strip())
    return normal


def validate_targets(targets: Mapping[str, Sequence[str] | str]) -> list[str]:
    """Check that Apprise can load every URL of every target (for ``watcher check``).

    Returns:
        One problem per line, lower-case, with URLs masked; empty when all is well.
    """
    problems: list[str] = []
    for name, urls in normalize_targets(targets).items():
        if not name:
            problems.append("notify target with an empty name")
        if not urls:
            problems.append(f"notify target {name!r} has no url")
        for url in urls:
            if build_service(url) is None:
                problems.append(f"notify target {name!r}: apprise cannot load url {mask_url(url)}")
    return problems


# Sending -------------------------------------------------------------------------------------


def _detail(result: Any) -> str:
    messages = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
    text = messages[-1] if messages else f"apprise status {result.status.name}"
    return redact(text.rstrip("."))[:MAX_DETAIL]


async def send_url(service: Any, *, title: str, body: str, notify_type: str = "info") -> UrlOutcome:
    """Send one message through an ``Apprise`` object from :func:`build_service`.

    Never raises for a delivery problem: FAILURE and TIMEOUT give ``FAILED`` (retry), NOMATCH
    gives ``CONFIG_ERROR``. The call is bounded by the ``timeout`` given to :func:`build_service`.
    """
    import apprise

    plugin = service[0] if len(service) else None
    url = _service_url(plugin) if plugin is not None else MASK
    name = str(getattr(plugin, "service_name", "")) if plugin is not None else ""
    try:
        result = await service.async_notify(body=body, title=title, notify_type=notify_type)
    except Exception as exc:  # a plugin bug must not kill the sender
        detail = redact(f"apprise raised {type(exc).__name__}: {exc}")[:MAX_DETAIL]
        return UrlOutcome(url, name, SendStatus.FAILED, detail)
    with result:
        status = result.status
        if status == apprise.AppriseResultStatus.SUCCESS:
            return UrlOutcome(url, name, SendStatus.DELIVERED)
        if status == apprise.AppriseResultStatus.NOMATCH:
            return UrlOutcome(url, name, SendStatus.CONFIG_ERROR, "apprise matched no service")
        if status == apprise.AppriseResultStatus.TIMEOUT:
            return UrlOutcome(url, name, SendStatus.FAILED, "apprise timed out")
        return UrlOutcome(url, name, SendStatus.FAILED, _detail(result))


async def send_test(
    targets: Mapping[str, Sequence[str] | str],
    name: str | None = None,
    *,
    send_timeout: float = 10.0,
) -> list[TargetResult]:
    """Send a test alert to every URL of one target (or all) for ``watcher notify-test``.

    Returns:
        One result per URL, in configuration order; an unknown ``name`` gives one
        ``CONFIG_ERROR`` result. URLs in results are masked.
    """
    normal = normalize_targets(targets)
    if name is not None and name not in normal:
        return [TargetResult(name, "", "", SendStatus.CONFIG_ERROR, "unknown target")]
    chosen = {name: normal[name]} if name is not None else normal
    results: list[TargetResult] = []
    for target, urls in chosen.items():
        for url in urls:
            results.append(await _test_one(target, url, send_timeout))
    return results


async def _test_one(target: str, url: str, send_timeout: float) -> TargetResult:
    service = await asyncio.to_thread(build_service, url, timeout=send_timeout)
    if service is None:
        masked = await asyncio.to_thread(mask_url, url)
        return TargetResult(target, masked, "", SendStatus.CONFIG_ERROR, "apprise cannot load url")
    outcome = await send_url(
        service,
        title="watcher test alert",
        body=f"test alert from watcher to target {target!r}: if you can read this, it works",
    )
    return TargetResult(target, outcome.url, outcome.service, outcome.status, outcome.detail)
