"""Message templates: named placeholders, substituted and nothing else.

A rule's ``message`` is text with ``{name}`` placeholders, for example::

    message: "{market} {side} {price} ({move} from {entry}) at {time}"

Only the names in :data:`PLACEHOLDERS` are allowed, checked when rules.yaml loads. There is no
attribute or index access (``{market.upper}``, ``{pnl[0]}``), no conversion (``{price!r}``) and
no format spec (``{price:>5}``): a template can only put values (already formatted text) into
place. ``{{`` and ``}}`` write literal braces.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

__all__ = ["MISSING", "PLACEHOLDERS", "check_template", "render"]

#: Every placeholder a template may use.
PLACEHOLDERS: tuple[str, ...] = (
    "market",
    "title",
    "side",
    "entry",
    "price",
    "bid",
    "ask",
    "move",
    "spread",
    "pnl",
    "contracts",
    "result",
    "closes",
    "rule",
    "severity",
    "time",
)
#: What a placeholder shows when its value is not known for this alert.
MISSING = "n/a"

_FORMATTER = Formatter()
_AVAILABLE = ", ".join(PLACEHOLDERS)


def check_template(template: str) -> str:
    """Check that ``template`` only uses known, plain placeholders.

    Returns:
        ``template`` unchanged.

    Raises:
        ValueError: a brace is unbalanced, or a placeholder is unknown or not a plain name.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        reason = str(exc)
        reason = reason[:1].lower() + reason[1:]
        raise ValueError(
            f"message template is invalid: {reason}; write {{{{ or }}}} for a literal brace"
        ) from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        _check_placeholder(field, spec, conversion)
    return template


def _check_placeholder(field: str, spec: str | None, conversion: str | None) -> None:
    written = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
    written += "}"
    if not field:
        raise ValueError(
            "message template has an empty placeholder {}; use a name such as {market}"
        )
    name = field.split(".", 1)[0].split("[", 1)[0]
    if name not in PLACEHOLDERS:
        raise ValueError(
            f"message template has an unknown placeholder {{{field}}}; available: {_AVAILABLE}"
        )
    if name != field or conversion or spec:
        raise ValueError(
            f"message template placeholder {written} is not allowed: "
            f"templates only substitute values, write {{{name}}}"
        )


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``values`` into a template that :func:`check_template` accepted.

    Names without a value show :data:`MISSING`. Nothing is evaluated: each placeholder is
    looked up by its exact name.
    """
    out: list[str] = []
    for literal, field, _, _ in _FORMATTER.parse(template):
        out.append(literal)
        if field is not None:
            out.append(values.get(field, MISSING))
    return "".join(out)
