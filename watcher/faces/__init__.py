"""The faces: ways for people to see and steer the watcher besides the command line.

- :mod:`watcher.faces.web`: the live dashboard (``watcher start --web``, ``watcher web``).
- :mod:`watcher.faces.telegram`: the chat bot (``control.telegram`` in rules.yaml).

Each face is imported only when it is switched on (by :func:`open_faces`, inside the function),
so a run without it loads none of its modules or libraries. Faces sit between ``app`` and
``ops`` in the layers: they use the read-outs of ``ops`` and the service's calls, never the
other way round. :mod:`watcher.faces.host` says what they see of the watcher.
"""

from __future__ import annotations

import contextlib

from watcher.faces.host import FaceHost

__all__ = ["FaceHost", "open_faces"]


async def open_faces(stack: contextlib.AsyncExitStack, host: FaceHost) -> None:
    """Start the faces the settings and rules switch on; ``stack`` stops them (before the
    service it was entered after)."""
    if host.settings.web is not None:
        from watcher.faces.web import serve_web

        await serve_web(stack, host)
    if host.rules.control.telegram is not None:
        from watcher.faces.telegram import serve_telegram

        await serve_telegram(stack, host)
