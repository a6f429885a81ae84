"""Settings, read once from the command line and the environment by ``cli.py``.

Components take keyword arguments and never read files or the environment themselves
(style.md habit 7). Secrets are kept out of reprs. Each service option is resolved in one
place, :func:`settings_from_env`: the command-line value, else its ``WATCHER_*`` variable, else
the default; a bad value raises :class:`SettingsError` naming where it came from.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.errors import WatcherError
from watcher.kalshi.endpoints import resolve_endpoints
from watcher.store.pg.dsn import is_postgres, mask_dsn

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_REFRESH_INTERVAL",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_STALE_AFTER",
    "ENV_VARS",
    "Settings",
    "SettingsError",
    "settings_from_env",
]

#: Seconds between two keyless REST polls of each watched market.
DEFAULT_POLL_INTERVAL = 10.0
#: Seconds without any frame on the connection before the feed counts as stale.
DEFAULT_STALE_AFTER = 60.0
#: Seconds between two REST refreshes of market metadata (title, status, close time, result).
DEFAULT_REFRESH_INTERVAL = 300.0
#: Days of ticks, trades and order-book rows kept (0 keeps everything).
DEFAULT_RETENTION_DAYS = 30

#: Every environment variable watcher reads, for the README and `watcher check`.
ENV_VARS = {
    "KALSHI_API_KEY_ID": "API key id (UUID) from kalshi.com → Account → API keys",
    "KALSHI_PRIVATE_KEY_PATH": "PEM file of the RSA or Ed25519 private key",
    "KALSHI_PRIVATE_KEY_PASSWORD": "password of an encrypted private key (optional)",
    "KALSHI_ENV": "prod (default) or demo",
    "KALSHI_WS_URL": "full WebSocket URL incl. /trade-api/ws/v2 (overrides KALSHI_ENV)",
    "KALSHI_API_URL": "REST base URL incl. /trade-api/v2 (overrides KALSHI_ENV)",
    "WATCHER_TRADES": "positions file (default ./trades.json)",
    "WATCHER_RULES": "rules file (default ./rules/rules.yaml)",
    "WATCHER_DB": "SQLite database (default ./data/watcher.db)",
    "WATCHER_POLL_INTERVAL": "keyless mode: seconds between REST polls of each market (default 10)",
    "WATCHER_STALE_AFTER": "seconds without any data before the feed-stale alert (default 60)",
    "WATCHER_REFRESH_INTERVAL": "seconds between REST market metadata refreshes (default 300)",
    "WATCHER_DIGEST_AT": "local time HH:MM of the daily digest, in the rules' timezone (off)",
    "WATCHER_RETENTION_DAYS": "days of ticks/trades/book rows kept; 0 keeps all (default 30)",
    "WATCHER_WRITE_BACK": "1 writes settlements back into trades.json (default 0)",
    "WATCHER_METRICS_PORT": "serve /metrics and /healthz on 127.0.0.1:PORT (default off)",
    "WATCHER_WEB": "serve the dashboard on [HOST:]PORT (default off; host 127.0.0.1)",
    "WATCHER_WEB_TOKEN": "token the dashboard asks for; required to bind a non-loopback host",
    "WATCHER_TELEGRAM_BOT_TOKEN": "the chat bot's token, as rules.yaml's control.telegram uses it",
    "WATCHER_TELEGRAM_API_URL": "the chat bot's Bot API root (default https://api.telegram.org)",
}

#: Hosts the dashboard may bind without a token: this machine only.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingsError(WatcherError):
    """A command-line option or environment variable has a value watcher cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the service needs, resolved once.

    Attributes:
        poll_interval: keyless mode: seconds between two REST polls of the watched markets.
        stale_after: seconds without any frame before the feed-stale alert.
        refresh_interval: seconds between two REST refreshes of market metadata.
        digest_at: ``(hour, minute)`` of the daily digest in the rules' timezone, or None (off).
        retention_days: days of market data kept; 0 keeps everything.
        write_back: write settlements (status, result, P&L, time) back into trades.json.
        metrics_port: loopback port for ``/metrics`` and ``/healthz``, or None (off).
        web: ``(host, port)`` the dashboard binds, or None (off).
        web_token: the token every dashboard request must carry (never shown).
    """

    trades_path: Path
    rules_path: Path
    db_path: Path | str = field(repr=False)  # a SQLite file, or a postgresql:// URL
    ws_url: str
    api_url: str
    demo: bool = False
    api_key_id: str | None = None
    private_key_path: str | None = None
    private_key_password: str | None = field(default=None, repr=False)
    simulate: bool = False
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    poll_interval: float = DEFAULT_POLL_INTERVAL
    stale_after: float = DEFAULT_STALE_AFTER
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    digest_at: tuple[int, int] | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    write_back: bool = False
    metrics_port: int | None = None
    web: tuple[str, int] | None = None
    web_token: str | None = field(default=None, repr=False)

    @property
    def database(self) -> str:
        """``--db`` as it may be shown: a URL's password masked."""
        return mask_dsn(self.db_path)

    @property
    def has_key(self) -> bool:
        return bool(self.api_key_id and self.private_key_path)

    @property
    def is_keyless(self) -> bool:
        """No API key and no simulator: the service polls REST instead of streaming."""
        return not self.simulate and not self.has_key


