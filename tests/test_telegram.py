"""The Telegram bot (issue 13), driven end to end: `run_service` against the simulator, the bot
against an in-repo fake Bot API over real HTTP (tests/fake_telegram.py). Conversations: status,
a stranger, mute/unmute around an alert, a confirmed paper buy, an alert's Close button, and the
Bot API failing while the feed keeps storing ticks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.app import run_service
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.settings import settings_from_env

from .conftest import MS
from .fake_telegram import FakeTelegram, buttons
from .support import T1, T2, TRADES, atomic_write, count, rows, watcher_env, write_key

WAIT = 10_000 * MS
TOKEN = "123456789:TEST-secret_token-ABCdef"
CHAT, STRANGER = 987654321, 55555

RULES = """\
version: 1
timezone: UTC
defaults: {notify: [bot], cooldown: 0s}
control:
  telegram:
    token: ${WATCHER_TELEGRAM_BOT_TOKEN}
    chats: [987654321]
rules:
  - {name: wide, type: spread, min_cents: 8, markets: [KXCPI-26JAN-T0.3]}
"""
POSITION_RULES = """\
version: 1
timezone: UTC
defaults: {notify: [bot], cooldown: 0s}
control:
  telegram:
    token: ${WATCHER_TELEGRAM_BOT_TOKEN}
    chats: [987654321]
rules:
  - {name: moved, type: move_from_entry, cents: 10, markets: [KXCPI-26JAN-T0.3]}
