"""The Telegram bot face (issue 13): ask the watcher, silence it, and trade on paper from a phone.

Switched on by ``control.telegram`` in rules.yaml and imported only then (by
:func:`watcher.faces.open_faces`), so a run without it loads neither this package nor
python-telegram-bot. The modules:

- :mod:`~watcher.faces.telegram.face`: its life (polls only while this instance runs the
  service; retries the Bot API with backoff);
- :mod:`~watcher.faces.telegram.bot`: the python-telegram-bot application and the guard;
- :mod:`~watcher.faces.telegram.guard`: allowed chats and the per-chat rate limit;
- :mod:`~watcher.faces.telegram.commands`, :mod:`~watcher.faces.telegram.presses`,
  :mod:`~watcher.faces.telegram.orders`: commands, button presses, paper orders (Confirm first,
  :mod:`~watcher.faces.telegram.confirm`);
- :mod:`~watcher.faces.telegram.notifier`: the ``bot`` notify target, with buttons;
- :mod:`~watcher.faces.telegram.replies`: the words;
- :mod:`~watcher.faces.telegram.wire`: the transport that keeps the token out of every text.
"""

from __future__ import annotations

import contextlib

from watcher.faces.host import FaceHost
from watcher.faces.telegram.face import DEFAULT_API_ROOT, TelegramFace

__all__ = ["API_URL_VAR", "DEFAULT_API_ROOT", "TelegramFace", "serve_telegram"]

#: The environment variable that overrides the Bot API root (a local fake in tests).
API_URL_VAR = "WATCHER_TELEGRAM_API_URL"


async def serve_telegram(stack: contextlib.AsyncExitStack, host: FaceHost) -> TelegramFace:
    """Run the bot of ``host.rules.control.telegram`` until ``stack`` closes."""
    telegram = host.rules.control.telegram
    if telegram is None:
        raise ValueError("serve_telegram needs control.telegram in rules.yaml")
    root = host.settings.env.get(API_URL_VAR) or DEFAULT_API_ROOT
    face = TelegramFace(host, token=telegram.token.get_secret_value(), api_root=root)
    return await stack.enter_async_context(face)
