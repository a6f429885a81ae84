"""``volume_spike``: the amount added in the last window against the market's own normal.

A market that a ``volume_spike`` rule covers keeps a :class:`~watcher.domain.volume.VolumeSeries`
per (field, within, baseline) (:func:`volume_plan` tells :class:`~watcher.domain.market.Markets`
which); on each of its ticks the rule compares the last window (the newest four quarter-window
buckets) with the average per window over the baseline before it::

    recent × buckets × q  ≥  p × baseline_total × 4        (factor = p / q, exact integers)

The rule is silent while the market has fewer than ``MIN_WINDOWS`` (3) full windows of history in
its baseline, and while its baseline is zero (no normal to compare with). The baseline is the
market's history up to ``baseline`` long, so a market with 2h of history under a 1d baseline is
judged against those 2h. It fires once (``tag``: the field) and re-arms when the last window is
back at or below the average; ``cooldown`` applies as for the other rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from watcher.domain.market import MarketState, VolumePlan
from watcher.domain.volume import SLICES, VolumeKey
from watcher.rules.checks import Subject
from watcher.rules.kinds import RuleBase, VolumeSpikeRule
from watcher.rules.model import RulesConfig
from watcher.rules.spike_fields import MIN_WINDOWS
from watcher.rules.state import RuleState, step
from watcher.rules.wording import span_text

__all__ = [
    "Spike",
    "VolumeSpikeRule",
    "check_spike",
    "measure",
    "silent_note",
    "spike_text",
    "volume_plan",
]

_TENTH = Decimal("0.1")
_MICROS = Decimal(1_000_000)


class _Run(Protocol):
    """What :func:`check_spike` needs of the engine's evaluation (``engine._Run``)."""

    config: RulesConfig
    now_ms: int

    def subjects(self, rule: RuleBase, market: MarketState) -> list[Subject]: ...
    def state(self, rule: RuleBase, scope: str) -> RuleState: ...
    def save(self, rule: RuleBase, scope: str, state: RuleState) -> None: ...
    def emit(
        self,
        rule: RuleBase,
        subject: Subject,
        ident: str,
        at_ms: int,
        body: str,
        extra: dict[str, str],
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Spike:
    """The last window of one market measured against its baseline.

    Attributes:
        active: the window is at least ``factor`` × the average.
        clear: the window is at most the average (the rule re-arms).
        recent: the amount added in the last window, micro-units.
        scaled: ``recent × buckets``; ``norm``: ``baseline_total × 4`` (their ratio is the
            window's multiple of the average).
        buckets: baseline buckets (a quarter window each).
    """

    active: bool
    clear: bool
    recent: int
    scaled: int
    norm: int
    buckets: int


def volume_plan(config: RulesConfig) -> VolumePlan | None:
    """Which volume series each market keeps under ``config`` (None: no ``volume_spike``)."""
    if not any(isinstance(rule, VolumeSpikeRule) and rule.enabled for rule in config.rules):
        return None

    def keys(ticker: str) -> frozenset[VolumeKey]:
        rules = config.rules_for(ticker)
        return frozenset(r.series_key for r in rules if isinstance(r, VolumeSpikeRule))

    return keys


def measure(rule: VolumeSpikeRule, market: MarketState) -> Spike | None:
    """The market's last window against its baseline; None while the rule is silent (too
    little history, or a zero baseline)."""
    series = market.volumes.get(rule.series_key) if market.volumes is not None else None
    window = series.window() if series is not None else None
    if window is None or window.buckets <= MIN_WINDOWS * SLICES or window.baseline <= 0:
        return None
    numerator, denominator = rule.factor.as_integer_ratio()
    scaled, norm = window.recent * window.buckets, window.baseline * SLICES
    active = window.recent > 0 and scaled * denominator >= numerator * norm
    return Spike(active, scaled <= norm, window.recent, scaled, norm, window.buckets)


def check_spike(run: _Run, rule: VolumeSpikeRule, market: MarketState, ts_ms: int) -> None:
    """Evaluate ``rule`` for ``market`` at a tick: step its state, emit its alert if it fires."""
    found = measure(rule, market)
    if found is None:
        return
    subject = run.subjects(rule, market)[0]
    state, fired = step(
        run.state(rule, subject.scope),
        active=found.active,
        clear=found.clear,
        tag=rule.field,
        now_ms=run.now_ms,
        cooldown_ms=run.config.cooldown_ms(rule),
    )
    run.save(rule, subject.scope, state)
    if fired:
        body, extra = spike_text(rule, found)
        run.emit(rule, subject, str(ts_ms), ts_ms, body, extra)


def spike_text(rule: VolumeSpikeRule, spike: Spike) -> tuple[str, dict[str, str]]:
    """``volume +12,400 in 5m, 8.3× its 1d average of 1,490 per 5m``, and template values
    (``added``, ``ratio``, ``average``)."""
    within, baseline = span_text(rule.series_key[1]), span_text(rule.series_key[2])
    added = _amount(Decimal(spike.recent) / _MICROS)
    ratio = (Decimal(spike.scaled) / Decimal(spike.norm)).quantize(_TENTH, ROUND_HALF_UP)
    average = _amount(Decimal(spike.norm) / (spike.buckets * _MICROS))
    name = rule.field.replace("_", " ")
    body = f"{name} +{added} in {within}, {ratio}× its {baseline} average of {average} per {within}"
    return body, {"added": added, "ratio": f"{ratio}", "average": average}


def silent_note(rule: VolumeSpikeRule) -> str:
    """What ``watcher check`` says about a ``volume_spike`` rule: when it starts speaking."""
    within = rule.series_key[1]
    need = span_text(within * (MIN_WINDOWS + 1) + within // SLICES)  # baseline + last window
    return (
        f"note: rule {rule.name!r} (volume_spike) is silent for a market until it has"
        f" {MIN_WINDOWS} windows of ticks before the last one (about {need}), and while its"
        f" {span_text(rule.series_key[2])} baseline is zero; the service seeds it from the"
        " stored ticks at start"
    )


def _amount(contracts: Decimal) -> str:
    """Contracts for people: whole with thousands separators (``12,400``), one decimal under
    10 (``2.5``)."""
    places = Decimal(1) if contracts >= 10 else _TENTH
    text = f"{contracts.quantize(places, ROUND_HALF_UP):,f}"
    return text.removesuffix(".0")
