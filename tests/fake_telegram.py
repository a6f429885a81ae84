"""A fake Telegram Bot API over real HTTP on loopback, for the bot's tests.

It serves ``/bot<token>/<method>`` as Telegram documents it (form-encoded bodies whose values
are JSON, answers ``{"ok": true, "result": ...}``): ``getMe``, ``deleteWebhook``, ``getUpdates``
(long polling with ``timeout`` and ``offset``: updates below the offset are confirmed and
dropped), ``sendMessage``, ``answerCallbackQuery``, ``editMessageText`` and
``editMessageReplyMarkup``. It records every call, lets a test play the user (:meth:`says`,
:meth:`presses`), and can fail: answer an HTTP status to everything (:meth:`fail`, e.g. 500, or
409 to ``getUpdates`` only) or refuse connections altogether (:meth:`refuse`, :meth:`accept`).

Like Telegram, it allows one ``getUpdates`` at a time per token: a new one ends the one in
progress with 409 Conflict ("terminated by other getUpdates request"), so two pollers keep
ending each other's polls. A callback query answered a second time gets 400, as on Telegram.

Several clients (watcher processes) can share it: each is given its own root,
:meth:`root_for` ``("A")`` (``{root}/A``, so requests arrive as ``/A/bot<token>/<method>``),
and every call records the client it came from. :meth:`stall` holds one client's
``getUpdates`` requests unanswered and without effect (their offsets confirm nothing), as if
they never reached Telegram: what that client fetched last stays unconfirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["BOT_USER", "Call", "FakeTelegram"]

BOT_USER = {
    "id": 4242,
    "is_bot": True,
    "first_name": "Watcher",
    "username": "watcher_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
_STRINGS = {"text", "callback_query_id", "parse_mode", "url", "secret_token"}
_REASONS = {
    401: "Unauthorized",
    400: "Bad Request: query is too old and response timeout expired or query ID is invalid",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot"
    " instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True)
class Call:
    """One request the fake answered: the method, its parameters, the token in the path, the
    HTTP status it answered and the client it came from (``""`` on the plain root)."""

    method: str
    params: dict[str, Any]
    token: str
    status: int
    client: str = ""


@dataclass(eq=False)
class _Poll:
    """A ``getUpdates`` in progress; ``ended`` once a newer one terminated it."""

    client: str
    ended: bool = False


@dataclass
class FakeTelegram:
    """The fake Bot API for ``token``; ``async with`` serves it on 127.0.0.1 (port 0)."""

    token: str
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    failing: tuple[int, frozenset[str] | None] | None = None  # (status, methods or all)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _news: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _port: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _closing: bool = False
    started: list[str] = field(default_factory=list)  # methods, as requests arrive
    arrivals: list[tuple[str, str]] = field(default_factory=list)  # (client, method), likewise
    stalled: set[str] = field(default_factory=set)  # clients whose getUpdates are held
    _poll: _Poll | None = None  # the getUpdates in progress
    _answered: set[str] = field(default_factory=set)  # callback query ids answered

    async def __aenter__(self) -> FakeTelegram:
        await self.accept()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.refuse()

    @property
    def root(self) -> str:
        """The Bot API root to give the watcher (``WATCHER_TELEGRAM_API_URL``)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def polling(self) -> str | None:
        """The client whose ``getUpdates`` is in progress, if any."""
        return self._poll.client if self._poll is not None else None

    def root_for(self, client: str) -> str:
        """The Bot API root for one client: its calls are recorded with ``client``."""
        return f"{self.root}/{client}"

    # Failures

    def fail(self, status: int = 500, *, methods: tuple[str, ...] | None = None) -> None:
        """Answer ``status`` to every request (to ``methods`` only, if given) until
        :meth:`heal`."""
        self.failing = (status, frozenset(methods) if methods else None)
        self._news.set()  # a long poll in progress answers at once

    def heal(self) -> None:
        self.failing = None

    def stall(self, client: str) -> None:
        """Hold ``client``'s next ``getUpdates`` requests (until it disconnects or
        :meth:`unstall`): they confirm nothing and get no answer."""
        self.stalled.add(client)

    def unstall(self, client: str) -> None:
        self.stalled.discard(client)
        self._news.set()

    async def refuse(self) -> None:
        """Stop listening and cut every open connection (connections are refused)."""
        if self._server is not None:
            self._closing = True
            self._news.set()  # a long poll in progress ends at once
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
            self._closing = False

    async def accept(self) -> None:
        """Listen again, on the same port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    # The user

    def says(self, chat_id: int, text: str) -> int:
        """A user in ``chat_id`` sends ``text`` (a ``/command`` gets its entity); the update id."""
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": _user(chat_id),
            "text": text,
        }
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self._push({"message": message})

    def presses(self, chat_id: int, message: dict[str, Any], label: str) -> str:
        """A user in ``chat_id`` presses the button ``label`` of ``message`` (as sent); the
        callback query id."""
        data = button_data(message, label)
        query_id = f"q{next(self._ids)}"
        stored = self.messages.get((chat_id, message["message_id"]), message)
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": _user(chat_id),
                    "message": stored,
                    "chat_instance": str(chat_id),
                    "data": data,
                }
            }
        )
        return query_id

    # What the bot did

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """The messages sent (to ``chat_id``), as stored (edits applied), in order."""
        return [m for (chat, _), m in self.messages.items() if chat_id in (None, chat)]

    def answers(self, query_id: str) -> list[dict[str, Any]]:
        """The ``answerCallbackQuery`` calls for one press."""
        return [
            c.params
            for c in self.calls
            if c.method == "answerCallbackQuery" and c.params.get("callback_query_id") == query_id
        ]

    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c.method == method)

    def calls_of(self, method: str, client: str | None = None) -> list[Call]:
        """The calls of ``method`` (from ``client``), in order."""
        return [c for c in self.calls if c.method == method and client in (None, c.client)]

    def clients(self) -> set[str]:
        """The clients that made any request (answered or not)."""
        return {client for client, _ in self.arrivals}

    async def wait_for(self, found: Callable[[], Any], within: float = 10.0) -> Any:
        """Wait until ``found()`` returns something true, and return it."""
        async with asyncio.timeout(within):
            while not (value := found()):  # noqa: ASYNC110 - set by the server's handlers
                await asyncio.sleep(0.02)
        return value

    async def reply_to(self, chat_id: int, text: str, within: float = 10.0) -> dict[str, Any]:
        """The user says ``text``; wait for the next message the bot sends to the chat."""
        before = len(self.sent(chat_id))
        self.says(chat_id, text)
        found = await self.wait_for(lambda: self.sent(chat_id)[before:], within)
        return dict(found[0])

    # Private methods

    def _push(self, update: dict[str, Any]) -> int:
        update_id = next(self._ids)
        self._updates.append({"update_id": update_id, **update})
        self._news.set()
        return update_id

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {
                k.lower(): v for k, _, v in (line.partition(": ") for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = head[0].split(" ")[1]
            answered = await self._answer(path, _params(headers, body), reader)
            if answered is None:  # the client hung up before its answer
                return
            status, answer = answered
            data = json.dumps(answer).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(
        self, path: str, params: dict[str, Any], reader: asyncio.StreamReader
    ) -> tuple[int, dict[str, Any]] | None:
        client, _, rest = path.partition("/bot")
        token, _, method = rest.partition("/")
        client = client.strip("/")
        self.started.append(method)
        self.arrivals.append((client, method))
        status = self._status(token, method)
        if status == 200 and method == "getUpdates" and client in self.stalled:
            await self._stalled(client, reader)
            return None
        if status == 200 and method == "getUpdates":
            result: Any
            status, result = await self._get_updates(client, params, reader)
            if status == 0:  # the client hung up: nobody to answer
                return None
            if status == 200:
                status = self._status(token, method)  # it may have failed meanwhile
        elif status == 200:
            result = self._call(method, params)
            status = 404 if result is None else 200
            if method == "answerCallbackQuery":
                status = self._answer_once(params)
        self.calls.append(Call(method, params, token, status, client))
        if status != 200:
            reason = _REASONS.get(status, "Error")
            return status, {"ok": False, "error_code": status, "description": reason}
        return 200, {"ok": True, "result": result}

    def _status(self, token: str, method: str) -> int:
        if token != self.token:
            return 401
        if self.failing is not None:
            status, methods = self.failing
            if methods is None or method in methods:
                return status
        return 200

    async def _get_updates(
        self, client: str, params: dict[str, Any], reader: asyncio.StreamReader
    ) -> tuple[int, Any]:
        """Telegram's long poll: a newer ``getUpdates`` ends this one with 409; a client that
        hangs up ends it unanswered (status 0)."""
        if self._poll is not None:
            self._poll.ended = True  # "terminated by other getUpdates request"
            self._news.set()
        poll = self._poll = _Poll(client)
        try:
            offset = params.get("offset")
            if isinstance(offset, int):
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            deadline = time.monotonic() + float(params.get("timeout") or 0)
            gone = await self._wait(
                lambda: bool(self._updates or poll.ended or self.failing), reader, deadline
            )
            if gone:
                return 0, None
            if poll.ended:
                return 409, None
            return 200, list(self._updates)
        finally:
            if self._poll is poll:
                self._poll = None

    async def _stalled(self, client: str, reader: asyncio.StreamReader) -> None:
        """Hold a stalled client's request until it hangs up or is let through."""
        await self._wait(lambda: client not in self.stalled, reader, None)

    async def _wait(
        self, done: Callable[[], bool], reader: asyncio.StreamReader, deadline: float | None
    ) -> bool:
        """Wait until ``done()``, the deadline or closing; True if the client hung up first."""
        gone = asyncio.ensure_future(reader.read(1))  # b"" once the client has hung up
        try:
            while not (done() or self._closing or gone.done()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._news.clear()
                news = asyncio.ensure_future(self._news.wait())
                await asyncio.wait({news, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                news.cancel()
            return gone.done()
        finally:
            gone.cancel()

    def _answer_once(self, params: dict[str, Any]) -> int:
        """A callback query can be answered once; Telegram refuses a second answer (400)."""
        query_id = str(params.get("callback_query_id"))
        if query_id in self._answered:
            return 400
        self._answered.add(query_id)
        return 200

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method in ("deleteWebhook", "answerCallbackQuery"):
            return True
        if method == "sendMessage":
            return self._send(params)
        if method in ("editMessageText", "editMessageReplyMarkup"):
            message = self.messages.get((int(params["chat_id"]), int(params["message_id"])))
            if message is None:
                return None
            if method == "editMessageText":
                message["text"] = params["text"]
            markup = params.get("reply_markup")
            if markup or method == "editMessageReplyMarkup":
                message["reply_markup"] = markup or {"inline_keyboard": []}
            return message
        return None

    def _send(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            "text": params["text"],
            "parse_mode": params.get("parse_mode"),
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id, message["message_id"])] = message
        return message


def button_data(message: dict[str, Any], label: str) -> str:
    """The callback data of the button ``label`` of a sent message."""
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    for row in rows:
        for button in row:
            if button["text"] == label:
                return str(button["callback_data"])
    labels = [button["text"] for row in rows for button in row]
    raise AssertionError(f"no button {label!r} in {labels}")


def buttons(message: dict[str, Any]) -> list[str]:
    """The labels of a sent message's buttons."""
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return [button["text"] for row in rows for button in row]


def _user(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "is_bot": False, "first_name": "Trader"}


def _params(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """A form-encoded (or JSON) body as values: JSON-encoded ones decoded."""
    if not body:
        return {}
    if headers.get("content-type", "").startswith("application/json"):
        loaded: dict[str, Any] = json.loads(body)
        return loaded
    params: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        if key in _STRINGS:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params
