"""Silencing from the dashboard: what is muted or paused, and the buttons that change it.

- ``POST /controls/mute`` (``duration``: ``30m``, ``1h``, ``2d``...; ``target``: a watched
  market, a rule, ``rule@TICKER``, or blank for everything), ``POST /controls/unmute``
  (``target``; blank lifts every mute), ``POST /controls/pause`` and ``POST /controls/resume``:
  the pages' forms, CSRF-checked. The answer goes back to the page (``next``) with what was
  done, or why nothing was, as a flash message.
- ``POST /api/controls/mute|unmute|pause|resume``: the same for scripts, answered in JSON
  (``{"done", "mutes", "paused"}``; 400 ``{"error"}`` for bad input, nothing changed).
- ``GET /api/controls``: the mutes in force and the pause (:func:`~.views.controls_json`).
- ``GET /silenced``: the overview's Silenced section alone (the page's script swaps it in when
  the ``health`` event says that what is silenced changed).

Every change goes through a :class:`~watcher.service.controls.Controls`
(:meth:`~watcher.faces.web.source.Source.acting_controls`) as ``by="web"``: it checks the
target and stores the change; nothing is decided here beyond reading the form.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from watcher.errors import StorageError
from watcher.faces.web.pages import source_of
from watcher.faces.web.security import form_fields, require_csrf, set_flash
from watcher.faces.web.source import Source
from watcher.faces.web.views import controls_json
from watcher.rules.fields import parse_duration
from watcher.rules.wording import span_text
from watcher.service.controls import MAX_MUTE_S, mute_reason

__all__ = [
    "ACTIONS",
    "BY",
    "MAX_MUTE",
    "control_action",
    "controls_api",
    "mute_seconds",
    "silenced",
    "silenced_fragment",
]

#: Who the stored mutes and pauses say made them.
BY = "web"
ACTIONS = frozenset({"mute", "unmute", "pause", "resume"})
#: The longest mute (Controls refuses longer ones: its end must stay a date every read-out shows).
MAX_MUTE = timedelta(seconds=MAX_MUTE_S)
#: Where a form may send the browser back to: a path of this dashboard.
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\s\\]*")


async def silenced(source: Source) -> dict[str, Any]:
    """What is silenced now, as the API, the health event and the overview write it."""
    return controls_json(await source.controls(), tz=source.rules.tz, now_ms=source.now_ms())


async def controls_api(request: Request) -> JSONResponse:
    """``GET /api/controls``: the mutes in force (soonest end first) and the pause."""
    return JSONResponse(await silenced(source_of(request)))


async def silenced_fragment(request: Request) -> Response:
    """``GET /silenced``: the overview's Silenced section (empty when nothing is silenced)."""
    context = {"silenced": await silenced(source_of(request)), "csrf": request.state.csrf}
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "_silenced.html", context)  # type: ignore[no-any-return]


async def control_action(request: Request) -> Response:
    """``POST /controls/{action}`` (a form: back to its page with a message) and
    ``POST /api/controls/{action}`` (JSON), CSRF-checked; bad input changes nothing."""
    action = str(request.path_params["action"])
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}: mute, unmute, pause or resume")
    await require_csrf(request)
    form = await form_fields(request)
    source = source_of(request)
    api = request.url.path.startswith("/api/")
    try:
        done = await _act(source, action, form)
    except ValueError as exc:  # not a duration, too long, a target that names nothing
        if api:
            return JSONResponse({"error": str(exc)}, 400)
        return _back(form, "error", str(exc))
    except StorageError as exc:
        if api:
            raise  # 503, as every read the database refuses
        return _back(form, "error", f"nothing changed: the database cannot be written: {exc}")
    if api:
        return JSONResponse({"done": done, **await silenced(source)})
    return _back(form, "done", done)


def mute_seconds(text: str) -> float:
    """How long a mute of ``text`` (``30m``, ``1h``, ``2d``, ``1h30m``) lasts, in seconds.

    Raises:
        ValueError: not a duration, nothing, or more than :data:`MAX_MUTE`.
    """
    try:
        duration = parse_duration(text.strip())
    except ValueError as exc:
        raise ValueError(f"mute for how long? {exc}") from None
    if not duration:
        raise ValueError("a mute must last more than 0 seconds: give a duration like 30m or 1h")
    if duration > MAX_MUTE:
        longest = span_text(MAX_MUTE // timedelta(milliseconds=1))
        raise ValueError(f"a mute lasts at most {longest}, not {text.strip()}")
    return duration.total_seconds()


# Private functions


async def _act(source: Source, action: str, form: dict[str, str]) -> str:
    """Carry out ``action`` through the Controls; what was done, in words."""
    target = form.get("target", "").strip() or None
    seconds = mute_seconds(form.get("duration", "")) if action == "mute" else 0.0
    controls = await source.acting_controls()
    if action == "mute":
        mute = await controls.mute(seconds, target, by=BY)
        return mute_reason(mute, source.rules.tz, source.now_ms())
    if action == "unmute":
        ended = await controls.unmute(target)
        what = f" of {target}" if target else ""
        if not ended:
            return f"there was no mute{what}"
        return f"ended {ended} mute{'' if ended == 1 else 's'}{what}"
    if action == "pause":
        await controls.pause(by=BY)
        return "paused: non-critical alerts are held back"
    return "resumed: alerts go out again" if await controls.resume() else "alerts were not paused"


def _back(form: dict[str, str], kind: str, text: str) -> Response:
    """Back to the form's page (``next``, a path of this dashboard; else the overview)."""
    back = form.get("next", "")
    response = RedirectResponse(back if _LOCAL_PATH.fullmatch(back) else "/", 303)
    set_flash(response, kind, text)
    return response
