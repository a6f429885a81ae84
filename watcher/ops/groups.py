"""Commands defined outside :mod:`watcher.cli`, which registers them all at once.

``cli.py`` stays within the 400-line module limit that way: a new group is a module of
``ops/`` and one entry here.
"""

from __future__ import annotations

from watcher.ops.controls_cli import CONTROL_COMMANDS
from watcher.ops.dbcopy import db_group
from watcher.ops.paper_cli import paper_group
from watcher.ops.sim_cli import simulate

__all__ = ["GROUPS"]

#: ``watcher db`` (ops.dbcopy), ``paper`` (ops.paper_cli), ``simulate`` (ops.sim_cli) and
#: ``mute``, ``unmute``, ``pause``, ``resume`` (ops.controls_cli).
GROUPS = [db_group, paper_group, simulate, *CONTROL_COMMANDS]
