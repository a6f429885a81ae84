"""The Telegram bot's parts without a service: the ``control`` section of rules.yaml, the
``bot`` target in the outbox sender, the chat guard, the confirmations, the token mask, and
the face's life (it never polls while this instance stands by)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from watcher.cli import main
from watcher.notify.ports import SendStatus
from watcher.notify.sender import Sender
from watcher.rules import RulesError, parse_rules
from watcher.store.records import PendingDelivery
from watcher.store.sqlite_alerts import SQLiteAlertStore

from .conftest import MS
from .fake_telegram import FakeTelegram
from .support import alert_for, env_without_kalshi, poll
from .test_imports import CONSOLE_RULES, RUN_SERVICE, run_python
from .test_imports import TRADES as CONSOLE_TRADES

WAIT = 10_000 * MS
TOKEN = "123456789:TEST-secret_token-ABCdef"
ROOT = Path(__file__).resolve().parents[1]

CONTROL = """\
version: 1
timezone: UTC
defaults: {notify: [bot]}
control:
  telegram:
    token: ${WATCHER_TELEGRAM_BOT_TOKEN}
    chats: [987654321]
rules:
  - {name: wide, type: spread, min_cents: 8}
"""


def errors_of(text: str, **env: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(textwrap.dedent(text), env=env)
    return [str(error) for error in caught.value.errors]


# rules.yaml: control


def test_control_telegram_reads_the_token_and_chats_and_makes_the_bot_target() -> None:
    """`control.telegram` gives the token (hidden from repr and dumps), the chats (numbers or
    numeric strings, duplicates dropped) and the `bot` target for rules' `notify`."""
    config = parse_rules(CONTROL.replace("[987654321]", '[987654321, "-100200", 987654321]'),
                         env={"WATCHER_TELEGRAM_BOT_TOKEN": TOKEN})  # fmt: skip
    telegram = config.control.telegram
    assert telegram is not None and telegram.chats == (987654321, -100200)
    assert telegram.token.get_secret_value() == TOKEN
    assert config.targets_of(config.rules[0]) == ("bot",) and config.chat_targets == ("bot",)
    shown = f"{config!r} {telegram!r} {config.model_dump()} {config.control.describe()}"
    assert TOKEN not in shown and "987654321" not in repr(config.control.describe())
    assert config.control.describe() == "telegram bot for 2 chats"


ENV = {"WATCHER_TELEGRAM_BOT_TOKEN": TOKEN}
VAR = "${WATCHER_TELEGRAM_BOT_TOKEN}"


@pytest.mark.parametrize(
    ("old", "new", "env", "expected"),
    [
        ("", "", {}, "6:12: environment variable WATCHER_TELEGRAM_BOT_TOKEN is not set"),
        ("", "", {"WATCHER_TELEGRAM_BOT_TOKEN": ""}, "6:12: token: the bot token is empty"),
        ("", "", {"WATCHER_TELEGRAM_BOT_TOKEN": "tgram://a/b"}, "6:12: token: expected the"),
        (VAR, "'12345 secret'", {}, "6:12: token: expected the bot token from @BotFather"),
        ("chats: [987654321]", "chats: []", ENV, "7:12: chats: expected a non-empty list"),
        ("chats: [987654321]", "chats: [me]", ENV, "7:12: chats: expected a chat id (a whole"),
        ("chats: [987654321]", "chats: 5", ENV, "7:12: chats: expected a non-empty list"),
        ("chats: [987654321]", "chat: [1]", ENV, "6:5: missing key 'chats' in control.telegram"),
    ],
)
def test_control_errors_are_located_and_never_show_the_token(
    old: str, new: str, env: dict[str, str], expected: str
) -> None:
    """A wrong `control` section is reported at rules.yaml:LINE:COL; the token's value never
    appears in a message (only where it is)."""
    messages = errors_of(CONTROL.replace(old, new) if old else CONTROL, **env)
    assert messages[0].startswith(f"rules.yaml:{expected}"), messages
    assert not any(secret in m for m in messages for secret in (TOKEN, "tgram://a/b", "secret"))


