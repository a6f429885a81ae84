"""A PostgreSQL password in `--db` never reaches an output: not the service's log at -vv, not
/metrics or /healthz, not `check`, `status`, `alerts` or `history`, not the database itself.

Real processes against the local PostgreSQL (trust authentication: the server never asks for
the password, so a made-up one in the URL is accepted and only has to stay hidden).
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.cli import main
from watcher.kalshi.sim.exchange import SimulatedExchange

from .support import KEY_ID, RULES, TRADES, HttpRecorder, free_port, spawn, watcher_env, write_key

SECRET = "Pg-Secret-7f3a9c"


def with_password(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    userinfo, host = rest.split("@", 1)
    return f"{scheme}://{userinfo.split(':')[0]}:{SECRET}@{host}"


async def test_a_database_password_reaches_no_output(
    tmp_path: Path, postgres_db, capsys, monkeypatch
):
    """-vv logs, /metrics, /healthz, check, status, alerts, history and every stored text
    column are free of the password; the URL is shown with `***`."""
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(RULES)
    dsn = with_password(postgres_db)
    key = ed25519.Ed25519PrivateKey.generate()
    async with (
        SimulatedExchange(public_keys={KEY_ID: key.public_key()}, tick_interval=0.05) as sim,
        HttpRecorder() as hook,
    ):
        env = watcher_env(sim, write_key(tmp_path / "key.pem", key), HOOK_URL=hook.url)
        monkeypatch.setenv("HOOK_URL", hook.url)
        port = free_port()
        proc = await spawn(tmp_path, env, "-vv", "--metrics-port", str(port), db=dsn)  # type: ignore[arg-type]
        # -vv logs every frame: read as it comes, or the pipe fills and the service blocks.
        reading = asyncio.gather(_read(proc.stdout), _read(proc.stderr))
        try:
            async with asyncio.timeout(20):
                while not await _count(postgres_db, "alerts"):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
            async with httpx.AsyncClient(timeout=2.0) as http:
                scraped = [
                    (await http.get(f"http://127.0.0.1:{port}{path}")).text
                    for path in ("/metrics", "/healthz")
                ]
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
            out, err = await reading
    assert proc.returncode == 0, err[-2000:]
    logs = out + err
    assert "127.0.0.1" in logs or "postgres" in logs  # the log does talk about the database
    outputs = [logs, *scraped]
    common = ["--trades", str(tmp_path / "trades.json"), "--rules", str(tmp_path / "rules.yaml")]
    for command in (["check"], ["status"], ["alerts"], ["history", TRADES["trades"][0]["ticker"]]):
        await asyncio.to_thread(main, [*command, *common, "--db", dsn])
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    assert "***" in outputs[-4]  # check shows the masked URL
    for text in outputs:
        assert SECRET not in text
    assert SECRET not in await _dump(postgres_db)


async def _read(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await stream.read()).decode(errors="replace")


async def _count(dsn: str, table: str) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except OSError:
        return 0
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def _dump(dsn: str) -> str:
    """Every text value of every watcher table, joined."""
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type = 'text'"
        )
        texts = []
        for table, column in columns:
            rows = await conn.fetch(f'SELECT "{column}" FROM "{table}"')
            texts.extend(str(row[0]) for row in rows)
        return "\n".join(texts)
    finally:
        await conn.close()
