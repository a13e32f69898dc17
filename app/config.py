"""Configuration from the environment, read when an app is created, never at import."""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "POINTCLEAR_"


def from_environ(instance_path: str) -> dict:
    """Settings for ``create_app``; every key can be set as ``POINTCLEAR_<KEY>``.

    DATABASE_URL   SQLAlchemy URL; default: SQLite file ``instance/pointclear.db``.
    SIGNING_KEY    PEM file of the platform's Ed25519 private key, which signs ledger
                   seals (``pointclear keys init`` creates it);
                   default: ``instance/platform-signing-key.pem``.
    DATA_KEY       file of the 32-byte key (base64) that encrypts members' contact data
                   at rest (``pointclear keys init`` creates it; losing it loses that
                   data, so back it up apart from the database);
                   default: ``instance/data-key``.
    SEAL_BLOCK_SIZE  transactions per sealed block (default 1000).
    MAX_BODY_BYTES   largest request body accepted (default 4 MiB: an import of 10,000
                   lines fits); larger ones are refused with 413 before they are read.
    WEBHOOK_DEV_TARGETS  ``1`` lets webhooks go to http:// URLs and to private, loopback
                   and link-local addresses (a demo or a test with a receiver on this
                   machine). Default ``0``: only https:// URLs whose host resolves to
                   public addresses only, checked again at every delivery attempt -- so
                   partners cannot point the worker at the platform's own network.
    """
    instance = Path(instance_path)
    env = os.environ
    return {
        "DATABASE_URL": env.get(f"{ENV_PREFIX}DATABASE_URL")
        or f"sqlite:///{instance / 'pointclear.db'}",
        "SIGNING_KEY": env.get(f"{ENV_PREFIX}SIGNING_KEY")
        or str(instance / "platform-signing-key.pem"),
        "DATA_KEY": env.get(f"{ENV_PREFIX}DATA_KEY") or str(instance / "data-key"),
        "SEAL_BLOCK_SIZE": int(env.get(f"{ENV_PREFIX}SEAL_BLOCK_SIZE", "1000")),
        # Flask refuses larger bodies with 413 before anything reads or hashes them.
        "MAX_CONTENT_LENGTH": int(env.get(f"{ENV_PREFIX}MAX_BODY_BYTES", str(4 * 2**20))),
        "WEBHOOK_DEV_TARGETS": flag(env.get(f"{ENV_PREFIX}WEBHOOK_DEV_TARGETS", "0"),
                                    "WEBHOOK_DEV_TARGETS"),
    }


def flag(value: str, name: str) -> bool:
    """An on/off setting; anything unrecognised is an error, not silently off or on."""
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENV_PREFIX}{name} must be 1 or 0 (true/false, yes/no, on/off), "
                     f"not {value!r}")
