"""Request signing for Kalshi (kalshi-protocol.md §2).

Kalshi signs ``timestamp_ms + METHOD + path`` (path from the API root, no host, no query) with
RSA-PSS (SHA-256, MGF1-SHA-256, salt = digest length) or, for keys made since 2026-10-01, Ed25519.
The algorithm follows from the key itself. Every connection attempt gets a fresh timestamp and
signature. The private key and its password never appear in a repr, log line or error.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from watcher.kalshi.errors import KeyFileError

__all__ = [
    "SECRET_HEADERS",
    "WS_SIGN_PATH",
    "Algorithm",
    "KalshiSigner",
    "PrivateKey",
    "PublicKey",
    "load_private_key",
    "load_public_key",
    "redacting_logger",
    "verify_signature",
]

logger = logging.getLogger("watcher.auth")

WS_SIGN_PATH = "/trade-api/ws/v2"

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
Algorithm: TypeAlias = Literal["rsa-pss", "ed25519"]

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)

#: Request headers whose values never reach a log line, even with websockets at DEBUG.
SECRET_HEADERS = frozenset({"kalshi-access-signature", "kalshi-access-key", "authorization"})


class _RedactSecretHeaders(logging.Filter):
    """Mask signed headers in websockets' handshake debug lines (``> NAME: VALUE``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 2
            and record.msg in ("> %s: %s", "< %s: %s")
            and str(args[0]).lower() in SECRET_HEADERS
        ):
            record.args = (args[0], "[redacted]")
        return True


def redacting_logger(name: str) -> logging.Logger:
    """The logger ``name`` with signed request headers masked in its records."""
    log = logging.getLogger(name)
    if not any(isinstance(f, _RedactSecretHeaders) for f in log.filters):
        log.addFilter(_RedactSecretHeaders())
    return log


def load_private_key(path: str | os.PathLike[str], password: str | None = None) -> PrivateKey:
    """Load an RSA or Ed25519 private key from a PEM file.

    Raises:
        KeyFileError: the file is missing, holds a public key, holds another key type, or the
            password is missing or wrong. The message names the path, never the key or password.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"private key file not found: {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read private key file {path}: {exc.strerror}") from None
    _warn_if_readable_by_others(path)
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise KeyFileError(
            f"{path} holds a public key; Kalshi needs the private key you downloaded"
            " when you created the API key"
        )
    secret = password.encode() if password else None
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        if secret is None:
            raise KeyFileError(
                f"private key {path} is encrypted: set KALSHI_PRIVATE_KEY_PASSWORD"
            ) from None
        raise KeyFileError(f"private key {path} is not encrypted: unset the password") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = "wrong password or " if secret else ""
        raise KeyFileError(f"cannot load private key {path}: {hint}not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(
            f"unsupported key type in {path}: {type(key).__name__}; Kalshi accepts RSA or Ed25519"
        )
    return key


def load_public_key(data: bytes) -> PublicKey:
    """Load an RSA or Ed25519 public key from PEM bytes (the simulator verifies with it)."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyFileError(f"unsupported public key type: {type(key).__name__}")
    return key


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "private key %s is readable by group or others (mode %o); run: chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )


def _sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, _PSS, hashes.SHA256())


def verify_signature(
    key: PublicKey, *, timestamp_ms: str, method: str, path: str, signature_b64: str
) -> bool:
    """Check a ``KALSHI-ACCESS-SIGNATURE`` the way Kalshi does. Never raises on bad input."""
    message = f"{timestamp_ms}{method}{path}".encode()
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, _PSS, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class KalshiSigner:
    """Makes the three ``KALSHI-ACCESS-*`` headers for one request.

    Args:
        key_id: the API key id (a UUID) shown on Kalshi's API keys page.
        private_key: the loaded private key; never printed.
        clock: returns Unix time in seconds; tests patch it.
    """

    key_id: str
    private_key: PrivateKey = field(repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @classmethod
    def from_file(
        cls, key_id: str, path: str | os.PathLike[str], password: str | None = None
    ) -> KalshiSigner:
        if not key_id:
            raise KeyFileError("KALSHI_API_KEY_ID is empty")
        return cls(key_id=key_id, private_key=load_private_key(path, password))

    @property
    def algorithm(self) -> Algorithm:
        return "ed25519" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "rsa-pss"

    def headers(self, method: str, path: str) -> dict[str, str]:
        """Fresh signed headers for ``method path`` (path without host or query string)."""
        timestamp = str(int(self.clock() * 1000))
        signature = _sign(self.private_key, f"{timestamp}{method.upper()}{path}".encode())
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": timestamp,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(signature).decode("ascii"),
        }

    def websocket_headers(self) -> dict[str, str]:
        return self.headers("GET", WS_SIGN_PATH)
