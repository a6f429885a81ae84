"""Hot reload of trades.json and rules.yaml while the service runs.

The directories are watched (not the files), so an editor's save-by-rename counts. A changed file
is parsed and validated completely before anything is swapped; an invalid edit keeps the last good
version in force, logs every located error and raises one alert per distinct broken content.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from os import PathLike
from pathlib import Path

import watchfiles

from watcher.domain.positions import Portfolio
from watcher.domain.trades_file import PositionsError, parse_positions
from watcher.errors import ConfigError
from watcher.rules import RulesConfig, RulesError, parse_rules

__all__ = ["ConfigWatcher"]

logger = logging.getLogger("watcher.config")


class ConfigWatcher:
    """Watches the directories of the positions and rules files and reloads them on change.

    Args:
        trades_path: the positions file.
        rules_path: the rules file.
        env: the environment for ``${VAR}`` in rules.yaml.
        on_portfolio: called (awaited) with new valid positions.
        on_rules: called with new valid rules.
        on_error: called with the file name and its located errors when an edit is invalid.
    """

    def __init__(
        self,
        *,
        trades_path: str | PathLike[str],
        rules_path: str | PathLike[str],
        env: Mapping[str, str],
        on_portfolio: Callable[[Portfolio], Awaitable[None]],
        on_rules: Callable[[RulesConfig], None],
        on_error: Callable[[str, list[ConfigError], str], Awaitable[None]],
        debounce_ms: int = 200,
    ) -> None:
        self.trades_path = Path(trades_path).absolute()
        self.rules_path = Path(rules_path).absolute()
        self.env = env
        self.on_portfolio = on_portfolio
        self.on_rules = on_rules
        self.on_error = on_error
        self.debounce_ms = debounce_ms
        self.reloads = 0
        self._digests = {p: _digest(p) for p in (self.trades_path, self.rules_path)}

    def __repr__(self) -> str:
        return f"<ConfigWatcher {self.trades_path} {self.rules_path} reloads={self.reloads}>"

    async def run(self) -> None:
        """Watch until cancelled."""
        folders = sorted({str(self.trades_path.parent), str(self.rules_path.parent)})
        async for changes in watchfiles.awatch(
            *folders, debounce=self.debounce_ms, recursive=False, ignore_permission_denied=True
        ):
            touched = {Path(path) for _, path in changes}  # absolute: the folders are
            if self.trades_path in touched:
                await self.reload_trades()
            if self.rules_path in touched:
                await self.reload_rules()

    async def reload_trades(self) -> None:
        text = self._changed_text(self.trades_path)
        if text is None:
            return
        try:
            portfolio = parse_positions(text, filename=str(self.trades_path))
        except PositionsError as exc:
            await self._invalid(self.trades_path, exc.errors, text)
            return
        self.reloads += 1
        logger.info("reloaded %s: %d watched positions", self.trades_path, len(portfolio.watched()))
        await self.on_portfolio(portfolio)

    async def reload_rules(self) -> None:
        text = self._changed_text(self.rules_path)
        if text is None:
            return
        try:
            rules = parse_rules(text, filename=str(self.rules_path), env=self.env)
        except RulesError as exc:
            await self._invalid(self.rules_path, exc.errors, text)
            return
        self.reloads += 1
        for warning in rules.warnings:
            logger.warning("%s", warning)
        logger.info("reloaded %s: %d rules", self.rules_path, len(rules.rules))
        self.on_rules(rules)

    def _changed_text(self, path: Path) -> str | None:
        """The file's text if its content changed since the last load, else None."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # mid-rename, or deleted: keep what is in force
        except OSError as exc:
            logger.warning("cannot read %s: %s; keeping the last good version", path, exc.strerror)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digests.get(path):
            return None
        self._digests[path] = digest
        return data.decode("utf-8", errors="replace")

    async def _invalid(self, path: Path, errors: list[ConfigError], text: str) -> None:
        for error in errors:
            logger.error("%s", error.located())
        logger.error("%s is invalid; keeping the last good version", path)
        await self.on_error(str(path), errors, hashlib.sha256(text.encode()).hexdigest()[:12])


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
