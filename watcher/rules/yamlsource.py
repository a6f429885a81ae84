"""YAML to plain values, keeping where every key and value was written.

PyYAML's ``SafeLoader`` composes the text into nodes (which carry line and column marks);
:func:`read_yaml` walks the nodes itself so that it can

* remember the mark of every key and value by path (``("rules", 2, "max_cents")``),
* report duplicate keys (PyYAML silently keeps the last one),
* read numbers exactly (a YAML float becomes a :class:`~decimal.Decimal`, never a binary float),
* substitute ``${VAR}`` and ``${VAR:-default}`` from the ``env`` it is given.

Scalars are resolved the YAML 1.2 way: only ``true``/``false`` are booleans (``side: no`` stays
the word ``"no"``) and ``23:00`` is a string, not the sexagesimal number 1380.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from watcher.rules.fields import mask_urls

__all__ = ["MAX_NODES", "Path", "Source", "Where", "read_yaml"]

Path: TypeAlias = tuple[str | int, ...]

#: Walking stops after this many nodes (aliases can make a small file expand enormously).
MAX_NODES = 100_000

_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = frozenset({_TAG + "map", _TAG + "seq"})
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and without sexagesimal numbers."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in {_TAG + suffix for suffix in ("bool", "int", "float")}
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _TAG + "int",
    re.compile(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _TAG + "float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
        r"|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True, slots=True)
class Where:
    """A 1-based line and column."""

    line: int
    col: int


@dataclass
class Source:
    """The values read from a YAML text, and where each was written.

    Attributes:
        data: the document as dicts, lists and scalars; None if the text could not be parsed.
        keys: where the key of each mapping entry is, by the entry's path.
        values: where each value starts, by path (the root is ``()``).
        secret: paths whose value came from an environment variable (never echo them).
        broken: paths whose value could not be read (already reported; not validated again).
        variables: the variable names each interpolated value refers to, by path.
        errors: every problem found, with where it is.
        parsed: False when the text is not YAML (``errors`` says why).
    """

    data: Any = None
    keys: dict[Path, Where] = field(default_factory=dict)
    values: dict[Path, Where] = field(default_factory=dict)
    secret: set[Path] = field(default_factory=set)
    broken: set[Path] = field(default_factory=set)
    variables: dict[Path, list[str]] = field(default_factory=dict)
    errors: list[tuple[Where, str]] = field(default_factory=list)
    parsed: bool = True


def read_yaml(text: str, env: Mapping[str, str]) -> Source:
    """Read one YAML document into plain values with their locations.

    Never raises for bad input: every problem is in ``Source.errors``.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        return _failed(_where_offset(text, exc.position), _reader_message(exc))
    try:
        root = loader.get_single_node()
        walker = _Walker(loader, env)
        if root is None:
            return walker.source
        walker.source.data = walker.value(root, ())
        return walker.source
    except yaml.MarkedYAMLError as exc:
        return _failed(_where(exc.problem_mark or exc.context_mark), _syntax_message(exc))
    except yaml.reader.ReaderError as exc:
        return _failed(_where_offset(text, exc.position), _reader_message(exc))
    except yaml.YAMLError as exc:
        return _failed(Where(1, 1), f"invalid YAML: {exc}")
    except _TooBig:
        return _failed(Where(1, 1), f"the file expands to more than {MAX_NODES} values (aliases?)")
    except RecursionError:
        return _failed(Where(1, 1), "invalid YAML: nesting is too deep")
    finally:
        loader.dispose()


class _TooBig(Exception):
    pass


def _failed(where: Where, message: str) -> Source:
    return Source(errors=[(where, message)], parsed=False)


def _where(mark: Any) -> Where:
    return Where(mark.line + 1, mark.column + 1) if mark is not None else Where(1, 1)


def _where_offset(text: str, offset: int) -> Where:
    line_start = text.rfind("\n", 0, offset) + 1
    return Where(text.count("\n", 0, offset) + 1, offset - line_start + 1)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "the text is not valid YAML"
    if not exc.context:
        return f"invalid YAML: {problem}"
    if problem.startswith("but "):
        return f"invalid YAML: {exc.context}, {problem}"
    context = exc.context
    if exc.context_mark is not None and exc.context_mark is not exc.problem_mark:
        context += f" that starts at line {exc.context_mark.line + 1}"
    return f"invalid YAML: {problem} ({context})"