def settings_from_env(
    *,
    trades: str | None,
    rules: str | None,
    db: str | None,
    simulate: bool = False,
    environ: Mapping[str, str] | None = None,
    poll_interval: str | None = None,
    stale_after: str | None = None,
    refresh_interval: str | None = None,
    digest_at: str | None = None,
    retention_days: str | None = None,
    write_back: bool | None = None,
    metrics_port: str | None = None,
    web: str | None = None,
) -> Settings:
    """Resolve paths and options (option, then WATCHER_* variable, then default), Kalshi's
    settings and the dashboard's.

    Raises:
        SettingsError: an option or variable has an unusable value (the message names it).
    """
    env = dict(os.environ if environ is None else environ)
    pick = _Picker(env)
    return Settings(
        **_paths(env, trades=trades, rules=rules, db=db),
        simulate=simulate,
        env=env,
        **_kalshi_settings(env),
        poll_interval=pick.seconds("poll-interval", poll_interval, DEFAULT_POLL_INTERVAL),
        stale_after=pick.seconds("stale-after", stale_after, DEFAULT_STALE_AFTER),
        refresh_interval=pick.seconds(
            "refresh-interval", refresh_interval, DEFAULT_REFRESH_INTERVAL
        ),
        digest_at=pick.clock("digest-at", digest_at),
        retention_days=pick.days("retention-days", retention_days, DEFAULT_RETENTION_DAYS),
        write_back=pick.flag("write-back", write_back),
        metrics_port=pick.port("metrics-port", metrics_port),
        **_web_settings(pick, web),
    )


def _web_settings(pick: _Picker, option: str | None) -> dict[str, Any]:
    """``--web [HOST:]PORT`` (else ``WATCHER_WEB``) and ``WATCHER_WEB_TOKEN``.

    Raises:
        SettingsError: the address is malformed, or it is not a loopback host and no token is set.
    """
    text, source = pick.raw("web", option)
    token = pick.env.get("WATCHER_WEB_TOKEN") or None
    if text is None or text.strip().lower() in ("off", "none", ""):
        return {"web": None, "web_token": token}
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{source} must be [HOST:]PORT (port 0-65535), but got {text!r}")
    if host not in LOOPBACK_HOSTS and token is None:
        raise SettingsError(
            f"{source} binds {host}, which other machines can reach: set WATCHER_WEB_TOKEN to a"
            " secret every request must carry, or bind 127.0.0.1"
        )
    return {"web": (host, int(port)), "web_token": token}