def test_the_bot_target_needs_control_telegram_and_its_name_is_reserved() -> None:
    """`notify: [bot]` without control.telegram is an unknown target (saying what it needs);
    with it, a notify target of its own named `bot` is an error."""
    without = CONTROL.split("control:")[0] + "rules: []\n"
    assert errors_of(without) == [
        "rules.yaml:3:21: unknown notify target 'bot' (it needs control.telegram);"
        " defined targets: none"
    ]
    taken = CONTROL.replace("defaults:", "notify: {bot: 'json://localhost/x'}\ndefaults:")
    assert errors_of(taken, WATCHER_TELEGRAM_BOT_TOKEN=TOKEN) == [
        "rules.yaml:3:10: notify target 'bot' is the Telegram bot of control.telegram;"
        " give this target another name"
    ]


def test_watcher_check_names_the_bot_without_its_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watcher check` says "control: telegram bot for 1 chat" and never prints the token."""
    monkeypatch.delenv("KALSHI_API_KEY_ID", raising=False)
    monkeypatch.setenv("WATCHER_TELEGRAM_BOT_TOKEN", TOKEN)
    (tmp_path / "rules.yaml").write_text(CONTROL)
    files = ["--trades", str(ROOT / "trades.json.example"), "--rules", str(tmp_path / "rules.yaml")]
    code = main(["check", *files, "--db", str(tmp_path / "w.db")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "control: telegram bot for 1 chat" in out.out.splitlines()
    assert "notify targets: bot" in out.out.splitlines()
    assert TOKEN.split(":")[1] not in out.out + out.err


# The outbox sender and the bot target


class Recorder:
    """A TargetNotifier answering from a script and recording what it was given."""

    def __init__(self, *statuses: SendStatus) -> None:
        self.statuses = list(statuses)
        self.got: list[list[int]] = []

    async def deliver(self, items: Sequence[PendingDelivery]) -> tuple[SendStatus, str]:
        self.got.append([item.alert_id for item in items])
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return status, "" if status is SendStatus.DELIVERED else "scripted"


async def test_a_bot_delivery_waits_until_the_bot_is_attached_then_goes_through_it(
    tmp_path: Path,
) -> None:
    """An `awaiting` target with nothing attached is retried (not a config error); once the
    bot's notifier is attached its deliveries go through it, failures are retried, and after
    detaching they wait again; a target neither configured nor awaited is a config error."""
    store = await SQLiteAlertStore.open(tmp_path / "w.db")
    now = int(time.time() * 1000)
    try:
        await store.record([alert_for(1, ("bot", "gone"), now=now)], {}, now_ms=now)
        sender = Sender(store, {}, awaiting=("bot",), min_backoff=0.05, coalesce_window=0)
        async with sender:
            await poll(lambda: sender.stats.retried >= 1 and sender.stats.config_errors == 1)
            bot = Recorder(SendStatus.FAILED, SendStatus.DELIVERED)
            sender.attach("bot", bot)
            await poll(lambda: sender.stats.sent == 1)
            assert bot.got == [[1], [1]]
            sender.detach("bot")
            await store.record([alert_for(2, ("bot",), now=now)], {}, now_ms=now)
            sender.wake()
            await asyncio.sleep(0.2)
            assert bot.got == [[1], [1]] and sender.stats.sent == 1
        statuses = {r.id: [d.status for d in r.deliveries] for r in await store.recent()}
        assert sorted(statuses[1]) == ["config_error", "delivered"]
        assert statuses[2] == ["retrying"]
    finally:
        await store.close()


# The chat guard, the confirmations, the mask


def test_the_guard_drops_strangers_and_slows_a_chat_over_the_limit(caplog: Any) -> None:
    """A stranger is dropped (logged once); an allowed chat gets `limit` commands per window,
    then one "slow down", then nothing until the window has room again."""
    from watcher.faces.telegram.guard import ChatGuard, Verdict

    guard = ChatGuard(limit=3, window=60.0)
    caplog.set_level(logging.WARNING, "watcher.telegram")
    assert [guard.check(5, (1,), t) for t in (0, 1)] == [Verdict.DROP, Verdict.DROP]
    assert [r.getMessage() for r in caplog.records].count(
        "telegram: ignoring chat 5, which is not in control.telegram.chats (logged once)"
    ) == 1
    verdicts = [guard.check(1, (1,), t) for t in (0, 1, 2, 3, 4, 59.9, 60.5)]
    obey, slow, drop = Verdict.OBEY, Verdict.SLOW_DOWN, Verdict.DROP
    assert verdicts == [obey, obey, obey, slow, drop, drop, obey]


def test_a_confirmation_is_taken_once_by_its_chat_within_the_time_limit() -> None:
    """take() hands an order back once, only to the chat that asked, only within the TTL."""
    from watcher.faces.telegram.confirm import Confirmations, Pending

    async def act() -> str:
        return "done"

    pending = Confirmations(ttl=60.0)
    first = pending.ask(Pending(1, "buy", act, created=100.0))
    late = pending.ask(Pending(1, "buy", act, created=100.0))
    assert pending.take(first, 2, 101.0) is None  # another chat
    assert pending.take(first, 1, 159.9) is not None
    assert pending.take(first, 1, 159.9) is None  # pressed twice
    assert pending.take(late, 1, 160.0) is None  # too late
    assert pending.take("made-up", 1, 100.0) is None


def test_alert_buttons_know_a_position_alert_by_its_scope() -> None:
    """A position rule's key carries the scope TICKER#id: that alert gets "Close"."""
    from watcher.faces.telegram.notifier import alert_ref

    assert alert_ref("stop", "KX-1", "stop|KX-1#paper-0001|5").position == "KX-1#paper-0001"
    assert alert_ref("a|b", "KX-1", "a|b|KX-1#2|5").position == "KX-1#2"
    assert alert_ref("wide", "KX-1", "wide|KX-1|5").position is None


def test_the_token_filter_masks_messages_arguments_and_tracebacks() -> None:
    """A record naming the token, in its message, arguments or exception, is masked for
    every formatter."""
    from watcher.faces.telegram.wire import TokenFilter

    mask = TokenFilter(TOKEN)
    try:
        raise RuntimeError(f"https://x/bot{TOKEN}/getMe")
    except RuntimeError:
        record = logging.LogRecord("httpx", 20, "f", 1, "GET %s", (TOKEN,), sys.exc_info())
    assert mask.filter(record)
    text = logging.Formatter().format(record)
    assert TOKEN not in text and "GET ***" in text and "bot***/getMe" in text


def test_a_409_conflict_is_logged_at_most_once_a_minute_naming_the_cause(caplog: Any) -> None:
    """Two pollers end each other's polls, so 409s come between polls that work: one line
    names the likely cause (never the token), the next comes a minute later at the earliest
    with the count of those left untold, and one says when none was seen for a minute; other
    failures are still told once, and their end. A webhook's 409 is told apart."""
    from telegram.error import Conflict, NetworkError

    from watcher.faces.telegram.wire import ApiHealth

    now = [0.0]
    health = ApiHealth(TOKEN, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "watcher.telegram")
    other = Conflict("Conflict: terminated by other getUpdates request; make sure that only one")
    for t in (0, 1, 5, 30, 59.9):
        now[0] = t
        health.polling_failed(other)
        health.worked()
    health.polling_failed(NetworkError(f"https://x/bot{TOKEN}/getUpdates: refused"))
    health.worked()
    now[0] = 61
    health.polling_failed(other)
    now[0] = 120.9
    health.worked()
    now[0] = 121
    health.worked()
    health.polling_failed(Conflict("Conflict: can't use getUpdates method while webhook is active"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6, lines
    assert lines[0].startswith("telegram bot api: getUpdates: 409 Conflict: another program is")
    assert "Most likely a second watcher was started with the same token" in lines[0]
    assert lines[1:3] == [
        "telegram bot api failed, retrying: getUpdates: NetworkError: https://x/bot***/getUpdates:"
        " refused",
        "telegram bot api works again",
    ]
    assert "409 Conflict" in lines[3] and "; 4 more since the last report)" in lines[3]
    assert lines[4] == "telegram bot api: no 409 Conflict for 60 s"
    assert "a webhook is set for this bot token" in lines[5]
    assert health.conflicts == 7 and TOKEN not in caplog.text


async def test_a_poll_that_times_out_is_told_and_a_rejected_token_is_a_network_error(
    caplog: Any,
) -> None:
    """The transport tells ApiHealth about a getUpdates that timed out (python-telegram-bot's
    loop retries it at once without telling anyone), and turns a 401 to getUpdates into a
    network error the loop retries (an InvalidToken would end it); other methods keep
    InvalidToken's status."""
    from telegram.error import NetworkError, TimedOut

    from watcher.faces.telegram.wire import PLACEHOLDER, REJECTED, ApiHealth, TokenRequest

    caplog.set_level(logging.INFO, "watcher.telegram")
    health = ApiHealth(TOKEN)
    request = TokenRequest(TOKEN, health, read_timeout=0.2, connect_timeout=2.0)
    async with FakeTelegram(TOKEN) as api:
        await request.initialize()
        try:
            api.stall("")
            with pytest.raises(TimedOut):
                await request.do_request(f"{api.root}/bot{PLACEHOLDER}/getUpdates", "POST")
            api.unstall("")
            api.fail(401)
            with pytest.raises(NetworkError, match="rejected the token") as caught:
                await request.do_request(f"{api.root}/bot{PLACEHOLDER}/getUpdates", "POST")
            assert str(caught.value) == REJECTED
            assert (await request.do_request(f"{api.root}/bot{PLACEHOLDER}/getMe", "POST"))[
                0
            ] == 401
        finally:
            await request.shutdown()
    assert [r.getMessage() for r in caplog.records] == [
        "telegram bot api failed, retrying: getUpdates: timed out"
    ]


# The face's life


async def test_the_face_never_polls_while_this_instance_stands_by(tmp_path: Path) -> None:
    """With control.telegram but no service running here (a standby), the bot makes no request
    at all: only the active instance polls."""
    from watcher.faces import FaceHost, open_faces
    from watcher.settings import settings_from_env

    (tmp_path / "rules.yaml").write_text(CONTROL)
    async with FakeTelegram(TOKEN) as api:
        environ = {"WATCHER_TELEGRAM_BOT_TOKEN": TOKEN, "WATCHER_TELEGRAM_API_URL": api.root}
        settings = settings_from_env(
            trades=None, rules=str(tmp_path / "rules.yaml"), db=str(tmp_path / "w.db"),
            environ=environ,
        )  # fmt: skip
        rules = parse_rules(CONTROL, env=environ)
        async with contextlib.AsyncExitStack() as stack:
            await open_faces(stack, FaceHost(settings, rules))
            await asyncio.sleep(0.5)
        assert api.started == []


def test_a_run_without_control_imports_neither_the_bot_nor_telegram(tmp_path: Path) -> None:
    """A run whose rules have no `control` section never imports python-telegram-bot nor
    watcher.faces.telegram."""
    (tmp_path / "trades.json").write_text(json.dumps(CONSOLE_TRADES))
    (tmp_path / "rules.yaml").write_text(CONSOLE_RULES)
    result = run_python(RUN_SERVICE, str(tmp_path))
    modules = result["modules"]
    assert isinstance(modules, list) and result["alerts"]
    assert [m for m in modules if m == "telegram" or m.startswith("watcher.faces.telegram")] == []


def test_importing_the_bot_package_works_in_a_fresh_interpreter() -> None:
    """watcher.faces.telegram imports on its own (python-telegram-bot is installed)."""
    code = "import watcher.faces.telegram as t; print(t.DEFAULT_API_ROOT)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env_without_kalshi(), capture_output=True,
        text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "https://api.telegram.org"
