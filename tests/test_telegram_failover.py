"""The Telegram bot with two `watcher start` processes on one PostgreSQL database (issue 13:
"only the active one polls"): one fake Bot API (tests/fake_telegram.py, which ends a second
concurrent ``getUpdates`` with 409 Conflict as Telegram does) serves both, each on a root of
its own so every call names the instance that made it.

The standby makes no Bot API request at all; the active answers each command once; after the
active is SIGKILLed the standby takes the bot over, answers what was sent meanwhile, and a
Confirm press that the dead instance handled but had not yet confirmed to Telegram (Telegram
delivers it again) is answered "expired" and buys nothing twice. A lost lock and a SIGTERM hand
the bot over without two pollers at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.kalshi.sim.exchange import SimulatedExchange

from .fake_telegram import FakeTelegram, buttons
from .support import KEY_ID, T1, T2, TRADES, poll, watcher_env, write_key
from .test_failover import Instance, query, start, stop

TOKEN = "123456789:TEST-secret_token-ABCdef"
CHAT = 987654321
API_URL = "WATCHER_TELEGRAM_API_URL"
#: Seconds a step may take (process start, takeover); the whole test stays well under 20 s.
STEP = 15.0

RULES = """\
version: 1
timezone: UTC
control:
  telegram:
    token: ${WATCHER_TELEGRAM_BOT_TOKEN}
    chats: [987654321]
rules: []
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimulatedExchange, ed25519.Ed25519PrivateKey]]:
    key = ed25519.Ed25519PrivateKey.generate()
    async with SimulatedExchange(public_keys={KEY_ID: key.public_key()}, seed=7) as exchange:
        exchange.set_quote(T1, yes_bid="0.3800", yes_ask="0.4000", last="0.3900")
        exchange.set_quote(T2, yes_bid="0.6800", yes_ask="0.7000", last="0.6900")
        yield exchange, key


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as fake:
        yield fake


def env_for(base: dict[str, str], api: FakeTelegram, client: str) -> dict[str, str]:
    """One instance's environment: the bot on the fake's root for ``client``."""
    return {**base, API_URL: api.root_for(client)}


def sent_by(api: FakeTelegram, client: str) -> list[str]:
    """The texts of the messages ``client`` sent (answered 200), in order."""
    return [c.params["text"] for c in api.calls_of("sendMessage", client) if c.status == 200]


async def wait_polling(api: FakeTelegram, client: str) -> None:
    """Until ``client`` has a ``getUpdates`` in progress (the bot is up)."""
    await poll(lambda: api.polling == client, within=STEP)


def no_token(*instances: Instance) -> None:
    for instance in instances:
        assert TOKEN.split(":")[1] not in instance.log


