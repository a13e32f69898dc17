"""Ed25519 keys: load a partner's private key, read the platform's public keys, make a pair.

A partner signs every request with its private key (never sent anywhere) and registers
the public half with the platform, as 64 hex digits or PEM. The platform signs webhooks
(and, from issue 5, settlement statements) with its own key, whose public half a partner
gets from ``GET /v1/platform/keys`` (:meth:`partner_sdk.Client.platform_keys`).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from .errors import PartnerSDKError

PrivateKeyLike = Union[Ed25519PrivateKey, bytes, str, "os.PathLike[str]"]
PublicKeyLike = Union[Ed25519PublicKey, bytes, str]


class InvalidKeyError(PartnerSDKError, ValueError):
    """A key could not be read: not PEM, not Ed25519, or not 32 bytes / 64 hex digits."""


def load_private_key(key: PrivateKeyLike, *, password: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, PEM bytes, a PEM string, or the path
    (``str`` or ``Path``) of a PEM file (PKCS#8, as :func:`generate_private_key_pem`
    and ``pointclear-sdk keygen`` write it)."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, str) and "-----BEGIN" in key:
        pem = key.encode("ascii")
    elif isinstance(key, bytes) and b"-----BEGIN" in key:
        pem = key
    elif isinstance(key, (str, os.PathLike)):
        try:
            pem = Path(key).read_bytes()
        except OSError as exc:
            # Never echo the value: it may be key material pasted where a path was meant.
            raise InvalidKeyError("the private key is not PEM and names no readable file "
                                  f"({type(exc).__name__})") from None
    else:
        raise InvalidKeyError("give the private key as an Ed25519PrivateKey, PEM bytes or "
                              "text, or the path of a PEM file")
    try:
        loaded = load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"not a PEM private key: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InvalidKeyError(f"the key is {type(loaded).__name__}, not Ed25519")
    return loaded


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object, 32 raw bytes, 64 hex digits, or PEM
    (text or bytes)."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        text = key.strip()
        if "-----BEGIN" in text:
            return _public_from_pem(text.encode("ascii"))
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise InvalidKeyError("a public key string must be 64 hex digits or PEM") from exc
        return _public_from_raw(raw)
    if isinstance(key, bytes):
        if b"-----BEGIN" in key:
            return _public_from_pem(key)
        return _public_from_raw(key)
    raise InvalidKeyError("give the public key as an Ed25519PublicKey, 32 raw bytes, "
                          "64 hex digits or PEM")


def _public_from_raw(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise InvalidKeyError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _public_from_pem(pem: bytes) -> Ed25519PublicKey:
    try:
        loaded = load_pem_public_key(pem)
    except ValueError as exc:
        raise InvalidKeyError(f"not a PEM public key: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise InvalidKeyError(f"the key is {type(loaded).__name__}, not Ed25519")
    return loaded


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw public key as 64 hex digits: what a partner registers with the platform."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM text."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM: keep it owner-readable only."""
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def generate_private_key_pem() -> bytes:
    """A new Ed25519 private key as PKCS#8 PEM."""
    return private_key_pem(Ed25519PrivateKey.generate())


def decode_b64(text: str, *, what: str) -> bytes:
    """Standard base64 (with padding), strictly: anything else raises ValueError."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not standard base64") from exc
