"""Secret redaction for Apprise URLs: what is secret in a URL, and the log filters that hide it.

Every URL the service parses registers its secrets here first (the password, tokens Apprise masks
itself, and every query value such as ``+X-Api-Key=...`` headers that Apprise's own privacy mode
leaves visible). A filter on the ``apprise`` logger, and one on each HTTP library Apprise sends
through, replaces them by ``***``, so neither our logs nor Apprise's own (even at DEBUG) nor the
error text we store can carry them. Installing the filters is a side effect of importing this
module, which :mod:`watcher.notify.apprise_targets` does before it parses anything.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

__all__ = [
    "HTTP_LOGGERS",
    "MASK",
    "MIN_SECRET_LENGTH",
    "SAFE_QUERY_KEYS",
    "emit_held",
    "holding_apprise_logs",
    "redact",
    "remember_parsed",
    "remember_url",
]

#: Shorter fragments are not redacted (replacing "a" everywhere would make logs unreadable).
MIN_SECRET_LENGTH = 3
#: Query keys whose values are harmless and stay visible in a masked URL.
SAFE_QUERY_KEYS = frozenset(
    {
        "method",
        "overflow",
        "retry",
        "wait",
        "optional",
        "format",
        "mode",
        "cto",
        "rto",
        "image",
        "footer",
        "timestamp",
        "blocks",
        "detect",
        "silent",
        "preview",
        "album",
        "content",
        "mdv",
        "emojis",
        "verify",
        "priority",
        "from",
        "to",
        "smtp",
        "name",
    }
)
#: Tokens of an unparseable URL are redacted from this length (shorter ones are ordinary words).
FALLBACK_LENGTH = 6
MASK = "***"
_TOKEN_SPLIT = re.compile(r"[/?&=:@#,;\s]+")


class _Redactor(logging.Filter):
    """Replace every registered secret in ``apprise`` log records by ``***``.

    While a thread is inside :meth:`holding`, its records are held back instead, so that
    secrets learnt only after Apprise parsed a URL are redacted before the records go out.
    """

    def __init__(self) -> None:
        super().__init__("apprise")
        self._secrets: tuple[str, ...] = ()  # longest first: a secret containing another wins
        self._lock = threading.Lock()
        self._local = threading.local()

    def add(self, secrets: set[str]) -> None:
        fresh = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        with self._lock:
            merged = fresh.union(self._secrets)
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    @contextlib.contextmanager
    def holding(self) -> Iterator[list[logging.LogRecord]]:
        held: list[logging.LogRecord] = []
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = None

    def filter(self, record: logging.LogRecord) -> bool:
        held = getattr(self._local, "held", None)
        if held is not None:
            held.append(record)
            return False
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _RedactOnly(logging.Filter):
    """Redact registered secrets from the HTTP libraries Apprise sends through.

    At DEBUG, urllib3 logs every request line (``"POST /path?token=... HTTP/1.1" 200``), and a
    logger's filters only see records created on that very logger, so the ``apprise`` filter
    does not cover it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _REDACTOR.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACTOR = _Redactor()
_APPRISE_LOGGER = logging.getLogger("apprise")
_APPRISE_LOGGER.addFilter(_REDACTOR)
#: Loggers of the libraries Apprise's plugins send through, which may log request URLs.
HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")
for _name in HTTP_LOGGERS:
    logging.getLogger(_name).addFilter(_RedactOnly())


def redact(text: str) -> str:
    """Return ``text`` with every secret of every URL seen so far replaced by ``***``."""
    return _REDACTOR.redact(text)


def remember_url(url: str) -> None:
    """Register what may be secret in ``url``; call it before Apprise sees the URL."""
    _REDACTOR.add(_url_secrets(url))


def remember_parsed(url: str, service: Any | None) -> None:
    """Register the secrets Apprise's parse revealed: its privacy-masked tokens, or every long
    token of ``url`` when Apprise could not parse it (``service`` None)."""
    _REDACTOR.add(_all_tokens(url) if service is None else _privacy_secrets(service))


def holding_apprise_logs() -> contextlib.AbstractContextManager[list[logging.LogRecord]]:
    """Hold back this thread's ``apprise`` log records (while Apprise parses a URL).

    Pass the records to :func:`emit_held` once :func:`remember_parsed` has learnt the secrets.
    """
    return _REDACTOR.holding()


def emit_held(records: list[logging.LogRecord]) -> None:
    """Log records held by :func:`holding_apprise_logs`, redacted with what is known now."""
    for record in records:
        _APPRISE_LOGGER.handle(record)


def _url_secrets(url: str) -> set[str]:
    """Everything in ``url`` that may be secret: the password and non-harmless query values."""
    secrets: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets |= {parts.password, unquote(parts.password)}
        for pair in parts.query.split("&"):
            key, _, raw = pair.partition("=")
            if unquote_plus(key).strip().lower() not in SAFE_QUERY_KEYS:
                secrets |= {raw, unquote(raw), unquote_plus(raw)}
    except ValueError:
        secrets |= _all_tokens(url)
    return secrets


def _all_tokens(url: str) -> set[str]:
    """Every long token of a URL Apprise could not parse: we cannot tell which ones are secret."""
    scheme, _, rest = url.partition("://")
    return {t for t in _TOKEN_SPLIT.split(unquote(rest or scheme)) if len(t) >= FALLBACK_LENGTH}


def _privacy_secrets(service: Any) -> set[str]:
    """Tokens Apprise hides in its privacy URL are secrets too (bot tokens, webhook keys...)."""
    plain = set(_TOKEN_SPLIT.split(unquote(service.url(privacy=False))))
    masked = set(_TOKEN_SPLIT.split(unquote(service.url(privacy=True))))
    return {t for t in plain - masked if len(t) >= MIN_SECRET_LENGTH}
