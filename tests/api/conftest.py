"""API tests run the whole app against the suite's database (SQLite or PostgreSQL),
with committed data: every test builds its own cast with ids no other test uses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.orm import sessionmaker

from app import create_app
from app.clearing import partners
from app.clearing.crypto import create_data_key
from tests.clearing.conftest import World, build_world

from .signing import SignedClient


@pytest.fixture
def api(engine, database_url, tmp_path):
    create_data_key(tmp_path / "data-key")
    return create_app({"TESTING": True, "DATABASE_URL": database_url,
                       "SIGNING_KEY": str(tmp_path / "signing-key.pem"),
                       "DATA_KEY": str(tmp_path / "data-key")})


@dataclass
class Cast:
    world: World
    clients: dict

    def __getitem__(self, partner: str) -> SignedClient:
        return self.clients[partner]

    def id(self, name: str) -> str:
        return self.world.id(name)


_casts = itertools.count(1)


@pytest.fixture
def cast(api, engine) -> Cast:
    """DESIGN.md's cast (see tests/clearing/conftest.py), each partner with a signing key
    and a signed test client, built at the current time."""
    from ledger.types import utcnow

    # A counter, not random: every run has a fresh database, and ids must fit a program
    # code (COALITION + 7 characters) without ever colliding within the run.
    suffix = f"x{next(_casts):05d}"
    with sessionmaker(bind=engine)() as session:
        world = build_world(session, utcnow(), suffix)
        clients = {}
        for name in ("banka", "skyair", "megamart", "telco"):
            private = Ed25519PrivateKey.generate()
            raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            key = partners.add_key(session, world.id(name), raw.hex())
            clients[name] = (private, key.id)
        session.commit()
    test_client = api.test_client()
    return Cast(world, {name: SignedClient(test_client, private, key_id)
                        for name, (private, key_id) in clients.items()})
