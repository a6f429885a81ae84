"""Load rules.yaml: every problem reported at once, each as ``rules.yaml:LINE:COL: message``.

The text is read with PyYAML's SafeLoader only (see :mod:`watcher.rules.yamlsource`, which keeps
the line and column of every key and value), then validated by the pydantic model
(:mod:`watcher.rules.model`). Each pydantic error's ``loc`` is walked back through the data to
the node it is about: an unknown key points at the key, a bad value at the value, a missing key
at the mapping that lacks it, an unknown rule ``type`` at the type's value. Checks that need the
whole file (unique rule names, notify targets that exist) are located the same way.

The loader never reads ``os.environ``: the caller passes ``env``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path as FilePath
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from watcher.errors import ConfigError
from watcher.rules.fields import describe, mask_urls
from watcher.rules.model import (
    BOT_TARGET,
    RULE_TYPES,
    Control,
    Defaults,
    QuietHours,
    RulesConfig,
    TelegramControl,
)
from watcher.rules.yamlsource import Path, Source, Where, read_yaml

__all__ = ["RulesError", "load_rules", "parse_rules"]

_TYPES = ", ".join(RULE_TYPES)
_TOP_KEYS = ", ".join(RulesConfig.model_fields)
_FROM_ENV = "the value of an environment variable"
_START = Where(1, 1)
_EXPECTED = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
}

Problem = tuple[Where, str]


class RulesError(ConfigError):
    """rules.yaml is invalid.

    ``errors`` holds every problem, each a located :class:`ConfigError`, in file order.
    ``str()``, ``message``, ``file``, ``line`` and ``col`` are those of the first.
    """

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        if not self.errors:
            raise ValueError("RulesError needs at least one error, but got none")
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, col=first.col)


def load_rules(path: str | FilePath, *, env: Mapping[str, str]) -> RulesConfig:
    """Read and parse a rules file (UTF-8, with or without a BOM).

    Errors are located with ``str(path)`` as the file name.

    Raises:
        RulesError: the file cannot be read, is not UTF-8, or is invalid.
    """
    name = str(path)
    try:
        data = FilePath(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RulesError([ConfigError(f"cannot read rules file: {reason}", file=name)]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"file is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise RulesError([ConfigError(message, file=name, line=line)]) from exc
    return parse_rules(text, filename=name, env=env)


def parse_rules(text: str, *, filename: str = "rules.yaml", env: Mapping[str, str]) -> RulesConfig:
    """Parse the text of a rules file.

    Args:
        text: the YAML text; a leading BOM is ignored.
        filename: the name errors and warnings are located with.
        env: environment variables for ``${VAR}`` and ``${VAR:-default}``.

    Returns:
        the validated rules; ``warnings`` lists what did not stop loading (such as a notify
        target with no URL, whose alerts go to the console).

    Raises:
        RulesError: with every problem found.
    """
    source = read_yaml(text.removeprefix("\ufeff"), env)
    problems: list[Problem] = list(source.errors)
    config: RulesConfig | None = None
    if source.parsed and not isinstance(source.data, dict):
        problems.append((source.values.get((), _START), _top_level(source.data)))
    elif source.parsed:
        problems.extend(_cross_check(source))
        try:
            config = RulesConfig.model_validate(source.data)
        except ValidationError as exc:
            for error in exc.errors():
                problem = _explain(error, source)
                if problem is not None:
                    problems.append(problem)
    if problems or config is None:
        raise RulesError(_located(problems, filename))
    return _finish(config, source, filename)


def _located(problems: Sequence[Problem], filename: str) -> list[ConfigError]:
    ordered = sorted(problems, key=lambda problem: (problem[0].line, problem[0].col))
    return [ConfigError(msg, file=filename, line=at.line, col=at.col) for at, msg in ordered]


def _top_level(data: Any) -> str:
    seen = "an empty file" if data is None else describe(data)
    return f"expected a mapping with keys such as {_TOP_KEYS}, but got {seen}"


def _finish(config: RulesConfig, source: Source, filename: str) -> RulesConfig:
    """Drop notify targets without URLs (with a warning) and remember where rules are."""
    kept = {name: urls for name, urls in config.notify.items() if urls}
    warnings = [
        f"{filename}:{_at(source, ('notify', name))}: notify target {mask_urls(name)!r} has no URL"
        f"{_unset(source, name)}; its alerts go to the console only"
        for name in config.notify
        if name not in kept
    ]
    origins = {
        rule.name: f"{filename}:{_at(source, ('rules', index))}"
        for index, rule in enumerate(config.rules)
    }
    return config.with_load_info(notify=kept, warnings=tuple(warnings), origins=origins)


def _unset(source: Source, target: str) -> str:
    """Why a notify target is empty: the variables it uses, which are unset or empty."""
    names = [
        name
        for path, found in source.variables.items()
        if path[:2] == ("notify", target)
        for name in found
    ]
    if not names:
        return ""
    listed = " or ".join(dict.fromkeys(names))
    return f" ({listed} is not set)"


def _at(source: Source, path: Path) -> str:
    where = source.keys.get(path) or source.values.get(path, _START)
    return f"{where.line}:{where.col}"


# Checks that need the whole file


def _cross_check(source: Source) -> list[Problem]:
    data: dict[str, Any] = source.data
    problems = _duplicate_names(source, data.get("rules"))
    targets = data.get("notify", {})
    if not isinstance(targets, dict):
        return problems
    known = dict.fromkeys(targets)  # in the order written, for the message
    if _has_bot(data):
        problems += _bot_taken(source, targets)
        known[BOT_TARGET] = None
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        problems += _unknown_targets(source, ("defaults", "notify"), defaults.get("notify"), known)
    rules = data.get("rules")
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(rule, dict):
            path = ("rules", index, "notify")
            problems += _unknown_targets(source, path, rule.get("notify"), known)
    return problems


def _has_bot(data: dict[str, Any]) -> bool:
    """Whether ``control.telegram`` is written (then the ``bot`` target exists)."""
    control = data.get("control")
    return isinstance(control, dict) and isinstance(control.get("telegram"), dict)


def _bot_taken(source: Source, targets: dict[str, Any]) -> list[Problem]:
    if BOT_TARGET not in targets:
        return []
    where = source.keys.get(("notify", BOT_TARGET), _START)
    message = (
        f"notify target {BOT_TARGET!r} is the Telegram bot of control.telegram;"
        " give this target another name"
    )
    return [(where, message)]


def _duplicate_names(source: Source, rules: Any) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[str, Where] = {}
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str) or not name.strip():
            continue
        where = source.values.get(("rules", index, "name"), _START)
        seen = first.setdefault(name.strip(), where)
        if seen is not where:
            message = (
                f"duplicate rule name {mask_urls(name.strip())!r} (first used at line {seen.line})"
            )
            problems.append((where, message))
    return problems


def _unknown_targets(
    source: Source, path: Path, names: Any, known: dict[str, None]
) -> list[Problem]:
    items = list(enumerate(names)) if isinstance(names, list) else [(None, names)]
    defined = ", ".join(map(mask_urls, known)) or "none"
    problems: list[Problem] = []
    for index, name in items:
        if isinstance(name, str) and name.strip() and name.strip() not in known:
            at = path if index is None else (*path, index)
            hint = " (it needs control.telegram)" if name.strip() == BOT_TARGET else ""
            message = (
                f"unknown notify target {mask_urls(name.strip())!r}{hint};"
                f" defined targets: {defined}"
            )
            problems.append((source.values.get(at, _START), message))
    return problems


# Pydantic errors, located


def _explain(error: ErrorDetails, source: Source) -> Problem | None:
    """One pydantic error as (where, message), pointing at the node it is about.

    None when the value's variable reference failed: that is already reported.
    """
    path, rest = _resolve(error["loc"], source.data)
    if path in source.broken:
        return None
    kind = error["type"]
    where = source.values.get(path, _START)
    if kind == "extra_forbidden":
        key = str(path[-1])
        return source.keys.get(path, where), _unknown_key(key, path[:-1], source.data)
    if kind == "missing":
        key = str(rest[-1]) if rest else str(error["loc"][-1])
        return where, f"missing key {mask_urls(key)!r}{_context(path, source.data)}"
    if kind == "union_tag_invalid":
        seen = _value_at((*path, "type"), source.data)
        message = f"unknown rule type {describe(seen)}; expected one of: {_TYPES}"
        return source.values.get((*path, "type"), where), message
    if kind == "union_tag_not_found":
        return where, f"rule has no 'type'; expected one of: {_TYPES}"
    value = _value_at(path, source.data)
    text = _value_message(error, value, secret=path in source.secret)
    label = _label(path)
    if label and not isinstance(value, dict) and not text.startswith(label):
        text = f"{label}: {text}"
    return where, text


def _label(path: Path) -> str:
    """How a message names the field at ``path`` (its key, or the notify target)."""
    if len(path) >= 2 and path[0] == "notify":
        return f"notify target {mask_urls(str(path[1]))!r}"
    return next((part for part in reversed(path) if isinstance(part, str)), "")


def _resolve(loc: tuple[int | str, ...], data: Any) -> tuple[Path, list[int | str]]:
    """The part of ``loc`` that exists in ``data``, and what is left (union tags and the
    like are skipped: pydantic puts the rule type into ``loc``)."""
    path: list[str | int] = []
    rest: list[int | str] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            rest.append(part)
            continue
        path.append(part)
    return tuple(path), rest


def _value_at(path: Path, data: Any) -> Any:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _model_at(path: Path, data: Any) -> tuple[type[BaseModel] | None, str]:
    """The model that validates the mapping at ``path``, and how to name it for people."""
    if path == ():
        return RulesConfig, " at the top level"
    if path == ("defaults",):
        return Defaults, " in defaults"
    if path == ("quiet_hours",):
        return QuietHours, " in quiet_hours"
    if path == ("control",):
        return Control, " in control"
    if path == ("control", "telegram"):
        return TelegramControl, " in control.telegram"
    if len(path) == 2 and path[0] == "rules":
        kind = _value_at((*path, "type"), data)
        model = RULE_TYPES.get(kind) if isinstance(kind, str) else None
        return model, f" in a {kind} rule" if model else " in a rule"
    return None, ""


def _unknown_key(key: str, parent: Path, data: Any) -> str:
    model, where = _model_at(parent, data)
    message = f"unknown key {mask_urls(key)!r}{where}"
    if model is not None:
        allowed = [info.alias or name for name, info in model.model_fields.items()]
        message += f"; expected one of: {', '.join(allowed)}"
    return message


def _context(path: Path, data: Any) -> str:
    return _model_at(path, data)[1]


def _value_message(error: ErrorDetails, value: Any, *, secret: bool) -> str:
    kind = error["type"]
    seen = _FROM_ENV if secret else describe(value)
    if kind == "value_error":
        text = error["msg"].removeprefix("Value error, ")
        cut = text.find(", but got ")
        return f"{text[:cut]}, but got {_FROM_ENV}" if secret and cut >= 0 else text
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "another value")
        return f"expected {expected}, but got {seen}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, but got {seen}"
    msg = error["msg"]
    return f"{msg[:1].lower()}{msg[1:]}, but got {seen}"
