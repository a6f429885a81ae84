"""The seed's two library examples run against the simulated exchange."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.kalshi.sim.exchange import SimulatedExchange

from .conftest import MS

ROOT = Path(__file__).resolve().parents[1]


async def run_example(name: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / name),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "EXAMPLE_SECONDS": "1.5", **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20_000 * MS)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_basic_example_stores_ticks_and_trades(tmp_path: Path) -> None:
    """examples/websocket_basic.py streams into SQLite and reads back the latest ticker."""
    async with SimulatedExchange(tick_interval=0.02, seed=1) as sim:
        code, out, err = await run_example(
            "websocket_basic.py",
            {
                "KALSHI_WS_URL": sim.ws_url,
                "EXAMPLE_DB": str(tmp_path / "basic.db"),
                "KALSHI_API_KEY_ID": "",
                "KALSHI_PRIVATE_KEY_PATH": "",
            },
        )
    assert code == 0, err
    assert "KXCPI-26JAN-T0.3 {'market_ticker': 'KXCPI-26JAN-T0.3'" in out
    assert "trades stored" in out


async def test_authenticated_example_builds_an_order_book(tmp_path: Path) -> None:
    """examples/websocket_authenticated.py signs with the user's key and keeps a local book."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    async with SimulatedExchange(
        public_keys={"my-key": key.public_key()}, tick_interval=0.02, seed=1
    ) as sim:
        code, out, err = await run_example(
            "websocket_authenticated.py",
            {
                "KALSHI_WS_URL": sim.ws_url,
                "EXAMPLE_DB": str(tmp_path / "book.db"),
                "KALSHI_API_KEY_ID": "my-key",
                "KALSHI_PRIVATE_KEY_PATH": str(pem),
            },
        )
        assert sim.stats.connections_accepted == 1
    assert code == 0, err
    assert "KXCPI-26JAN-T0.3" in out and "valid" in out
