"""What a face sees of the watcher: the running service when this instance is active, else
nothing but the settings and the database (read-only: ``watcher web``, or a standby).

Faces hold no logic of their own. They read through the store's
:class:`~watcher.store.ports.ReadModel` (the same read-outs as ``watcher status``,
``alerts``, ``history`` and ``replay`` in :mod:`watcher.ops`) and act through the service's
own calls: the :class:`~watcher.service.paper.PaperDesk` for paper orders, the alert store for
retries, :class:`~watcher.service.controls.Controls` for mutes and pauses.
:class:`ServiceView` names the part of :class:`watcher.app.Service` they may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from watcher.ops.health import LiveHealth
    from watcher.rules import RulesConfig
    from watcher.service.controls import Controls
    from watcher.service.paper import PaperDesk
    from watcher.service.pipeline import Pipeline
    from watcher.settings import Settings
    from watcher.store.ports import Backend

__all__ = ["FaceHost", "ServiceView"]


class ServiceView(Protocol):
    """The running service as the faces use it (satisfied by :class:`watcher.app.Service`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def pipeline(self) -> Pipeline:
        """Positions and rules in force, the live market view, the alert store and sender."""
        ...

    @property
    def desk(self) -> PaperDesk | None:
        """The paper desk (None until the service has opened it)."""
        ...

    @property
    def controls(self) -> Controls | None:
        """Mutes and pauses: the bot's ``/mute`` and ``/pause``, the dashboard's (None until
        the service has opened them)."""
        ...

    def live_health(self) -> LiveHealth: ...


@dataclass
class FaceHost:
    """Where the faces find the watcher.

    Attributes:
        settings: the resolved settings (paths, ``--db``, the web address and token).
        rules: the rules loaded at start; the running service's are newer
            (``service.pipeline.rules``) when it runs.
        service: the running service while this instance is active, else None (read-only).
    """

    settings: Settings
    rules: RulesConfig
    service: ServiceView | None = None

    @property
    def current_rules(self) -> RulesConfig:
        """The rules in force: the running service's, else those loaded at start."""
        return self.service.pipeline.rules if self.service is not None else self.rules
