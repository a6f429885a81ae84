"""Secrets hygiene and safe parsing (issue 6, security).

- The private key: a public key is refused, loose permissions are warned about, and neither
  the key nor its password shows up in a log line, an error, a repr or the database.
- Apprise URLs: passwords, header values and query tokens never leave the process except to
  the service they belong to: not in logs (even at -vv), `watcher check`, `notify-test`,
  `alerts`, exceptions, reprs, alert bodies or the database.
- rules.yaml goes through a safe loader only; message templates only substitute values.
- The database is private when watcher creates it and keeps the user's mode when it exists;
  a settlement written back into trades.json keeps the file's mode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import signal
import sqlite3
import stat
import sys
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.app import Endpoint, Service
from watcher.cli import main
from watcher.domain.trades_file import load_positions
from watcher.errors import KeyFileError
from watcher.kalshi.auth import KalshiSigner, load_private_key
from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.notify import Outbox, Sender, mask_url
from watcher.rules import RulesError, parse_rules
from watcher.rules.template import render
from watcher.service.writeback import write_settlement
from watcher.settings import settings_from_env
from watcher.store.schema import open_database
from watcher.store.sqlite_alerts import SQLiteAlertStore

from .support import (
    KEY_ID,
    RULES,
    T1,
    TRADES,
    WAIT,
    HttpRecorder,
    atomic_write,
    count,
    finish,
    poll,
    spawn,
    watcher_env,
    write_key,
)

PASSWORD = "correct-horse-battery-staple-7"
#: The issue's example URL, plus a query token (``-token`` is sent in the request line).
SECRET_URL = "json://user:secret@127.0.0.1:{port}/hook/?-token=qrysecret&+X-Api-Key=topsecret"
#: Every secret above contains this word; nothing else watcher prints does.
SECRET = "secret"


def key_material(key: ed25519.Ed25519PrivateKey) -> list[str]:
    """Texts that would betray the private key: its raw bytes and its PEM body lines."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [raw.hex(), base64.b64encode(raw).decode(), *body]


def assert_clean(texts: dict[str, str], *forbidden: str) -> None:
    for where, text in texts.items():
        for secret in forbidden:
            assert secret not in text, (
                f"{secret!r} leaked into {where}: ...{_around(text, secret)}..."
            )


def _around(text: str, secret: str) -> str:
    at = text.find(secret)
    return text[max(0, at - 80) : at + 80]


def dump_database(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return "\n".join(conn.iterdump())


# The private key


def test_public_key_is_refused_by_check_and_start(tmp_path, monkeypatch, capsys):
    """A public key given as the private key: `watcher check` lists it as a problem and
    `watcher start` refuses to run, both saying what the file holds."""
    public = tmp_path / "public.pem"
    public.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    public.chmod(0o600)
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(RULES)
    monkeypatch.setenv("KALSHI_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PATH", str(public))
    monkeypatch.setenv("HOOK_URL", "json://127.0.0.1:9/")
    files = ["--trades", str(tmp_path / "trades.json"), "--rules", str(tmp_path / "rules.yaml")]
    assert main(["check", *files]) == 1
    assert f"{public}: {public} holds a public key" in capsys.readouterr().err
    assert main(["start", *files, "--db", str(tmp_path / "w.db")]) == 1
    assert "holds a public key; Kalshi needs the private key" in capsys.readouterr().err
    assert not (tmp_path / "w.db").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_key_readable_by_others_is_warned_about_with_the_fix(tmp_path, mode, caplog):
    """A key file readable by group or others loads, with a warning naming its mode and the
    chmod that fixes it."""
    path = write_key(tmp_path / "key.pem", ed25519.Ed25519PrivateKey.generate())
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="watcher.auth"):
        load_private_key(path)
    assert f"(mode {mode:o}); run: chmod 600 {path}" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="watcher.auth"):
        load_private_key(path)
    assert caplog.text == ""


