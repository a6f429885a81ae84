"""Settlement: the `settled` rule's alert end to end, and the optional write-back into
trades.json (atomic, every unknown field and number kept, backup kept, mode kept)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.app import Endpoint, Service
from watcher.domain.trades_file import PositionsError, load_positions
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.notify.outbox import Outbox
from watcher.rules import load_rules
from watcher.service.writeback import write_settlement
from watcher.settings import settings_from_env

from .conftest import MS
from .support import poll as until

WAIT = 10_000 * MS
SETTLED_AT = 1_767_323_045_000  # 2026-01-02T03:04:05Z

TRADES_TEXT = """\
{
  "trades": [
    {
      "id": "t-1",
      "ticker": "KXCPI-26JAN-T0.3",
      "side": "YES",
      "entry_price": 42,
      "contracts": 12.50,
      "status": "OPEN",
      "tags": ["macro", "°F ok"],
      "source": {"app": "notebook", "version": 2, "ratio": 1.0e-3}
    },
    {
      "id": 2,
      "ticker": "KXCPI-26JAN-T0.3",
      "side": "no",
      "entry_cents": 30.5,
      "quantity": 4
    },
    {"ticker": "KXCPI-26JAN-T0.3", "side": "YES", "entry_price": 10, "contracts": 1,
     "status": "CANCELLED"},
    {"ticker": "KXFED-26DEC-H0", "side": "YES", "entry_price": 50, "contracts": 3}
  ],
  "stats": {"wins": 3, "realized_pnl_dollars": "14.40", "big": 123456789012345678901234567890}
}
"""


def test_write_back_marks_the_watched_entries_and_keeps_everything_else(tmp_path: Path) -> None:
    """Each watched entry of the market gets status SETTLED, result, pnl_dollars (exact, per
    side) and settled_at; unknown fields, number texts, other entries and top-level keys are
    kept; the old file is the backup; the file mode is kept."""
    path = tmp_path / "trades.json"
    path.write_text(TRADES_TEXT, encoding="utf-8")
    path.chmod(0o640)
    updated = write_settlement(
        path,
        ticker="KXCPI-26JAN-T0.3",
        result="yes",
        yes_payout_micros=1_000_000,
        settled_at_ms=SETTLED_AT,
    )
    assert updated == [1, 2]
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    first, second, cancelled, fed = data["trades"]
    assert first["status"] == "SETTLED" and first["result"] == "yes"
    assert first["pnl_dollars"] == "7.25"  # 12.5 × (1.00 − 0.42)
    assert first["settled_at"] == "2026-01-02T03:04:05Z"
    assert second["pnl_dollars"] == "-1.22" and second["status"] == "SETTLED"  # NO lost 4 × 30.5¢
    assert first["tags"] == ["macro", "°F ok"] and first["source"]["version"] == 2
    assert "status" not in fed and cancelled["status"] == "CANCELLED"
    assert '"contracts": 12.50,' in text and '"ratio": 1.0e-3' in text and "°F ok" in text
    assert '"entry_cents": 30.5,' in text
    assert '"big": 123456789012345678901234567890' in text
    assert data["stats"] == json.loads(TRADES_TEXT)["stats"]
    assert list(first)[:8] == [
        "id",
        "ticker",
        "side",
        "entry_price",
        "contracts",
        "status",
        "tags",
        "source",
    ]
    assert text.endswith("}\n")
    assert (tmp_path / "trades.json.bak").read_text(encoding="utf-8") == TRADES_TEXT
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "trades.json.bak").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trades.json", "trades.json.bak"]
    portfolio = load_positions(path)
    assert portfolio.tickers() == ["KXFED-26DEC-H0"]


def test_write_back_leaves_the_file_alone_without_a_watched_entry(tmp_path: Path) -> None:
    """A market with no watched entry changes nothing: no write, no backup."""
    path = tmp_path / "trades.json"
    path.write_text(TRADES_TEXT)
    before = path.stat().st_mtime_ns
    assert (
        write_settlement(
            path, ticker="KXOTHER-1", result="no", yes_payout_micros=0, settled_at_ms=SETTLED_AT
        )
        == []
    )
    assert path.stat().st_mtime_ns == before and not (tmp_path / "trades.json.bak").exists()


def test_write_back_refuses_an_invalid_file(tmp_path: Path) -> None:
    """An invalid positions file is reported, never overwritten."""
    path = tmp_path / "trades.json"
    path.write_text('[{"ticker": "A", "side": "MAYBE"}]')
    with pytest.raises(PositionsError):
        write_settlement(
            path, ticker="A", result="yes", yes_payout_micros=1_000_000, settled_at_ms=SETTLED_AT
        )
    assert path.read_text() == '[{"ticker": "A", "side": "MAYBE"}]'


RULES = """\
version: 1
timezone: UTC
rules:
  - {name: settled, type: settled}
"""


@pytest.fixture
async def settling(tmp_path: Path) -> AsyncIterator[tuple[Service, SimulatedExchange, Path]]:
    (tmp_path / "trades.json").write_text(TRADES_TEXT)
    (tmp_path / "rules.yaml").write_text(RULES)
    key = ed25519.Ed25519PrivateKey.generate()
    async with SimulatedExchange(public_keys={"k": key.public_key()}, tick_interval=0.05) as sim:
        settings = settings_from_env(
            trades=str(tmp_path / "trades.json"),
            rules=str(tmp_path / "rules.yaml"),
            db=str(tmp_path / "w.db"),
            environ={},
            write_back=True,
        )
        svc = Service(
            settings,
            portfolio=load_positions(settings.trades_path),
            rules=load_rules(settings.rules_path, env={}),
            endpoint=Endpoint(sim.ws_url, sim.api_url, KalshiSigner("k", key)),
        )
        svc.config.debounce_ms = 50
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        await sim.wait_subscribed("market_lifecycle_v2", "KXCPI-26JAN-T0.3", timeout=WAIT)
        yield svc, sim, tmp_path
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def test_settlement_alerts_with_result_and_pnl_and_writes_back(settling) -> None:
    """`determined` → the settled alert with the result and each position's realized P&L;
    with write-back, trades.json is updated and reloaded (the market is no longer watched)
    without a config-error alert."""
    svc, sim, folder = settling
    await sim.settle("KXCPI-26JAN-T0.3", "yes")
    await until(lambda: "KXCPI-26JAN-T0.3" not in svc.pipeline.watched)
    with Outbox(folder / "w.db") as outbox:
        alerts = outbox.recent(limit=50)
    [settled] = [a for a in alerts if a.rule == "settled"]
    assert settled.market_ticker == "KXCPI-26JAN-T0.3"
    assert "result YES" in settled.body
    assert (
        "12.5 YES from 42¢ → +$7.25" in settled.body and "4 NO from 30.5¢ → -$1.22" in settled.body
    )
    assert not [a for a in alerts if a.rule == "config"]
    entries = json.loads((folder / "trades.json").read_text())["trades"]
    assert [e.get("status") for e in entries] == ["SETTLED", "SETTLED", "CANCELLED", None]
    assert entries[0]["pnl_dollars"] == "7.25" and entries[0]["result"] == "yes"
    assert (folder / "trades.json.bak").read_text() == TRADES_TEXT
    assert svc.writeback is not None and svc.writeback.written == ["KXCPI-26JAN-T0.3"]
