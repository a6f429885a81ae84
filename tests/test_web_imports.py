"""The dashboard costs nothing when it is off: a `watcher start` without --web imports none of
Starlette, uvicorn, sse-starlette, Jinja2 or watcher.faces.web (as test_imports.py proves for
Apprise and prometheus_client)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .test_imports import CONSOLE_RULES, ROOT, RUN_SERVICE, TRADES, WAIT, loaded, run_python

#: What only the dashboard needs.
WEB = ("starlette", "uvicorn", "sse_starlette", "jinja2", "watcher.faces.web")


def test_importing_the_cli_loads_nothing_of_the_dashboard() -> None:
    """`import watcher.cli, watcher.app` (which registers `watcher web`) loads no web library."""
    code = "import json, sys, watcher.app, watcher.cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert loaded(json.loads(done.stdout), WEB) == []


def test_a_run_without_web_never_imports_the_dashboard(tmp_path: Path) -> None:
    """The real service against the simulator, without --web, stores ticks and records
    alerts without importing any module of the dashboard."""
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(CONSOLE_RULES)
    result = run_python(RUN_SERVICE, str(tmp_path))
    assert result["alerts"]
    assert loaded(result["modules"], WEB) == []
