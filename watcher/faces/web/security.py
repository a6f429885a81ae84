"""The dashboard's guard: the token, CSRF, and the security headers on every response.

- **Token.** With ``WATCHER_WEB_TOKEN`` set, every request must carry it: an
  ``Authorization: Bearer <token>`` header, or the session cookie that ``/login?token=<token>``
  sets (HttpOnly, SameSite=Strict; it holds an HMAC of the token, not the token). A wrong or
  missing token gets 401. Every comparison is :func:`hmac.compare_digest`.
- **Host.** Without a token the dashboard binds loopback only, and answers only requests whose
  ``Host`` is a loopback name: a web page elsewhere cannot reach it by DNS rebinding.
- **CSRF.** Every browser gets a random ``watcher_csrf`` cookie (SameSite=Strict); pages put
  the same value in each form. A POST must send it back as the ``csrf`` form field or an
  ``X-CSRF-Token`` header (:func:`require_csrf`), else 403 (double submit: another site can
  neither read the cookie nor set it).
- **Flash.** What an action did, or why it was refused, reaches the next page in a
  short-lived cookie (:func:`set_flash`, :func:`read_flash`), never in the URL: a link cannot
  make the dashboard show a message.
- **Headers.** A Content-Security-Policy without inline script or style and with
  ``frame-ancestors 'none'``; ``nosniff``; no referrer; no caching of pages and API answers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "FLASH_COOKIE",
    "SESSION_COOKIE",
    "Guard",
    "clear_flash",
    "form_fields",
    "read_flash",
    "require_csrf",
    "session_value",
    "set_flash",
]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'none'"
)
SESSION_COOKIE = "watcher_session"
CSRF_COOKIE = "watcher_csrf"
CSRF_HEADER = "x-csrf-token"
FLASH_COOKIE = "watcher_flash"
#: The longest message a flash carries, and how long it waits for the next page (seconds).
FLASH_CHARS = 300
FLASH_AGE_S = 60
#: The largest form body a POST may send.
MAX_FORM_BYTES = 16_384
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
_UNAUTHORIZED = (
    "unauthorized: send the dashboard token (WATCHER_WEB_TOKEN) as 'Authorization: Bearer"
    " <token>', or open /login?token=<token> once in this browser\n"
)


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token (the token itself never leaves)."""
    return hmac.new(token.encode(), b"watcher dashboard session", hashlib.sha256).hexdigest()


async def require_csrf(request: Request) -> None:
    """Refuse (403) a POST whose ``csrf`` form field or ``X-CSRF-Token`` header is not the
    browser's ``watcher_csrf`` cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        sent = (await form_fields(request)).get("csrf", "")
    if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (the pages' forms), the
    first value of each; 413 beyond :data:`MAX_FORM_BYTES`."""
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def set_flash(response: Response, kind: str, text: str) -> None:
    """Leave ``text`` for the next page this browser shows; ``kind`` is ``done`` or ``error``."""
    data = json.dumps({"kind": kind, "text": text[:FLASH_CHARS]}).encode()
    value = base64.urlsafe_b64encode(data).decode().rstrip("=")
    response.set_cookie(
        FLASH_COOKIE, value, max_age=FLASH_AGE_S, path="/", httponly=True, samesite="strict"
    )


def read_flash(request: Request) -> dict[str, str] | None:
    """The message :func:`set_flash` left (``{"kind", "text"}``), or None."""
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") not in ("done", "error"):
        return None
    return {"kind": data["kind"], "text": str(data.get("text", ""))[:FLASH_CHARS]}


def clear_flash(response: Response) -> None:
    """The message has been shown: forget it."""
    response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")


class Guard:
    """ASGI middleware in front of the whole dashboard (see the module docstring).

    Args:
        app: the dashboard.
        token: the token every request must carry, or None (loopback only, no token).
    """

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self._token = token
        self._session = session_value(token) if token else None

    def __repr__(self) -> str:
        return f"<Guard token={'set' if self._token else 'none'}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        csrf = _cookie(headers, CSRF_COOKIE)
        fresh = None if csrf else secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf"] = csrf or fresh
        await self.app(scope, receive, _with_headers(send, fresh))

    # Private methods

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        """The answer to a request that may not go on (wrong host, login, no token), else None."""
        if self._token is None:
            if _hostname(headers.get("host", "")) not in LOOPBACK_NAMES:
                return PlainTextResponse("this dashboard answers on loopback names only\n", 421)
        if scope["path"] == "/login":
            return self._login(scope)
        if self._token is not None and not self._authorized(headers):
            return PlainTextResponse(
                _UNAUTHORIZED, 401, headers={"www-authenticate": "Bearer", **_HEADERS}
            )
        return None

    def _authorized(self, headers: Headers) -> bool:
        assert self._token is not None and self._session is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token.encode()
        ):
            return True
        cookie = _cookie(headers, SESSION_COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._session.encode())

    def _login(self, scope: Scope) -> Response:
        """``/login?token=…``: set the session cookie and go to the overview (401 if wrong)."""
        given = Request(scope).query_params.get("token", "")
        if self._token is None or self._session is None:
            return RedirectResponse("/", 303)
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            return PlainTextResponse(_UNAUTHORIZED, 401, headers=dict(_HEADERS))
        response = RedirectResponse("/", 303, headers=dict(_HEADERS))
        response.set_cookie(
            SESSION_COOKIE, self._session, httponly=True, samesite="strict", path="/"
        )
        return response


def _hostname(host: str) -> str:
    """The name in a ``Host`` header, without the port (``[::1]:8780`` → ``[::1]``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0]


def _cookie(headers: Headers, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no cookie
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def _with_headers(send: Send, csrf: str | None) -> Send:
    """``send`` adding the security headers (and a new CSRF cookie) to the response start."""

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in _HEADERS.items():
                headers[name] = value
            headers.setdefault("cache-control", "no-store")
            if csrf is not None:
                headers.append("set-cookie", _csrf_cookie(csrf))
        await send(message)

    return sender


def _csrf_cookie(value: str) -> str:
    return f"{CSRF_COOKIE}={value}; Path=/; SameSite=Strict; HttpOnly"
