"""``python -m soak --minutes N``: run the soak, print the report, exit 1 if a bound fails."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

from soak.faults import FAULTS
from soak.report import as_json, check, render
from soak.runner import run_soak

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, report; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="length (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--json", type=Path, default=Path("soak-report.json"), help="where the JSON report goes"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (DB, logs)")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=sorted(FAULTS),
        metavar="FAULT",
        help=f"leave out a fault (repeatable): {', '.join(sorted(FAULTS))}",
    )
    args = parser.parse_args(argv)
    if args.minutes < 1:
        parser.error(f"--minutes must be at least 1, but got {args.minutes:g}")
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="watcher-soak-"))
    try:
        faults = [name for name in sorted(FAULTS) if name not in args.without]
        result = asyncio.run(run_soak(args.minutes, seed=seed, workdir=workdir, faults=faults))
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    bounds = check(result)
    print(render(result, bounds))
    args.json.write_text(json.dumps(as_json(result, bounds), indent=2) + "\n")
    print(f"\nJSON report: {args.json}")
    return 0 if all(b.ok for b in bounds) else 1


if __name__ == "__main__":
    sys.exit(main())
