"""Settings, read once from the command line and the environment by ``cli.py``.

Components take keyword arguments and never read files or the environment themselves
(style.md habit 7). Secrets are kept out of reprs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from watcher.kalshi.endpoints import resolve_endpoints

__all__ = ["ENV_VARS", "Settings", "settings_from_env"]

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
}


@dataclass(frozen=True)
class Settings:
    """Everything the service needs, resolved once."""

    trades_path: Path
    rules_path: Path
    db_path: Path
    ws_url: str
    api_url: str
    demo: bool = False
    api_key_id: str | None = None
    private_key_path: str | None = None
    private_key_password: str | None = field(default=None, repr=False)
    simulate: bool = False
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def has_key(self) -> bool:
        return bool(self.api_key_id and self.private_key_path)


def settings_from_env(
    *,
    trades: str | None,
    rules: str | None,
    db: str | None,
    simulate: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve paths (option, then WATCHER_* variable, then default) and Kalshi settings."""
    env = dict(os.environ if environ is None else environ)
    demo = env.get("KALSHI_ENV", "prod").strip().lower() == "demo"
    endpoints = resolve_endpoints(
        demo=demo, ws_url=env.get("KALSHI_WS_URL"), api_url=env.get("KALSHI_API_URL")
    )
    return Settings(
        trades_path=Path(trades or env.get("WATCHER_TRADES") or "trades.json"),
        rules_path=Path(rules or env.get("WATCHER_RULES") or "rules/rules.yaml"),
        db_path=Path(db or env.get("WATCHER_DB") or "data/watcher.db"),
        ws_url=endpoints.ws_url,
        api_url=endpoints.api_url,
        demo=demo,
        api_key_id=env.get("KALSHI_API_KEY_ID") or None,
        private_key_path=env.get("KALSHI_PRIVATE_KEY_PATH") or None,
        private_key_password=env.get("KALSHI_PRIVATE_KEY_PASSWORD") or None,
        simulate=simulate,
        env=env,
    )
