"""Keys load from a key object, PEM bytes, PEM text or a PEM file; bad keys are refused
with the SDK's own error."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from partner_sdk import (
    Client,
    InvalidKeyError,
    generate_private_key_pem,
    load_private_key,
    load_public_key,
    public_key_hex,
)
from partner_sdk.keys import private_key_pem


@pytest.fixture
def pem() -> bytes:
    return generate_private_key_pem()


@pytest.mark.parametrize("form", ["object", "bytes", "text", "path", "path-text"])
def test_a_private_key_loads_from_every_form(pem, tmp_path, form):
    path = tmp_path / "banka.pem"
    path.write_bytes(pem)
    expected = public_key_hex(load_private_key(pem))
    given = {"object": load_private_key(pem), "bytes": pem, "text": pem.decode(),
             "path": path, "path-text": str(path)}[form]
    assert public_key_hex(load_private_key(given)) == expected
    client = Client("banka", "key_1", given)
    client.close()


def test_unusable_private_keys_are_refused(tmp_path):
    with pytest.raises(InvalidKeyError, match="not PEM and names no readable file"):
        load_private_key(tmp_path / "missing.pem")
    with pytest.raises(InvalidKeyError, match="not a PEM"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    ec = generate_private_key(SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(InvalidKeyError, match="not Ed25519"):
        load_private_key(ec)
    with pytest.raises(InvalidKeyError):
        load_private_key(42)  # type: ignore[arg-type]


def test_public_keys_load_from_hex_raw_and_pem():
    key = Ed25519PrivateKey.generate()
    hex_key = public_key_hex(key)
    assert public_key_hex(load_public_key(hex_key)) == hex_key
    assert public_key_hex(load_public_key(bytes.fromhex(hex_key))) == hex_key
    for bad in ("abc", "zz" * 32, b"short"):
        with pytest.raises(InvalidKeyError):
            load_public_key(bad)


def test_generated_pem_round_trips():
    key = load_private_key(generate_private_key_pem())
    assert load_private_key(private_key_pem(key)).private_bytes_raw() == key.private_bytes_raw()
