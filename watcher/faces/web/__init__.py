"""The live dashboard: ``watcher start --web [HOST:]PORT`` and ``watcher web`` (read-only).

Starlette on uvicorn as a task of the service's event loop (:mod:`.server`), Jinja2 pages
(:mod:`.pages`) with our own SVG charts (:mod:`.charts`), a JSON API (:mod:`.api`), one
server-sent-event stream per tab (:mod:`.live`), mutes and the pause (:mod:`.silence`, through
the service's ``Controls``), and a guard for the token, CSRF and the
security headers (:mod:`.security`). Everything is read through :mod:`.source`: the running
service when this instance is active, else the database. Imported only when the dashboard is
switched on.
"""

from __future__ import annotations

from watcher.faces.web.app import close_app, create_app
from watcher.faces.web.server import WebServer, serve_web

__all__ = ["WebServer", "close_app", "create_app", "serve_web"]