def _reader_message(exc: yaml.reader.ReaderError) -> str:
    character = exc.character
    code = ord(character) if isinstance(character, str | bytes) else character
    return f"invalid character #x{code:04x}: {exc.reason}"


class _Walker:
    """Turns nodes into values, recording marks, duplicate keys and variable problems."""

    def __init__(self, loader: _Loader, env: Mapping[str, str]) -> None:
        self.loader = loader
        self.env = env
        self.source = Source()
        self.budget = MAX_NODES
        self.open: set[int] = set()  # ids of the collections being walked (alias cycles)

    def value(self, node: Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig
        self.source.values[path] = _where(node.start_mark)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            return self.broken(node, path, f"unsupported tag {node.tag!r}")
        if id(node) in self.open:
            return self.broken(node, path, "an alias refers to a value that contains it")
        self.open.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            assert isinstance(node, SequenceNode)
            return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            if key is None:
                continue
            if key in result:
                first = self.source.keys[(*path, key)]
                shown = mask_urls(key)
                self.error(
                    key_node, f"duplicate key {shown!r} (first written at line {first.line})"
                )
                continue
            self.source.keys[(*path, key)] = _where(key_node.start_mark)
            result[key] = self.value(value_node, (*path, key))
        return result

    def key(self, node: Node) -> str | None:
        if node.tag == _TAG + "merge":
            self.error(node, "merge keys (<<) are not supported; write the keys out")
            return None
        if not isinstance(node, ScalarNode):
            self.error(node, "a key must be a plain name, but got a list or a mapping")
            return None
        return str(node.value)

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        if node.tag == _TAG + "str":
            if "${" not in node.value:
                return node.value
            self.source.secret.add(path)

            def report(offset: int, message: str) -> None:
                self.source.broken.add(path)
                self.error(node, message, offset)

            names = [match[1].partition(":-")[0] for match in _REFERENCE.finditer(node.value)]
            self.source.variables[path] = names
            return _interpolate(node.value, self.env, report)
        if node.tag == _TAG + "float":
            try:
                return Decimal(node.value.replace("_", ""))
            except InvalidOperation:
                pass
        if not node.tag.startswith(_TAG):
            return self.broken(node, path, f"unsupported tag {node.tag!r}")
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            return self.broken(node, path, f"cannot read value: {problem}")
        except Exception as exc:  # PyYAML's constructors raise IndexError, ValueError, ...
            reason = mask_urls(str(exc) or type(exc).__name__)
            shown = mask_urls(node.value[:40])
            return self.broken(node, path, f"cannot read value {shown!r}: {reason}")

    def error(self, node: Node, message: str, offset: int | None = None) -> None:
        self.source.errors.append((_where_in(node, offset), message))

    def broken(self, node: Node, path: Path, message: str) -> None:
        self.source.broken.add(path)
        self.error(node, message)


def _where_in(node: Node, offset: int | None) -> Where:
    """Where ``offset`` of a scalar's text is, if it can be found in the source; else the node."""
    mark = node.start_mark
    where = _where(mark)
    if offset is None or not isinstance(node, ScalarNode) or mark.line != node.end_mark.line:
        return where
    shift = offset + (1 if node.style in ("'", '"') else 0)
    buffer = getattr(mark, "buffer", None)
    if isinstance(buffer, str) and buffer[mark.pointer + shift : mark.pointer + shift + 2] == "${":
        return Where(where.line, where.col + shift)
    return where


def _interpolate(text: str, env: Mapping[str, str], report: Callable[[int, str], None]) -> str:
    """Substitute ``${VAR}`` and ``${VAR:-default}`` (default when unset or empty)."""
    out: list[str] = []
    done = 0
    for match in _REFERENCE.finditer(text):
        out.append(text[done : match.start()])
        done = match.end()
        name, sep, default = match[1].partition(":-")
        if not _VARIABLE.fullmatch(name):
            report(
                match.start(),
                f"invalid variable reference {match[0]!r}: write ${{NAME}} or ${{NAME:-default}}",
            )
        elif env.get(name):
            out.append(env[name])
        elif sep:
            out.append(default)
        elif name in env:
            out.append("")
        else:
            report(match.start(), f"environment variable {name} is not set (used as ${{{name}}})")
    rest = text[done:]
    if "${" in rest:
        report(done + rest.index("${"), "unterminated variable reference: '${' without '}'")
    out.append(rest)
    return "".join(out)
