"""Heavy optional libraries stay out of a run that does not use them (issue 5: peak RSS).

Apprise (~3 MB resident on top of the service), prometheus_client (~1.3 MB) and the simulator
are imported on first use. Each test runs a fresh interpreter, because this one has imported
everything already, and reads which modules it ended up with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import MS
from .support import env_without_kalshi

WAIT = 30_000 * MS
ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("apprise", "prometheus_client", "watcher.kalshi.sim.exchange")

# Every alert goes to the console: the only target's URL variable is unset.
CONSOLE_RULES = """\
version: 1
timezone: UTC
notify:
  phone: ${WATCHER_TEST_PHONE_URL:-}
defaults:
  notify: [phone]
  cooldown: 1h
rules:
  - {name: any spread, type: spread, max_cents: 100}
"""

TRADES = {
    "trades": [{"ticker": "KXCPI-26JAN-T0.3", "side": "YES", "entry_price": 40, "contracts": 10}]
}

# Runs the real service against the built-in simulator until a tick is stored and an alert
# recorded, stops it like SIGTERM would, then reports the modules it imported.
RUN_SERVICE = """
import asyncio, gc, json, sqlite3, sys
from pathlib import Path

from watcher.app import run_service
from watcher.settings import settings_from_env

folder = Path(sys.argv[1])
db = folder / "w.db"


def count(table):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


async def main():
    settings = settings_from_env(
        trades=str(folder / "trades.json"), rules=str(folder / "rules.yaml"), db=str(db),
        simulate=True,
    )
    stop = asyncio.Event()
    before = gc.get_threshold()
    run = asyncio.create_task(run_service(settings, stop=stop))
    while not (count("tickers") and count("alerts")) and not run.done():
        await asyncio.sleep(0.02)
    during = gc.get_threshold()
    stop.set()
    await run
    print(json.dumps({
        "alerts": count("alerts"), "modules": sorted(sys.modules),
        "gc": [before, during, gc.get_threshold()],
    }))


asyncio.run(main())
"""


def run_python(code: str, *args: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env_without_kalshi(),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loaded(modules: object, names: tuple[str, ...] = OPTIONAL) -> list[str]:
    assert isinstance(modules, list)
    return [name for name in names if name in modules]


def test_importing_the_service_and_cli_loads_no_optional_library() -> None:
    """`import watcher.cli, watcher.app` imports neither Apprise, prometheus_client nor the
    simulator."""
    code = "import json, sys, watcher.app, watcher.cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert loaded(json.loads(done.stdout)) == []


def test_console_only_run_never_imports_apprise_or_prometheus(tmp_path: Path) -> None:
    """A run whose alerts all go to the console, without --metrics-port, on SQLite, stores
    ticks and records alerts without ever importing Apprise, prometheus_client or asyncpg."""
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(CONSOLE_RULES)
    result = run_python(RUN_SERVICE, str(tmp_path))
    assert result["alerts"]
    assert loaded(result["modules"], ("apprise", "prometheus_client", "asyncpg")) == []


def test_metrics_import_prometheus_client_only_to_render() -> None:
    """Recording metrics needs no prometheus_client; rendering them imports it."""
    code = """
import json, sys
from watcher.ops.metrics import Metrics, bind_service
metrics = Metrics()
bind_service(metrics, alerts_fired=lambda: 3)
metrics.observe_message_age(1_000, 1_250)
metrics.record_job("rules-clock")
before = "prometheus_client" in sys.modules
text = metrics.render().decode()
print(json.dumps({"before": before, "after": "prometheus_client" in sys.modules, "text": text}))
"""
    result = run_python(code)
    assert result["before"] is False
    assert result["after"] is True
    text = result["text"]
    assert isinstance(text, str)
    assert "watcher_alerts_fired_total 3.0" in text
    assert 'watcher_job_runs_total{job="rules-clock"} 1.0' in text


def test_apprise_is_imported_when_a_url_is_first_parsed() -> None:
    """The notify package imports Apprise only once a URL has to be parsed."""
    code = """
import json, sys
from watcher.notify import mask_url, normalize_targets
normalize_targets({"phone": "json://localhost:1/hook"})
before = "apprise" in sys.modules
masked = mask_url("json://user:hunter22@localhost:1/hook")
print(json.dumps({"before": before, "after": "apprise" in sys.modules, "masked": masked}))
"""
    result = run_python(code)
    assert result["before"] is False
    assert result["after"] is True
    assert "hunter22" not in str(result["masked"])


def test_the_service_raises_the_young_gc_threshold_only_while_it_runs(tmp_path: Path) -> None:
    """While `run_service` runs, young collections wait for 20,000 allocations (the hot path
    frees by reference counting); afterwards the process has its own thresholds back."""
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(CONSOLE_RULES)
    result = run_python(RUN_SERVICE, str(tmp_path))
    thresholds = result["gc"]
    assert isinstance(thresholds, list)
    before, during, after = thresholds
    assert during == [20_000, 20, 20]
    assert after == before != during
