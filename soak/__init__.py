"""The soak test of watcher: a long run against the simulator with random faults from the
fault matrix, checked against resource and loss bounds (issue 6).

``python -m soak --minutes 30`` (``make soak``; CI runs ``--minutes 2``) starts the simulated
exchange and a local webhook in this process, runs the service under test in a child process
(:mod:`soak.child`), injects faults (:mod:`soak.faults`), restarts the child with SIGTERM and
SIGKILL near the end, and prints a table and a JSON report (:mod:`soak.report`). It exits 1
when a bound is violated:

* RSS grows by less than 10 MB after the warm-up;
* the asyncio task count and the open file descriptors stay flat;
* every tick the service received is stored, except in a SIGKILL window (which may lose at
  most one flush interval) and all alerts fired are delivered by the end.
"""

__all__: list[str] = []