async def test_key_and_password_are_in_no_error_and_no_repr(tmp_path):
    """Wrong, missing or needless passwords give errors naming the file only; reprs of
    everything that holds the key or the password show neither."""
    key = ed25519.Ed25519PrivateKey.generate()
    encrypted = write_key(tmp_path / "enc.pem", key, PASSWORD)
    plain = write_key(tmp_path / "plain.pem", key)
    errors = []
    for path, password in [(encrypted, "wrong-" + PASSWORD), (encrypted, None), (plain, PASSWORD)]:
        with pytest.raises(KeyFileError) as caught:
            KalshiSigner.from_file(KEY_ID, path, password)
        errors.append(str(caught.value))
        assert str(path) in errors[-1]
    signer = KalshiSigner.from_file(KEY_ID, encrypted, PASSWORD)
    settings = settings_from_env(
        trades=str(tmp_path / "t.json"),
        rules=None,
        db=str(tmp_path / "w.db"),
        environ={
            "KALSHI_API_KEY_ID": KEY_ID,
            "KALSHI_PRIVATE_KEY_PATH": str(encrypted),
            "KALSHI_PRIVATE_KEY_PASSWORD": PASSWORD,
        },
    )
    (tmp_path / "t.json").write_text(json.dumps(TRADES))
    service = Service(
        settings,
        portfolio=load_positions(settings.trades_path),
        rules=parse_rules(RULES, env={"HOOK_URL": "json://127.0.0.1:9/"}),
        endpoint=Endpoint("ws://127.0.0.1:9/trade-api/ws/v2", "http://127.0.0.1:9", signer),
    )
    client = KalshiWebSocketClient(
        KEY_ID, str(encrypted), private_key_password=PASSWORD, url="ws://127.0.0.1:9/"
    )
    texts = {f"error {n}": text for n, text in enumerate(errors)} | {
        "signer": repr(signer),
        "settings": repr(settings),
        "service": repr(service),
        "client": repr(client),
        "headers": json.dumps(signer.websocket_headers()),
    }
    assert_clean(texts, PASSWORD, *key_material(key))


# Apprise URLs and the key, end to end


async def test_a_full_run_leaks_no_credential_into_any_output_or_the_database(tmp_path):
    """`watcher start -vv` with an encrypted key and a notify URL full of secrets (whose
    first send fails), a rules edit that misplaces the URL, then `watcher check -vv`,
    `notify-test -vv` and `alerts`: no URL secret, key or password in any output, alert,
    delivery error or database row, though the target did receive them."""
    key = ed25519.Ed25519PrivateKey.generate()
    key_path = write_key(tmp_path / "key.pem", key, PASSWORD)
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    trades_before = (tmp_path / "trades.json").stat()
    db = tmp_path / "w.db"
    outputs: dict[str, str] = {}
    async with (
        SimulatedExchange(public_keys={KEY_ID: key.public_key()}, tick_interval=0.02) as sim,
        HttpRecorder(statuses=[500]) as hook,
    ):
        url = SECRET_URL.format(port=hook.port)
        good = RULES.replace("  hook: ${HOOK_URL}\n", f"  hook: ${{HOOK_URL}}\n  inline: {url}\n")
        (tmp_path / "rules.yaml").write_text(good)
        env = watcher_env(sim, key_path, HOOK_URL=url, KALSHI_PRIVATE_KEY_PASSWORD=PASSWORD)
        proc = await spawn(tmp_path, env, "-vv")
        try:
            await poll(
                lambda: (
                    count(db, "select count(*) from alert_deliveries where last_error is not null")
                    >= 1
                )
            )
            misplaced = good.replace("max_cents: 10}", f"max_cents: 10, notify: ['{url}']}}")
            atomic_write(tmp_path / "rules.yaml", misplaced)
            await poll(lambda: count(db, "select count(*) from alerts where rule = 'config'") == 1)
        finally:
            outputs["start stdout"], outputs["start stderr"] = await finish(proc, signal.SIGTERM)
        assert proc.returncode == 0, outputs["start stderr"]
        outputs |= await cli(tmp_path, env, "check", "-vv")  # the misplaced URL: an error
        atomic_write(tmp_path / "rules.yaml", good)
        outputs |= await cli(tmp_path, env, "notify-test", "-vv")
        outputs |= await cli(tmp_path, env, "alerts", "--json")
        outputs |= await cli(tmp_path, env, "alerts")
    outputs["database"] = dump_database(db)
    # The secrets did reach the service they are for, and the outputs are real ones.
    assert {r.headers["x-api-key"] for r in hook.requests} == {"topsecret"}
    assert any("token=qrysecret" in r.path for r in hook.requests)
    assert "unknown notify target 'json://***'" in outputs["check stderr"]
    assert "inline: JSON json://user:****@127.0.0.1" in outputs["notify-test stdout"]
    assert '"last_error": "JSON: ' in outputs["alerts --json stdout"]
    assert 'POST /hook/?token=*** HTTP/1.1" 500' in outputs["start stderr"]
    assert_clean(outputs, SECRET, PASSWORD, *key_material(key))
    trades_after = (tmp_path / "trades.json").stat()  # no write-back: never rewritten
    assert (trades_after.st_ino, trades_after.st_mtime_ns, trades_after.st_mode) == (
        trades_before.st_ino, trades_before.st_mtime_ns, trades_before.st_mode,
    )  # fmt: skip