def _paths(
    env: Mapping[str, str], *, trades: str | None, rules: str | None, db: str | None
) -> dict[str, Any]:
    """``--trades``, ``--rules`` and ``--db``, else their WATCHER_* variables, else defaults."""
    return {
        "trades_path": Path(trades or env.get("WATCHER_TRADES") or "trades.json"),
        "rules_path": Path(rules or env.get("WATCHER_RULES") or "rules/rules.yaml"),
        "db_path": _database(db or env.get("WATCHER_DB") or "data/watcher.db"),
    }


def _database(value: str) -> Path | str:
    """A PostgreSQL URL stays text (a Path would fold its ``//``); anything else is a file."""
    return value if is_postgres(value) else Path(value)


def _kalshi_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The KALSHI_* variables: endpoints (prod, demo or overridden) and the key."""
    demo = env.get("KALSHI_ENV", "prod").strip().lower() == "demo"
    endpoints = resolve_endpoints(
        demo=demo, ws_url=env.get("KALSHI_WS_URL"), api_url=env.get("KALSHI_API_URL")
    )
    return {
        "ws_url": endpoints.ws_url,
        "api_url": endpoints.api_url,
        "demo": demo,
        "api_key_id": env.get("KALSHI_API_KEY_ID") or None,
        "private_key_path": env.get("KALSHI_PRIVATE_KEY_PATH") or None,
        "private_key_password": env.get("KALSHI_PRIVATE_KEY_PASSWORD") or None,
    }


class _Picker:
    """Reads ``--NAME`` else ``WATCHER_NAME``; errors say which of the two was wrong."""

    env: Mapping[str, str]

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str, option: str | None) -> tuple[str | None, str]:
        if option is not None:
            return option, f"--{name}"
        var = "WATCHER_" + name.upper().replace("-", "_")
        value = self.env.get(var)
        return (value if value is None or value.strip() else None), var

    def seconds(self, name: str, option: str | None, default: float) -> float:
        text, source = self.raw(name, option)
        if text is None:
            return default
        value = _seconds(text.strip())
        if value is None or not 0 < value < 10**9:
            raise SettingsError(
                f"{source} must be a positive number of seconds (or like 30s, 5m, 1h),"
                f" but got {text!r}"
            )
        return value

    def days(self, name: str, option: str | None, default: int) -> int:
        text, source = self.raw(name, option)
        if text is None:
            return default
        if not text.strip().isdigit() or int(text) > 100_000:
            raise SettingsError(
                f"{source} must be a whole number of days (0 keeps everything), but got {text!r}"
            )
        return int(text)

    def clock(self, name: str, option: str | None) -> tuple[int, int] | None:
        text, source = self.raw(name, option)
        if text is None or text.strip().lower() in ("off", "none", ""):
            return None
        match = _CLOCK.fullmatch(text.strip())
        if match is None:
            raise SettingsError(f"{source} must be a time HH:MM (24-hour) or off, but got {text!r}")
        return int(match.group(1)), int(match.group(2))

    def port(self, name: str, option: str | None) -> int | None:
        text, source = self.raw(name, option)
        if text is None or text.strip().lower() in ("off", "none", ""):
            return None
        if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
            raise SettingsError(f"{source} must be a TCP port 0-65535 or off, but got {text!r}")
        return int(text)

    def flag(self, name: str, option: bool | None) -> bool:
        if option is not None:
            return option
        text, source = self.raw(name, None)
        if text is None:
            return False
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise SettingsError(f"{source} must be 1 or 0 (true/false), but got {text!r}")
        return word in _TRUE


def _seconds(text: str) -> float | None:
    """``"10"``, ``"0.5"`` or a duration like ``"5m"`` → seconds; None if neither."""
    try:
        value = float(text)
    except ValueError:
        from watcher.rules.fields import parse_duration  # rules is heavy; only when needed

        try:
            return parse_duration(text).total_seconds()
        except ValueError:
            return None
    return value if math.isfinite(value) else None