"""


@dataclass
class World:
    folder: Path
    sim: SimulatedExchange
    bot: FakeTelegram
    stop: asyncio.Event
    run: asyncio.Task[str]

    @property
    def db(self) -> Path:
        return self.folder / "w.db"

    def trades(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = json.loads((self.folder / "trades.json").read_text())[
            "trades"
        ]
        return entries

    def ticks(self, ticker: str | None = None) -> int:
        if ticker is None:
            return count(self.db, "SELECT count(*) FROM tickers")
        return count(self.db, "SELECT count(*) FROM tickers WHERE market_ticker = ?", ticker)

    def alert_statuses(self, rule: str) -> list[str]:
        return [s for (s,) in rows(self.db, "SELECT status FROM alerts WHERE rule = ?", rule)]

    def wide(self) -> None:
        self.sim.set_quote(T1, yes_bid="0.3000", yes_ask="0.4000", last="0.3500")

    def narrow(self) -> None:
        self.sim.set_quote(T1, yes_bid="0.3800", yes_ask="0.4000", last="0.3900")


@contextlib.asynccontextmanager
async def world(folder: Path, rules: str = RULES, api_token: str = TOKEN) -> AsyncIterator[World]:
    """The service on the simulator with the bot on the fake Bot API (which knows the bot by
    ``api_token``); stopped like SIGTERM."""
    (folder / "trades.json").write_text(json.dumps(TRADES))
    (folder / "rules.yaml").write_text(rules)
    key = ed25519.Ed25519PrivateKey.generate()
    key_path = write_key(folder / "key.pem", key)
    async with (
        SimulatedExchange(public_keys={"faults-key": key.public_key()}, seed=7) as sim,
        FakeTelegram(api_token) as bot,
    ):
        sim.set_quote(T1, yes_bid="0.3800", yes_ask="0.4000", last="0.3900")
        sim.set_quote(T2, yes_bid="0.6800", yes_ask="0.7000", last="0.6900")
        env = watcher_env(
            sim, key_path, WATCHER_TELEGRAM_BOT_TOKEN=TOKEN, WATCHER_TELEGRAM_API_URL=bot.root
        )
        settings = settings_from_env(
            trades=str(folder / "trades.json"),
            rules=str(folder / "rules.yaml"),
            db=str(folder / "w.db"),
            environ=env,
        )
        stop = asyncio.Event()
        run = asyncio.create_task(run_service(settings, stop=stop))
        try:
            for ticker in (T1, T2):
                await sim.wait_subscribed("ticker", ticker, timeout=WAIT)
            sim.set_quote(T1, yes_bid="0.3800", yes_ask="0.4000", last="0.3900")
            sim.set_quote(T2, yes_bid="0.6800", yes_ask="0.7000", last="0.6900")
            await bot.wait_for(lambda: "getUpdates" in bot.started or bot.calls, WAIT)
            yield World(folder, sim, bot, stop, run)
        finally:
            stop.set()
            await asyncio.wait_for(run, WAIT)


async def test_status_is_answered_and_a_stranger_gets_nothing(tmp_path: Path, caplog: Any) -> None:
    """/status lists the positions with side, mark and P&L and the feed's health; /help lists
    the commands; a chat not on the list gets no answer, changes nothing and is logged once;
    requests go to {root}/bot{token}/{method}; polling stops with the service."""
    caplog.set_level(logging.INFO)
    async with world(tmp_path) as w:
        await w.bot.wait_for(lambda: w.ticks(T1) and w.ticks(T2), WAIT)
        status = await w.bot.reply_to(CHAT, "/status")
        text = status["text"]
        assert f"{T1} YES 10 @ 40¢ · mark 39¢ · -$0.10" in text
        assert f"{T2} NO 5 @ 30¢" in text
        assert "<b>Feed</b>" in text and "connected" in text and "not muted, not paused" in text
        assert "/buy TICKER yes|no QTY [LIMIT]" in (await w.bot.reply_to(CHAT, "/help"))["text"]

        before = len(w.bot.calls)
        for _ in range(2):
            w.bot.says(STRANGER, "/pause")
        w.bot.says(CHAT, "/alerts")  # answered after the stranger's messages were dropped
        await w.bot.wait_for(lambda: len(w.bot.sent(CHAT)) == 3, WAIT)
        assert w.bot.sent(STRANGER) == []
        assert not [c for c in w.bot.calls[before:] if c.params.get("chat_id") == STRANGER]
        assert count(w.db, "SELECT count(*) FROM paused") == 0
    ignored = [r for r in caplog.records if "ignoring chat 55555" in r.getMessage()]
    assert len(ignored) == 1
    assert {c.token for c in w.bot.calls} == {TOKEN}
    polls = len(w.bot.started)
    await asyncio.sleep(0.3)
    assert len(w.bot.started) == polls  # the service stopped: nobody polls


async def test_chats_follow_a_reloaded_rules_yaml_and_a_flooding_chat_is_slowed(
    tmp_path: Path,
) -> None:
    """A chat added to control.telegram.chats while the service runs is obeyed from then on;
    a chat sending more than 20 commands a minute gets one "slow down" and nothing more."""
    async with world(tmp_path) as w:
        atomic_write(w.folder / "rules.yaml", RULES.replace("[987654321]", "[987654321, 55555]"))

        async def answered() -> bool:
            w.bot.says(STRANGER, "/help")
            await asyncio.sleep(0.2)
            return bool(w.bot.sent(STRANGER))

        async with asyncio.timeout(WAIT):
            while not await answered():
                pass
        for _ in range(25):
            w.bot.says(CHAT, "/help")
        await w.bot.wait_for(lambda: any("slow down" in m["text"] for m in w.bot.sent(CHAT)))
        await asyncio.sleep(0.3)
        texts = [m["text"] for m in w.bot.sent(CHAT)]
        assert len(texts) == 21 and texts[-1].startswith("slow down")


async def test_a_muted_alert_is_suppressed_and_after_unmute_delivered_with_buttons(
    tmp_path: Path,
) -> None:
    """/mute 1h MARKET holds the rule's alert back (recorded suppressed, nothing sent);
    /unmute lets the next one through the outbox to the chat, with a "Mute 1h" button, whose
    press mutes that rule on that market."""
    async with world(tmp_path) as w:
        muted = await w.bot.reply_to(CHAT, f"/mute 1h {T1}")
        assert muted["text"].startswith(f"muted {T1} until ")
        w.wide()
        await w.bot.wait_for(lambda: w.alert_statuses("wide") == ["suppressed"], WAIT)
        w.narrow()
        unmuted = await w.bot.reply_to(CHAT, f"/unmute {T1}")
        assert unmuted["text"] == f"ended 1 mute of {T1}"
        sent = len(w.bot.sent(CHAT))
        w.wide()
        alert = (await w.bot.wait_for(lambda: w.bot.sent(CHAT)[sent:], WAIT))[0]
        assert f"{T1} · wide" in alert["text"] and buttons(alert) == ["Mute 1h"]
        await w.bot.wait_for(lambda: w.alert_statuses("wide")[-1:] == ["delivered"], WAIT)

        press = w.bot.presses(CHAT, alert, "Mute 1h")
        reply = await w.bot.wait_for(lambda: w.bot.sent(CHAT)[sent + 1 :], WAIT)
        assert reply[0]["text"].startswith(f"muted wide@{T1} until ")
        assert w.bot.answers(press)[0]["text"] == "muting for 1h"


async def test_a_paper_buy_is_placed_once_after_confirm_and_written_to_trades_json(
    tmp_path: Path,
) -> None:
    """/buy asks for Confirm; Cancel places nothing; Confirm buys at the ask through the paper
    desk (trades.json gets the entry) and says so in the desk's words; a second press of the
    same button is answered "expired" and buys nothing more."""
    async with world(tmp_path) as w:
        asked = await w.bot.reply_to(CHAT, f"/buy {T1} yes 3")
        assert asked["text"].startswith(f"buy 3 YES {T1} at the ask?")
        assert buttons(asked) == ["Confirm", "Cancel"]
        cancel = await w.bot.reply_to(CHAT, f"/buy {T1} yes 4")
        w.bot.presses(CHAT, cancel, "Cancel")
        await w.bot.wait_for(lambda: w.bot.messages[(CHAT, cancel["message_id"])]["text"]
                             .startswith("cancelled"), WAIT)  # fmt: skip

        w.bot.presses(CHAT, asked, "Confirm")
        done = await w.bot.wait_for(
            lambda: "bought" in w.bot.messages[(CHAT, asked["message_id"])]["text"], WAIT
        )
        assert done
        assert w.bot.messages[(CHAT, asked["message_id"])]["text"].startswith(
            f"bought 3 YES {T1} at 40¢"
        )
        again = w.bot.presses(CHAT, asked, "Confirm")
        await w.bot.wait_for(lambda: w.bot.answers(again), WAIT)
        assert w.bot.answers(again)[0]["text"] == "expired"
        usage = await w.bot.reply_to(CHAT, "/buy nonsense")
        assert usage["text"].startswith("usage: /buy TICKER yes|no QTY [LIMIT]")
    bought = [t for t in w.trades() if t.get("source") == "paper"]
    assert len(bought) == 1 and bought[0]["ticker"] == T1 and bought[0]["side"] == "YES"


async def test_the_close_button_of_a_position_alert_closes_it_after_confirm(
    tmp_path: Path,
) -> None:
    """A position rule's alert to the bot carries "Close"; pressing it asks for Confirm, and
    Confirm sells the position at the bid through the paper desk."""
    async with world(tmp_path, POSITION_RULES) as w:
        w.sim.set_quote(T1, yes_bid="0.5200", yes_ask="0.5400", last="0.5300")
        alert = (await w.bot.wait_for(lambda: w.bot.sent(CHAT), WAIT))[0]
        assert buttons(alert) == ["Mute 1h", "Close"]
        w.bot.presses(CHAT, alert, "Close")
        ask = (await w.bot.wait_for(lambda: w.bot.sent(CHAT)[1:], WAIT))[0]
        assert ask["text"].startswith(f"close all of {T1}#1 at the bid?")
        w.bot.presses(CHAT, ask, "Confirm")
        await w.bot.wait_for(
            lambda: "closed" in w.bot.messages[(CHAT, ask["message_id"])]["text"], WAIT
        )
        assert w.bot.messages[(CHAT, ask["message_id"])]["text"].startswith(
            f"closed 10 YES {T1} at 52¢"
        )
    assert w.trades()[0]["status"] == "CLOSED"


async def test_a_bot_api_outage_is_retried_while_the_feed_stores_ticks_and_no_log_has_the_token(
    tmp_path: Path, caplog: Any
) -> None:
    """The Bot API answering 500, then refusing connections, then 409 Conflict: the feed keeps
    storing ticks, the alert to the bot waits in the outbox and is delivered once the API is
    back, the bot answers again, and no log record (httpx's request lines included) carries
    the token."""
    for name in (None, "httpx", "httpcore", "telegram"):  # another test may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    async with world(tmp_path) as w:
        w.bot.fail(500)
        w.wide()
        await w.bot.wait_for(lambda: any(c.status == 500 for c in w.bot.calls), WAIT)
        await w.bot.refuse()
        ticks = w.ticks()
        w.narrow()
        refused = "getUpdates: NetworkError: httpx.ConnectError"
        await w.bot.wait_for(lambda: refused in caplog.text, WAIT)
        w.wide()
        await w.bot.wait_for(lambda: w.ticks() > ticks, WAIT)
        assert w.bot.sent(CHAT) == []
        w.bot.heal()
        w.bot.fail(409, methods=("getUpdates",))
        await w.bot.accept()
        await w.bot.wait_for(lambda: any(c.status == 409 for c in w.bot.calls), WAIT)
        w.bot.heal()
        delivered = ["delivered", "delivered"]  # the wide spread before and after the refusal
        await w.bot.wait_for(lambda: w.alert_statuses("wide") == delivered, WAIT)
        assert [f"{T1} · wide" in m["text"] for m in w.bot.sent(CHAT)] == [True, True]
        status = await w.bot.reply_to(CHAT, "/status", within=WAIT)
        assert "<b>Positions</b>" in status["text"]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "telegram bot api failed, retrying" in text
    assert "409 Conflict" in text and "HTTP Request" in text
    assert TOKEN not in text and TOKEN.split(":")[1] not in caplog.text


async def test_a_rejected_token_is_retried_and_logged_without_the_token(
    tmp_path: Path, caplog: Any
) -> None:
    """A token the Bot API rejects (401) is reported once, without the token, and retried;
    the feed keeps storing ticks meanwhile."""
    for name in (None, "httpx", "httpcore", "telegram"):  # another test may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    async with world(tmp_path, api_token="42:another-bot") as w:
        await w.bot.wait_for(lambda: "rejected the token" in caplog.text, WAIT)
        await w.bot.wait_for(lambda: w.ticks(T1), WAIT)
        assert w.bot.calls[0].method == "getMe" and w.bot.calls[0].status == 401
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


async def test_a_token_rejected_while_polling_is_retried_and_polling_goes_on(
    tmp_path: Path, caplog: Any
) -> None:
    """getUpdates answering 401 for a while (python-telegram-bot would end its polling loop
    for good on an InvalidToken): the bot logs it once, keeps retrying with backoff, and
    answers again once the Bot API accepts the token; the feed never stops."""
    caplog.set_level(logging.INFO)
    async with world(tmp_path) as w:
        await w.bot.wait_for(lambda: w.bot.polling == "", WAIT)
        w.bot.fail(401, methods=("getUpdates",))
        await w.bot.wait_for(lambda: w.bot.count("getUpdates") and any(
            c.status == 401 for c in w.bot.calls_of("getUpdates")), WAIT)  # fmt: skip
        ticks = w.ticks()
        w.wide()
        await w.bot.wait_for(lambda: w.ticks() > ticks, WAIT)
        w.bot.heal()
        status = await w.bot.reply_to(CHAT, "/status", within=WAIT)
        assert "<b>Positions</b>" in status["text"]
    rejected = [r for r in caplog.records if "rejected the token" in r.getMessage()]
    assert len(rejected) == 1 and rejected[0].levelno == logging.ERROR
    assert TOKEN.split(":")[1] not in caplog.text


async def test_stopping_while_the_bot_api_hangs_is_quick(tmp_path: Path) -> None:
    """The Bot API accepts connections but never answers getUpdates: the service still stops
    within a few seconds (the bot's last poll, which would confirm the fetched updates, is given
    up), so a SIGTERM hands the lock over without waiting for Telegram."""
    async with world(tmp_path) as w:
        await w.bot.wait_for(lambda: w.bot.polling == "", WAIT)
        w.bot.stall("")
        w.bot.says(CHAT, "/help")  # ends the poll in progress; the next one hangs
        await w.bot.wait_for(lambda: w.bot.sent(CHAT), WAIT)
        await asyncio.sleep(0.2)
        began = asyncio.get_running_loop().time()
        w.stop.set()
        await asyncio.wait_for(w.run, WAIT)
        took = asyncio.get_running_loop().time() - began
    assert took < 5.0, took


async def test_another_poller_with_the_same_token_is_logged_once_naming_the_likely_cause(
    tmp_path: Path, caplog: Any
) -> None:
    """Another program polls with the same token (a second watcher started by mistake on
    another database): Telegram ends one poll when the next arrives, so the bot gets 409s. It
    says so once (at most once a minute), naming the likely cause and never the token, retries
    with backoff, and answers again once the other poller has gone."""
    caplog.set_level(logging.INFO)
    async with world(tmp_path) as w:
        await w.bot.wait_for(lambda: w.bot.polling == "", WAIT)
        url = f"{w.bot.root_for('other')}/bot{TOKEN}/getUpdates"

        def conflicts() -> int:
            return sum(1 for c in w.bot.calls_of("getUpdates", "") if c.status == 409)

        async with httpx.AsyncClient(timeout=5) as other, asyncio.timeout(WAIT):
            while conflicts() < 2:
                await other.post(url, data={"timeout": "1"})
        status = await w.bot.reply_to(CHAT, "/status", within=WAIT)
        assert "<b>Positions</b>" in status["text"]
    told = [r for r in caplog.records if "409 Conflict" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.WARNING, [r.getMessage() for r in told]
    assert "a second watcher was started with the same token on another database" in (
        told[0].getMessage()
    )
    loud = [r for r in caplog.records if r.name.startswith("telegram") and r.levelno >= 30]
    assert loud == []  # python-telegram-bot's own loop stays quiet about it
    assert TOKEN.split(":")[1] not in caplog.text