async def cli(workdir: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    """Run one `watcher` command on the workdir's files; its stdout and stderr by name."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher.cli", *args,
        "--trades", str(workdir / "trades.json"), "--rules", str(workdir / "rules.yaml"),
        "--db", str(workdir / "w.db"),
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    name = " ".join(a for a in args if a != "-vv")
    return {f"{name} stdout": out.decode(), f"{name} stderr": err.decode()}


@pytest.mark.parametrize(
    "text",
    [
        "notify: {hook: 'URL'}\nrules:\n  - {name: a, type: stale, after: 1m, notify: ['URL']}\n",
        "notify: {hook: 'URL'}\ndefaults: {notify: ['URL']}\n",
        "notify: 'URL'\n",
        "notify: {'URL': 5}\n",
        "notify: {'URL': a, 'URL': b}\n",
        "notify: {hook: 'URL'}\n'URL': 1\n",
        "timezone: 'URL'\n",
        "rules:\n  - {name: 'URL', type: spread, max_cents: 2}\n  - {name: 'URL', type: stale}\n",
    ],
    ids=["rule-target", "default-target", "notify-value", "target-key", "duplicate", "top-key",
         "timezone", "rule-name"],
)  # fmt: skip
def test_a_misplaced_url_is_masked_in_every_rules_error(text):
    """rules.yaml errors echo what was written, but never a URL's secrets: a URL where a
    name or another value belongs is shown as ``scheme://***``."""
    url = SECRET_URL.format(port=8080)
    with pytest.raises(RulesError) as caught:
        parse_rules("version: 1\n" + text.replace("URL", url), env={})
    messages = [error.located() for error in caught.value.errors]
    assert any("json://***" in message for message in messages), messages
    assert_clean({"errors": "\n".join(messages), "str": str(caught.value)}, SECRET, "8080")


async def test_reprs_and_masked_urls_hide_url_credentials(tmp_path):
    """Reprs of the rules, the sender and the outbox, and mask_url(), hide every secret."""
    url = SECRET_URL.format(port=8080)
    config = parse_rules(f"version: 1\nnotify: {{hook: '{url}'}}\nrules: []\n", env={})
    with Outbox(tmp_path / "w.db") as outbox:
        async with Sender(SQLiteAlertStore(outbox, owned=False), config.notify) as sender:
            texts = {
                "rules": repr(config),
                "rules str": str(config),
                "sender": repr(sender),
                "outbox": repr(outbox),
                "masked": mask_url(url),
            }
    # (The host may be masked too: redaction learns tokens from every URL seen so far.)
    assert re.match(r"json://user:\*{4}@\S+:8080/hook/\?", texts["masked"]), texts["masked"]
    assert_clean(texts, SECRET)


# YAML and templates


def test_yaml_python_tags_are_located_errors_and_never_run(tmp_path):
    """A ``!!python/...`` tag is refused with its line and column, and nothing is executed or
    constructed (the payload would create a folder)."""
    target = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.mkdir", "!!python/object/new:os.mkdir"):
        text = f"version: 1\nrules: {tag} ['{target}']\n"
        with pytest.raises(RulesError) as caught:
            parse_rules(text, env={})
        assert caught.value.errors[0].located() == (
            f"rules.yaml:2:8: unsupported tag 'tag:yaml.org,2002:{tag[2:]}'"
        )
    with pytest.raises(RulesError, match=r"^rules.yaml:1:10: .*python/name:os\.system"):
        parse_rules("version: !!python/name:os.system 1\n", env={})
    assert not target.exists()


def test_the_package_only_ever_uses_safe_yaml_loading():
    """No module calls yaml.load/unsafe_load or names an unsafe loader; the rules loader's
    own loader derives from SafeLoader."""
    from watcher.rules import yamlsource

    package = Path(yamlsource.__file__).parents[1]
    unsafe = re.compile(
        r"yaml\.(unsafe_load|load|load_all|full_load)\s*\(|\b(Unsafe|Full)?Loader\b(?<!SafeLoader)"
    )
    found = [
        f"{path.relative_to(package)}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for line in path.read_text().splitlines()
        if "yaml" in line and unsafe.search(line) and "SafeLoader" not in line
    ]
    assert found == []
    assert issubclass(yamlsource._Loader, __import__("yaml").SafeLoader)


@pytest.mark.parametrize(
    "template",
    [
        "{market.__class__}",
        "{market.__init__.__globals__}",
        "{price[0]}",
        "{price!r}",
        "{price:>{width}}",
        "{0}",
        "{}",
        "{__import__}",
        "{market.upper}",
    ],
)
def test_templates_cannot_reach_attributes_or_run_code(template):
    """A message template is refused, with its location, unless every placeholder is a
    plain known name."""
    text = "version: 1\nrules:\n  - name: a\n    type: spread\n    max_cents: 2\n"
    text += f"    message: '{template}'\n"
    with pytest.raises(RulesError) as caught:
        parse_rules(text, env={})
    [error] = caught.value.errors
    assert (error.line, error.col) == (6, 14)
    assert "message template" in error.message


def test_rendered_values_are_never_interpreted_again():
    """Values put into a template are final text: braces inside a market title or any
    other value are printed as they are, not looked up."""
    values = {"market": "{rule} {market.__class__} {{x}}", "rule": "r"}
    assert render("{market} / {rule} / {title}", values) == (
        "{rule} {market.__class__} {{x}} / r / n/a"
    )


# Files and permissions


def test_new_database_and_folder_are_private_even_under_a_permissive_umask(tmp_path):
    """Watcher creates its folder 0700 and the database (and its WAL and shared memory)
    0600, whatever the umask."""
    db = tmp_path / "data" / "watcher.db"
    old = os.umask(0)
    try:
        open_database(db).close()
        with closing(open_database(db)) as conn:
            conn.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert modes == {"watcher.db": 0o600, "watcher.db-wal": 0o600, "watcher.db-shm": 0o600}


def test_existing_database_keeps_the_users_mode(tmp_path):
    """A database the user made group-readable stays so (and its WAL follows it)."""
    db = tmp_path / "watcher.db"
    open_database(db).close()
    db.chmod(0o640)
    for name in ("watcher.db-wal", "watcher.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with closing(open_database(db)) as conn:
        conn.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
        wal = stat.S_IMODE((tmp_path / "watcher.db-wal").stat().st_mode)
    assert stat.S_IMODE(db.stat().st_mode) == 0o640 and wal == 0o640


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_settlement_write_back_keeps_the_mode_of_trades_json(tmp_path, mode):
    """Writing a settlement into trades.json replaces the file with one of the same mode,
    and the backup gets that mode too, whatever the umask."""
    path = tmp_path / "trades.json"
    path.write_text(json.dumps(TRADES, indent=2) + "\n")
    path.chmod(mode)
    old = os.umask(0)
    try:
        updated = write_settlement(
            path, ticker=T1, result="yes", yes_payout_micros=1_000_000, settled_at_ms=0
        )
    finally:
        os.umask(old)
    assert updated == [1]
    assert json.loads(path.read_text())["trades"][0]["status"] == "SETTLED"
    backup = path.with_name("trades.json.bak")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(backup.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trades.json", "trades.json.bak"]
