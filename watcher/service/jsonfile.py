"""Rewriting the user's ``trades.json`` safely: the machinery of every write-back.

Shared by the settlement write-back (:mod:`watcher.service.writeback`) and paper orders
(:mod:`watcher.service.paper_book`). What they promise the user:

* every field and entry they do not change, and every top-level key, is kept as read, in order;
* numbers keep their original text (``30.5`` stays ``30.5``, never a float): :func:`load_raw`
  reads them as :class:`RawNumber` and :func:`dump_raw` writes that text back;
* the file is re-indented only as ``json.dumps(indent=2)`` must; non-ASCII text stays as is;
* :func:`replace_file` keeps the previous version as ``trades.json.bak`` and writes the new one
  to a temporary file in the same folder, flushed to disk, given the original's mode and renamed
  over it; it raises :class:`FileChanged` (writing nothing) when the file on disk is no longer
  the text that was read, so a hand edit is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

__all__ = [
    "BACKUP_SUFFIX",
    "FileChanged",
    "RawNumber",
    "atomic_write",
    "dump_raw",
    "load_raw",
    "replace_file",
]

#: The backup is ``trades.json`` + this suffix.
BACKUP_SUFFIX = ".bak"


class FileChanged(OSError):
    """The positions file changed between reading and replacing it (a user edit)."""


class RawNumber:
    """A JSON number kept as the text it was written with."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawNumber({self.text!r})"


def load_raw(text: str) -> Any:
    """Parse JSON text, keeping every number as a :class:`RawNumber`."""
    return json.loads(text, parse_float=RawNumber, parse_int=RawNumber, parse_constant=RawNumber)


def dump_raw(data: Any) -> str:
    """``json.dumps(indent=2)`` with every :class:`RawNumber` written as its original text."""
    nonce = secrets.token_hex(8)
    texts: list[str] = []

    def default(value: object) -> str:
        if not isinstance(value, RawNumber):
            raise TypeError(f"cannot write {type(value).__name__} to JSON")
        texts.append(value.text)
        return f"\0{nonce}:{len(texts) - 1}\0"

    dumped = json.dumps(data, indent=2, ensure_ascii=False, default=default)
    placeholder = re.compile(rf'"\\u0000{nonce}:(\d+)\\u0000"')
    return placeholder.sub(lambda match: texts[int(match.group(1))], dumped)


def replace_file(path: Path, original: bytes, data: bytes) -> None:
    """Back up ``original`` and atomically put ``data`` in place, keeping the file's mode.

    Args:
        path: the file (already resolved: write through a symlink, not over it).
        original: the bytes the new content was computed from.
        data: the new content.

    Raises:
        FileChanged: the file no longer holds ``original`` (checked before the backup is
            written and again before the rename); the file is then left as it is.
        OSError: the file cannot be read or written.
    """
    if path.read_bytes() != original:
        raise FileChanged(f"{path} changed on disk since it was read")
    mode = path.stat().st_mode & 0o7777
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    atomic_write(backup, original, mode)
    if path.read_bytes() != original:
        raise FileChanged(f"{path} changed on disk since it was read")
    atomic_write(path, data, mode)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it over."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)  # the umask does not apply to fchmod
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
