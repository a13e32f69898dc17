"""Sealing: committed transactions grouped into hash-chained, Ed25519-signed blocks.

A block's hash covers its height, the previous block's hash and, in order, the SHA-256
digest of each of its transactions in a canonical form (every column of the transaction
and of each of its postings). Changing, adding or removing any booked row of a sealed
transaction changes a digest, so :func:`verify_chain` finds it even if whoever changed it
also fixed the running totals. The platform signs each block hash; verification needs
only the public key, which the verifier must get from configuration -- never from the
database it is checking.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from .models import Account, Block, BlockEntry, Posting, Transaction
from .types import utcnow

GENESIS = "0" * 64
_TXN = Transaction.__table__
_POSTING = Posting.__table__
_ENTRY = BlockEntry.__table__


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key: the first 16 bytes of SHA-256, hex."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def transaction_digest(txn, postings) -> str:
    """SHA-256 of one transaction and its postings in canonical JSON."""
    body = [
        str(txn.id), txn.kind, txn.status, txn.reference, txn.meta,
        _iso(txn.created_at), _iso(txn.expires_at),
        str(txn.resolves_id) if txn.resolves_id else None,
        str(txn.reverses_id) if txn.reverses_id else None,
        [[p.line, p.account_id, p.code, p.account_unit, p.side, p.amount, p.unit]
         for p in postings],
    ]
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def block_hash(height: int, prev_hash: str, digests: list[str]) -> str:
    h = hashlib.sha256(f"pointclear-block|{height}|{prev_hash}|{len(digests)}".encode())
    for digest in digests:
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def _digests(session: Session, txn_rows) -> list[str]:
    ids = [t.id for t in txn_rows]
    lines: dict = {i: [] for i in ids}
    # The account's code and unit are sealed with each posting: renaming or swapping
    # accounts behind the ledger's back moves money as surely as editing an amount.
    for p in session.execute(
        select(_POSTING, Account.code, Account.unit.label("account_unit"))
        .join(Account, Account.id == _POSTING.c.account_id)
        .where(_POSTING.c.transaction_id.in_(ids))
        .order_by(_POSTING.c.transaction_id, _POSTING.c.line)
    ):
        lines[p.transaction_id].append(p)
    return [transaction_digest(t, lines[t.id]) for t in txn_rows]


def _lock_chain(session: Session) -> None:
    # One sealer at a time. SQLite's BEGIN IMMEDIATE already serialises writers.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('pointclear.ledger.seal'))"))


@dataclass(frozen=True, slots=True)
class SealedBlock:
    """Attributes: height, hash, tx_count."""

    height: int
    hash: str
    tx_count: int


def seal(session: Session, private_key: Ed25519PrivateKey, *, block_size: int = 1000,
         max_blocks: int | None = None) -> list[SealedBlock]:
    """Seal every committed, unsealed transaction into blocks of at most ``block_size``."""
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    _lock_chain(session)
    tip = session.execute(
        select(Block.height, Block.hash).order_by(Block.height.desc()).limit(1)
    ).first()
    height, prev = (tip.height, tip.hash) if tip else (0, GENESIS)
    kid = key_id(private_key.public_key())
    sealed: list[SealedBlock] = []
    while max_blocks is None or len(sealed) < max_blocks:
        rows = session.execute(
            select(_TXN)
            .outerjoin(_ENTRY, _ENTRY.c.transaction_id == _TXN.c.id)
            .where(_ENTRY.c.transaction_id.is_(None))
            .order_by(_TXN.c.created_at, _TXN.c.id)
            .limit(block_size)
        ).all()
        if not rows:
            break
        height += 1
        digest = block_hash(height, prev, _digests(session, rows))
        signature = private_key.sign(bytes.fromhex(digest)).hex()
        session.execute(insert(Block.__table__).values(
            height=height, prev_hash=prev, hash=digest, signature=signature, key_id=kid,
            tx_count=len(rows), created_at=utcnow(),
        ))
        session.execute(insert(_ENTRY), [{"transaction_id": t.id, "height": height} for t in rows])
        sealed.append(SealedBlock(height, digest, len(rows)))
        prev = digest
    session.flush()
    return sealed


def verify_chain(session: Session, public_keys: list[Ed25519PublicKey] | None,
                 tip: tuple[int, str] | None = None) -> list[str]:
    """Recompute every block; return a description of each break found.

    With ``public_keys`` None, signatures are not checked (the hash chain still is).
    ``tip`` is a (height, hash) recorded outside the database when it was sealed (``ledger
    seal`` prints it): without it, someone able to delete the newest blocks could edit
    what they sealed and leave it looking merely unsealed.
    """
    problems: list[str] = []
    if tip is not None:
        height, digest = tip
        found = session.scalar(select(Block.hash).where(Block.height == height))
        if found is None:
            problems.append(f"block {height}, recorded as the tip, is missing")
        elif found != digest:
            problems.append(f"block {height} has hash {found}, the recorded tip says {digest}")
    keys = {key_id(k): k for k in public_keys or []}
    prev = GENESIS
    expected_height = 0
    for block in session.scalars(select(Block).order_by(Block.height)):
        expected_height += 1
        if block.height != expected_height:
            problems.append(f"block {expected_height} is missing (next is {block.height})")
            expected_height = block.height
        if block.prev_hash != prev:
            problems.append(f"block {block.height} does not chain to block {block.height - 1}")
        rows = session.execute(
            select(_TXN).join(_ENTRY, _ENTRY.c.transaction_id == _TXN.c.id)
            .where(_ENTRY.c.height == block.height)
            .order_by(_TXN.c.created_at, _TXN.c.id)
        ).all()
        if len(rows) != block.tx_count:
            problems.append(
                f"block {block.height} sealed {block.tx_count} transactions, {len(rows)} remain")
        if block_hash(block.height, block.prev_hash, _digests(session, rows)) != block.hash:
            problems.append(
                f"block {block.height}: a sealed transaction or posting was changed after sealing")
        if public_keys is not None:
            key = keys.get(block.key_id)
            if key is None:
                problems.append(f"block {block.height} is signed by unknown key {block.key_id}")
            else:
                try:
                    key.verify(bytes.fromhex(block.signature), bytes.fromhex(block.hash))
                except (InvalidSignature, ValueError):
                    problems.append(f"block {block.height} has an invalid signature")
        prev = block.hash
    return problems


def unsealed_count(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(_TXN)
        .outerjoin(_ENTRY, _ENTRY.c.transaction_id == _TXN.c.id)
        .where(_ENTRY.c.transaction_id.is_(None))
    )
