"""Contact data sealed with AES-256-GCM: round trip, tamper evidence, rotation, key files."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat

import pytest

from app.clearing.crypto import (
    ContactCipher,
    ContactUndecryptable,
    DataKeyMissing,
    create_data_key,
    key_id,
    load_data_key,
)

CONTACT = {"name": "Li Wei", "email": "li.wei@example.com", "phone": "+86 138 0000 0000"}


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


def test_round_trip_in_the_stored_form(key):
    cipher = ContactCipher(key)
    stored = cipher.encrypt("mbr_1", CONTACT)
    assert re.fullmatch(r"v1:[0-9a-f]{8}:[A-Za-z0-9_=-]+", stored)
    assert stored.split(":")[1] == cipher.key_id == hashlib.sha256(key).hexdigest()[:8]
    assert cipher.decrypt("mbr_1", stored) == CONTACT
    assert "li.wei" not in stored and "example" not in stored


def test_every_encryption_uses_a_fresh_nonce(key):
    cipher = ContactCipher(key)
    first, second = cipher.encrypt("mbr_1", CONTACT), cipher.encrypt("mbr_1", CONTACT)
    assert first != second
    assert cipher.decrypt("mbr_1", first) == cipher.decrypt("mbr_1", second)


def test_ciphertext_moved_to_another_member_does_not_open(key):
    cipher = ContactCipher(key)
    with pytest.raises(ContactUndecryptable, match="another member"):
        cipher.decrypt("mbr_2", cipher.encrypt("mbr_1", CONTACT))


def test_wrong_key_does_not_open(key):
    stored = ContactCipher(key).encrypt("mbr_1", CONTACT)
    other = ContactCipher(os.urandom(32))
    with pytest.raises(ContactUndecryptable, match="not loaded"):
        other.decrypt("mbr_1", stored)
    # Even when the row claims the other key's id, GCM refuses.
    version, _, body = stored.split(":")
    forged = f"{version}:{other.key_id}:{body}"
    with pytest.raises(ContactUndecryptable, match="does not open"):
        other.decrypt("mbr_1", forged)


def test_tampered_text_does_not_open(key):
    cipher = ContactCipher(key)
    version, kid, body = cipher.encrypt("mbr_1", CONTACT).split(":")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[20] ^= 0x01
    tampered = f"{version}:{kid}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(ContactUndecryptable):
        cipher.decrypt("mbr_1", tampered)


@pytest.mark.parametrize("stored", [
    "", "plaintext@example.com", "v2:abcdef12:AAAA", "v1:abcdef12", "v1::AAAA",
    "v1:{kid}:", "v1:{kid}:not base64!", "v1:{kid}:AAAA", "v1:{kid}:AAAA:AAAA", None,
])
def test_malformed_text_is_a_clear_error(key, stored):
    cipher = ContactCipher(key)
    if stored is not None:
        stored = stored.format(kid=cipher.key_id)
    with pytest.raises(ContactUndecryptable):
        cipher.decrypt("mbr_1", stored)


def test_rotation_old_keys_decrypt_new_key_encrypts(key):
    old_stored = ContactCipher(key).encrypt("mbr_1", CONTACT)
    new_key = os.urandom(32)
    for rotated in (ContactCipher(new_key, old_keys={key_id(key): key}),
                    ContactCipher(new_key, old_keys=[key])):
        assert rotated.decrypt("mbr_1", old_stored) == CONTACT
        fresh = rotated.encrypt("mbr_1", CONTACT)
        assert fresh.split(":")[1] == key_id(new_key) != key_id(key)
        assert ContactCipher(new_key).decrypt("mbr_1", fresh) == CONTACT


def test_keys_are_checked(key):
    for bad in (b"short", os.urandom(16), os.urandom(33), "x" * 32):
        with pytest.raises(ValueError):
            ContactCipher(bad)
    with pytest.raises(ValueError, match="does not match"):
        ContactCipher(key, old_keys={"deadbeef": os.urandom(32)})
    with pytest.raises(TypeError):
        ContactCipher(key).encrypt("mbr_1", ["not", "a", "dict"])


def test_create_then_load_a_key_file(tmp_path):
    path = tmp_path / "keys" / "data-key"
    key = create_data_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text()) == key
    assert load_data_key(path) == key


def test_a_key_file_is_never_overwritten(tmp_path):
    path = tmp_path / "data-key"
    key = create_data_key(path)
    with pytest.raises(FileExistsError):
        create_data_key(path)
    assert load_data_key(path) == key


def test_missing_or_bad_key_files(tmp_path):
    with pytest.raises(DataKeyMissing, match="pointclear keys init"):
        load_data_key(tmp_path / "absent")
    bad = tmp_path / "bad"
    for text in ("not base64 at all!", base64.b64encode(os.urandom(16)).decode()):
        bad.write_text(text)
        with pytest.raises(ValueError):
            load_data_key(bad)