async def test_only_the_active_polls_and_after_a_sigkill_the_standby_answers_each_update_once(
    workdir: Path, sim: Any, api: FakeTelegram, postgres_db: str
) -> None:
    """A polls, B (standing by) makes no Bot API request; /status and /buy are answered once,
    by A. A handles a Confirm press (buys) but dies before confirming it to Telegram. B takes
    over, answers the /help sent while nobody polled, answers the Confirm press Telegram
    delivers again "expired" (the order waited in A's memory: no second buy), and answers a
    command sent after the takeover once. No poll ever met another (no 409)."""
    exchange, key = sim
    base = watcher_env(exchange, write_key(workdir / "key.pem", key))
    base["WATCHER_TELEGRAM_BOT_TOKEN"] = TOKEN
    first = await start(workdir, env_for(base, api, "A"), postgres_db)
    second: Instance | None = None
    try:
        await wait_polling(api, "A")
        second = await start(workdir, env_for(base, api, "B"), postgres_db)
        await poll(lambda: re.search(r"standby: \S+ pid \d+ is active", second.log), STEP)

        status = await api.reply_to(CHAT, "/status", within=STEP)
        assert "<b>Positions</b>" in status["text"] and f"{T1} YES 10 @ 40¢" in status["text"]
        asked = await api.reply_to(CHAT, f"/buy {T1} yes 3", within=STEP)
        assert asked["text"].startswith(f"buy 3 YES {T1} at the ask?")
        assert buttons(asked) == ["Confirm", "Cancel"]
        await asyncio.sleep(0.5)  # a second answer or a request from B would show by now
        assert len(sent_by(api, "A")) == 2 and "B" not in api.clients()

        # A handles the press, but its next getUpdates (which would confirm it) never arrives
        await wait_polling(api, "A")
        api.stall("A")
        press = api.presses(CHAT, asked, "Confirm")
        key_of = (CHAT, asked["message_id"])
        await poll(lambda: "bought" in api.messages[key_of]["text"], STEP)
        assert api.messages[key_of]["text"].startswith(f"bought 3 YES {T1} at ")
        assert "B" not in api.clients()

        first.proc.kill()
        await first.proc.wait()
        api.says(CHAT, "/help")  # nobody polls now
        await wait_polling(api, "B")
        await poll(lambda: api.answers(press)[1:], STEP)
        first_answer, again = api.calls_of("answerCallbackQuery")
        assert (first_answer.client, first_answer.params["text"]) == ("A", "placing the order")
        assert (again.client, again.params["text"]) == ("B", "expired")
        await poll(lambda: len(sent_by(api, "B")) == 1, STEP)
        assert sent_by(api, "B")[0].startswith("/status: positions")  # the /help of the gap

        alerts = await api.reply_to(CHAT, "/alerts", within=STEP)
        assert "alert" in alerts["text"].lower()
        await asyncio.sleep(0.5)
        assert len(sent_by(api, "A")) == 2 and len(sent_by(api, "B")) == 2
        assert len(api.calls_of("sendMessage")) == 4  # four things said, four answers
        assert [c for c in api.calls if c.status == 409] == []  # never two polls at once
    finally:
        await stop(first, signal.SIGKILL)
        if second is not None:
            code = await stop(second, signal.SIGTERM)
    assert code == 0, second.log
    assert "Conflict" not in second.log, second.log
    assert "a stale button press" in second.log  # Telegram refused B's answer: only logged
    no_token(first, second)
    paper = [t for t in json.loads((workdir / "trades.json").read_text())["trades"]
             if t.get("source") == "paper"]  # fmt: skip
    assert len(paper) == 1 and paper[0]["ticker"] == T1
    fills = await query(postgres_db, "select count(*) from paper_fills")
    assert fills[0][0] == 1


async def test_a_lost_lock_and_a_sigterm_hand_the_bot_over_without_two_pollers(
    workdir: Path, sim: Any, api: FakeTelegram, postgres_db: str
) -> None:
    """A's lock session is ended by the server: A stops polling (no request after that) and
    B, taking over, polls; a SIGTERM of B hands the bot back to A (B's last poll confirms what
    it fetched). Each command is answered once, by the active, and no poll ever met another."""
    exchange, key = sim
    base = watcher_env(exchange, write_key(workdir / "key.pem", key))
    base["WATCHER_TELEGRAM_BOT_TOKEN"] = TOKEN
    first = await start(workdir, env_for(base, api, "A"), postgres_db)
    second: Instance | None = None
    try:
        await wait_polling(api, "A")
        second = await start(workdir, env_for(base, api, "B"), postgres_db)
        await poll(lambda: "standby: " in second.log, STEP)
        assert (await api.reply_to(CHAT, "/help", within=STEP))["text"]
        assert "B" not in api.clients()

        lock_session = (
            "select pg_terminate_backend(pid) from pg_stat_activity"
            f" where application_name like 'watcher % pid {first.proc.pid}'"
        )
        assert await query(postgres_db, lock_session)
        await wait_polling(api, "B")
        await poll(lambda: re.search(r"standby: \S+ pid \d+ is active", first.log), STEP)
        a_calls = len([a for a in api.arrivals if a[0] == "A"])
        assert (await api.reply_to(CHAT, "/help", within=STEP))["text"]
        await asyncio.sleep(0.5)
        assert len([a for a in api.arrivals if a[0] == "A"]) == a_calls  # A stands by: silent
        assert [len(sent_by(api, c)) for c in "AB"] == [1, 1]

        assert await stop(second, signal.SIGTERM) == 0, second.log
        await wait_polling(api, "A")
        assert (await api.reply_to(CHAT, "/help", within=STEP))["text"]
        await asyncio.sleep(0.5)
        assert [len(sent_by(api, c)) for c in "AB"] == [2, 1]
        assert [c for c in api.calls if c.status == 409] == []
    finally:
        if second is not None:
            await stop(second, signal.SIGKILL)
        code = await stop(first, signal.SIGTERM)
    assert code == 0, first.log
    no_token(first, second)
