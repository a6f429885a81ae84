"""Signing with RSA-PSS and Ed25519, and clear errors for unusable keys."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from watcher.errors import KeyFileError
from watcher.kalshi.auth import WS_SIGN_PATH, KalshiSigner, load_private_key, verify_signature


def write_key(tmp_path: Path, key, name: str = "key.pem", password: bytes | None = None) -> Path:
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path = tmp_path / name
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["rsa-pss", "ed25519"],
)
def test_websocket_headers_verify_with_the_public_key(tmp_path: Path, make_key) -> None:
    """The signature covers timestamp + GET + /trade-api/ws/v2 and verifies like Kalshi does."""
    key = make_key()
    signer = KalshiSigner.from_file("key-id", write_key(tmp_path, key))
    signer = KalshiSigner(signer.key_id, signer.private_key, clock=lambda: 1_700_000_000.123)
    headers = signer.websocket_headers()
    assert headers["KALSHI-ACCESS-KEY"] == "key-id"
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1700000000123"
    ok = verify_signature(
        key.public_key(),
        timestamp_ms="1700000000123",
        method="GET",
        path=WS_SIGN_PATH,
        signature_b64=headers["KALSHI-ACCESS-SIGNATURE"],
    )
    assert ok
    assert not verify_signature(
        key.public_key(),
        timestamp_ms="1700000000124",
        method="GET",
        path=WS_SIGN_PATH,
        signature_b64=headers["KALSHI-ACCESS-SIGNATURE"],
    )
    assert signer.algorithm == (
        "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-pss"
    )


def test_every_call_gets_a_fresh_timestamp(tmp_path: Path) -> None:
    """Each connection attempt is signed anew."""
    times = iter([1.0, 2.0])
    key = ed25519.Ed25519PrivateKey.generate()
    signer = KalshiSigner("id", key, clock=lambda: next(times))
    assert (
        signer.websocket_headers()["KALSHI-ACCESS-TIMESTAMP"],
        signer.websocket_headers()["KALSHI-ACCESS-TIMESTAMP"],
    ) == ("1000", "2000")


def test_password_protected_key_loads_with_the_password(tmp_path: Path) -> None:
    """An encrypted PEM loads with KALSHI_PRIVATE_KEY_PASSWORD."""
    path = write_key(tmp_path, ed25519.Ed25519PrivateKey.generate(), password=b"pw")
    assert isinstance(load_private_key(path, "pw"), ed25519.Ed25519PrivateKey)


def _public_pem(tmp_path: Path) -> Path:
    path = tmp_path / "public.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def _ec_key(tmp_path: Path) -> Path:
    return write_key(tmp_path, ec.generate_private_key(ec.SECP256R1()))


@pytest.mark.parametrize(
    ("make_path", "password", "expected"),
    [
        (lambda t: t / "missing.pem", None, "private key file not found: {p}"),
        (_public_pem, None, "{p} holds a public key; Kalshi needs the private key"),
        (_ec_key, None, "unsupported key type in {p}: "),
        (
            lambda t: write_key(t, ed25519.Ed25519PrivateKey.generate(), password=b"pw"),
            "bad",
            "cannot load private key {p}: wrong password or not a PEM private key",
        ),
        (
            lambda t: write_key(t, ed25519.Ed25519PrivateKey.generate(), password=b"pw"),
            None,
            "private key {p} is encrypted: set KALSHI_PRIVATE_KEY_PASSWORD",
        ),
    ],
)
def test_unusable_keys_give_clear_errors(tmp_path: Path, make_path, password, expected) -> None:
    """Missing file, public key, other key types and password problems are named plainly."""
    path = make_path(tmp_path)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path, password)
    assert expected.format(p=path) in str(info.value)
    if password:
        assert password not in str(info.value)


def test_group_readable_key_is_warned_about(tmp_path: Path, caplog) -> None:
    """A key readable by group or others logs a warning with the chmod fix."""
    path = write_key(tmp_path, ed25519.Ed25519PrivateKey.generate())
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="watcher.auth"):
        load_private_key(path)
    assert f"run: chmod 600 {path}" in caplog.text


def test_signer_repr_never_shows_the_key(tmp_path: Path) -> None:
    """The private key stays out of reprs."""
    key = ed25519.Ed25519PrivateKey.generate()
    assert "private_key" not in repr(KalshiSigner("id", key))
