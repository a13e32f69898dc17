"""Encryption at rest of members' contact data, and the data key it uses.

A member's contact data (a small dict of strings) is stored as text::

    v1:<key id>:<base64url(nonce + ciphertext)>

sealed with AES-256-GCM under the platform's 32-byte data key. The key id is the first
8 hex digits of the key's SHA-256, so a row says which key sealed it and a rotated key
can still open old rows. The member id is the associated data: a ciphertext copied into
another member's row does not decrypt. GCM authenticates, so a wrong key or an edited
byte is an error, never garbage.

The key file holds the base64 of 32 random bytes (mode 0600); ``pointclear keys init``
creates it. Losing it loses every member's contact data: back it up apart from the
database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class DataKeyMissing(Exception):
    """The data key file does not exist yet."""


class ContactUndecryptable(Exception):
    """Stored contact data opens only with the key that sealed it, unchanged, in the row
    of the member it was sealed for. Not a client error: a key is missing or a row was
    edited."""


def key_id(key: bytes) -> str:
    """The first 8 hex digits of the key's SHA-256: names a key without revealing it."""
    return hashlib.sha256(key).hexdigest()[:8]


def _checked(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes")
    return key


class ContactCipher:
    """Seals contact dicts with ``key``; opens them with ``key`` or any of ``old_keys``.

    ``old_keys`` are keys retired by rotation, as a mapping of key id to key (each id is
    checked against its key) or simply as an iterable of keys. Only ``key`` encrypts.
    """

    def __init__(self, key: bytes, old_keys: Mapping[str, bytes] | Iterable[bytes] = ()):
        self.key_id = key_id(_checked(key))
        if isinstance(old_keys, Mapping):
            for kid, old in old_keys.items():
                if key_id(_checked(old)) != kid:
                    raise ValueError(f"key id {kid!r} does not match its key")
            old_keys = old_keys.values()
        self._keys = {key_id(_checked(old)): AESGCM(old) for old in old_keys}
        self._keys[self.key_id] = AESGCM(key)

    def encrypt(self, member_id: str, contact: dict) -> str:
        if not isinstance(contact, dict):
            raise TypeError("contact data is a dict")
        plaintext = json.dumps(contact, sort_keys=True, separators=(",", ":")).encode()
        # A random 96-bit nonce per message: safe far beyond the number of members we
        # will ever seal under one key (the limit is about 2**32 messages).
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.key_id].encrypt(nonce, plaintext, member_id.encode())
        return f"{VERSION}:{self.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, member_id: str, stored: str) -> dict:
        parts = stored.split(":") if isinstance(stored, str) else []
        if len(parts) != 3 or parts[0] != VERSION or not parts[2]:
            raise ContactUndecryptable(f"contact data of member {member_id!r} is not "
                                       f"in the {VERSION}:<key id>:<data> form")
        _, kid, body = parts
        aead = self._keys.get(kid)
        if aead is None:
            raise ContactUndecryptable(f"contact data of member {member_id!r} was sealed "
                                       f"with data key {kid}, which is not loaded")
        try:
            raw = base64.b64decode(body, altchars=b"-_", validate=True)
            plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], member_id.encode())
        except (binascii.Error, InvalidTag, ValueError) as exc:
            raise ContactUndecryptable(
                f"contact data of member {member_id!r} does not open with data key {kid}: "
                "it was edited, or sealed for another member") from exc
        contact = json.loads(plaintext)
        if not isinstance(contact, dict):
            raise ContactUndecryptable(f"contact data of member {member_id!r} is not a dict")
        return contact


def load_data_key(path: str | os.PathLike) -> bytes:
    """The 32-byte key in ``path`` (base64 text)."""
    path = Path(path)
    if not path.exists():
        raise DataKeyMissing(f"no data key at {path}: run `pointclear keys init` "
                             "or set POINTCLEAR_DATA_KEY")
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{path} does not hold a base64 data key") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} holds {len(key)} bytes; a data key is {KEY_BYTES}")
    return key


def create_data_key(path: str | os.PathLike) -> bytes:
    """Write a new random key to ``path`` (mode 0600). Never overwrites: an existing
    file raises FileExistsError, since replacing the key would lose every sealed row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(key).decode() + "\n")
    return key
