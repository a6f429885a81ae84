"""`watcher notify-test` and `watcher alerts` as a user runs them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from watcher.cli import main
from watcher.domain.alert import Alert
from watcher.notify.outbox import Outbox

from .support import HttpRecorder

RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${HOOK_URL}
rules: []
"""


async def test_notify_test_sends_and_prints_each_result(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """notify-test delivers a test alert to the target and prints one line per service."""
    (tmp_path / "rules.yaml").write_text(RULES)
    async with HttpRecorder() as hook:
        monkeypatch.setenv("HOOK_URL", hook.url.replace("json://", "json://user:secret@"))
        code = await asyncio.to_thread(
            main, ["notify-test", "--rules", str(tmp_path / "rules.yaml")]
        )
    out = capsys.readouterr()
    assert code == 0, out
    assert len(hook.delivered) == 1
    assert "hook" in out.out
    assert "secret" not in out.out + out.err


async def test_notify_test_exits_1_when_the_target_fails(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A target that answers 500 is reported as failed with exit code 1."""
    (tmp_path / "rules.yaml").write_text(RULES)
    async with HttpRecorder(statuses=[500]) as hook:
        monkeypatch.setenv("HOOK_URL", hook.url)
        code = await asyncio.to_thread(
            main, ["notify-test", "hook", "--rules", str(tmp_path / "rules.yaml")]
        )
    assert code == 1


def test_notify_test_with_an_unknown_target_names_the_targets(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """An unknown target name is a usage error listing the configured ones."""
    (tmp_path / "rules.yaml").write_text(RULES)
    monkeypatch.setenv("HOOK_URL", "json://127.0.0.1:9/x")
    code = main(["notify-test", "phone", "--rules", str(tmp_path / "rules.yaml")])
    assert code == 2
    assert "unknown target 'phone'; targets: hook" in capsys.readouterr().err


def test_alerts_lists_recent_alerts_with_delivery_status(tmp_path: Path, capsys) -> None:
    """`watcher alerts` shows each alert's status and per-target delivery, or JSON lines."""
    db = tmp_path / "w.db"
    with Outbox(db) as outbox:
        outbox.record(
            [
                Alert(
                    key="a",
                    rule="tight spread",
                    market_ticker="KXA",
                    severity="warning",
                    title="KXA · tight spread",
                    body="spread 1¢",
                    targets=("hook",),
                    at_ms=1,
                ),
                Alert(
                    key="b",
                    rule="stop loss",
                    market_ticker="KXB",
                    severity="critical",
                    title="KXB · stop loss",
                    body="P&L -$12",
                    targets=(),
                    at_ms=2,
                ),
            ],
            now_ms=1_700_000_000_000,
        )
    assert main(["alerts", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "pending" in text and "[warning] KXA · tight spread" in text and "hook=pending" in text
    assert "console" in text and "KXB · stop loss" in text
    assert main(["alerts", "--db", str(db), "--status", "console", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["market_ticker"] for line in lines] == ["KXB"]
