"""``pointclear-sdk``: what a partner's engineer reaches for while integrating.

::

    pointclear-sdk keygen --out banka                 # banka.pem (0600) + banka.pub.pem
    pointclear-sdk request --partner banka --key-id key_... --key banka.pem \\
        POST /v1/redemptions '{"customer_ref": "mm-1", "program": "BANKA", "points": 20}'
    pointclear-sdk verify-webhook --platform-key KEY --headers h.txt --body body.json
    pointclear-sdk verify-signature --public-key KEY --signature B64 statement.csv

Exit status: 0 on success; 1 when the API answered 4xx/5xx, could not be reached, or a
signature did not verify; 2 for a usage error. ``request`` reads its defaults from
``POINTCLEAR_PARTNER``, ``POINTCLEAR_KEY_ID``, ``POINTCLEAR_KEY`` and
``POINTCLEAR_BASE_URL``. Standalone: argparse only, no platform code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .client import DEFAULT_BASE_URL, Client
from .errors import PartnerSDKError
from .keys import (
    InvalidKeyError,
    PublicKeyLike,
    generate_private_key_pem,
    load_private_key,
    public_key_hex,
    public_key_pem,
)
from .webhooks import SignatureVerificationError, verify_detached, verify_webhook

#: Response headers worth showing while integrating.
SHOWN_HEADERS = ("Content-Type", "Idempotent-Replayed", "X-Request-Id", "Retry-After",
                 "WWW-Authenticate", "Location")


def _out(text: str = "") -> None:
    print(text)


def _err(text: str) -> None:
    print(f"pointclear-sdk: {text}", file=sys.stderr)


def keygen(args: argparse.Namespace) -> int:
    """Write PREFIX.pem (private, owner-only) and PREFIX.pub.pem; print the public key."""
    private_path = Path(f"{args.out}.pem")
    public_path = Path(f"{args.out}.pub.pem")
    pem = generate_private_key_pem()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    if args.force and private_path.exists():
        private_path.unlink()  # recreated below with mode 0600, whatever it had
    try:
        fd = os.open(private_path, flags, 0o600)  # owner-only from the first byte
    except FileExistsError:
        _err(f"{private_path} exists; pass --force to replace it")
        return 1
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    key = load_private_key(pem)
    public_path.write_text(public_key_pem(key))
    _out(f"private key: {private_path} (mode 0600: keep it secret, never send it)")
    _out(f"public key:  {public_path}")
    _out(f"public key (hex): {public_key_hex(key)}")
    _out(public_key_pem(key).rstrip())
    _out("Register the public key with the platform (hex or PEM); it answers with the key "
         "id to pass as --key-id.")
    return 0


def _json_arg(value: str | None) -> Any:
    if value is None:
        return None
    text = sys.stdin.read() if value == "-" else (
        Path(value[1:]).read_text() if value.startswith("@") else value)
    return json.loads(text)


def request(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """Sign and send one request; print the status, the headers of interest and the body."""
    missing = [flag for flag, value in (("--partner", args.partner), ("--key-id", args.key_id),
                                        ("--key", args.key)) if not value]
    if missing:
        _err(f"request needs {', '.join(missing)} (or POINTCLEAR_PARTNER, "
             "POINTCLEAR_KEY_ID, POINTCLEAR_KEY)")
        return 2
    try:
        body = _json_arg(args.json)
    except (ValueError, OSError) as exc:
        _err(f"the JSON body does not parse: {exc}")
        return 2
    try:
        with Client(args.partner, args.key_id, Path(args.key), base_url=args.base_url,
                    timeout=args.timeout, max_retries=args.max_retries,
                    transport=transport) as client:
            answer = client.request(args.method, args.path, json=body,
                                    idempotency_key=args.idempotency_key,
                                    raise_for_status=False)
    except PartnerSDKError as exc:
        _err(str(exc))
        return 1
    _out(f"HTTP {answer.status}")
    if answer.idempotency_key:
        _out(f"Idempotency-Key: {answer.idempotency_key} (sent)")
    for name in SHOWN_HEADERS:
        if name.lower() in answer.headers:
            _out(f"{name}: {answer.headers[name.lower()]}")
    if answer.attempts > 1:
        _out(f"Attempts: {answer.attempts}")
    _out()
    if isinstance(answer.body, (dict, list)):
        _out(json.dumps(answer.body, indent=2, ensure_ascii=False))
    elif answer.body is not None:
        _out(str(answer.body))
    return 1 if answer.status >= 400 else 0


def _public_key_arg(value: str) -> PublicKeyLike:
    """A public key given inline (64 hex digits or PEM) or as a file holding either
    (or 32 raw bytes)."""
    path = Path(value)
    if len(value) < 4096 and path.is_file():
        data = path.read_bytes()
        if b"-----BEGIN" in data or len(data) == 32:
            return data
        return data.decode("ascii").strip()
    return value


def _read_headers(path: Path) -> dict[str, str]:
    """``Name: value`` lines; a request line or blank lines are skipped."""
    headers = {}
    for line in path.read_text().splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() and " " not in name.strip():
            headers[name.strip()] = value.strip()
    return headers


def verify_webhook_cmd(args: argparse.Namespace) -> int:
    """Verify a captured webhook delivery; print its event."""
    headers = _read_headers(Path(args.headers))
    named = {k.lower(): v for k, v in headers.items()}.get("pointclear-webhook-key-id", "")
    keys: dict[str, PublicKeyLike] = {}
    for given in args.platform_key:
        key_id, eq, key = given.partition("=")
        if eq and not Path(given).exists():
            keys[key_id] = _public_key_arg(key)
        else:  # no key id given: the key the webhook names
            keys[named] = _public_key_arg(given)
    try:
        event = verify_webhook(Path(args.body).read_bytes(), headers, keys,
                               tolerance=args.tolerance)
    except (SignatureVerificationError, InvalidKeyError) as exc:
        _err(f"NOT VERIFIED: {exc}")
        return 1
    _out(f"verified: event {event.id} ({event.type}) for partner {event.partner}")
    _out(json.dumps(event.raw, indent=2, ensure_ascii=False))
    return 0


def verify_signature_cmd(args: argparse.Namespace) -> int:
    """Verify a detached signature over a whole file (a settlement statement)."""
    signature = args.signature or Path(args.signature_file).read_text().strip()
    try:
        verify_detached(Path(args.file).read_bytes(), signature,
                        _public_key_arg(args.public_key))
    except (SignatureVerificationError, InvalidKeyError) as exc:
        _err(f"NOT VERIFIED: {exc}")
        return 1
    _out(f"verified: {args.file}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointclear-sdk", description="Pointclear partner tools: make a signing key, "
        "send a signed request, verify a webhook or a statement signature.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="make an Ed25519 key pair to sign requests with",
                       description=keygen.__doc__)
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="write PREFIX.pem (private, mode 0600) and PREFIX.pub.pem")
    p.add_argument("--force", action="store_true", help="replace an existing PREFIX.pem")

    env = os.environ.get
    p = sub.add_parser("request", help="sign and send one API request",
                       description=f"{request.__doc__} Exit 1 on a 4xx/5xx answer.",
                       epilog="example: pointclear-sdk request --partner banka --key-id "
                       "key_... --key banka.pem GET '/v1/transactions?limit=5'")
    p.add_argument("--partner", default=env("POINTCLEAR_PARTNER"), help="your partner id")
    p.add_argument("--key-id", default=env("POINTCLEAR_KEY_ID"),
                   help="the key id the platform gave your public key")
    p.add_argument("--key", default=env("POINTCLEAR_KEY"), metavar="FILE",
                   help="your private key (PEM file)")
    p.add_argument("--base-url", default=env("POINTCLEAR_BASE_URL", DEFAULT_BASE_URL),
                   help=f"the API (default {DEFAULT_BASE_URL})")
    p.add_argument("--idempotency-key", help="for POST; a fresh random key by default")
    p.add_argument("--max-retries", type=int, default=3, help="default 3")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    p.add_argument("method", type=str.upper, choices=["GET", "POST"], metavar="METHOD",
                   help="GET or POST")
    p.add_argument("path", metavar="PATH", help="e.g. /v1/partner or "
                   "'/v1/transactions?kind=issue' (percent-encoded as it should be sent)")
    p.add_argument("json", nargs="?", metavar="JSON",
                   help="the body: JSON text, @FILE, or - for standard input")

    p = sub.add_parser("verify-webhook", help="verify a captured webhook delivery",
                       description=verify_webhook_cmd.__doc__)
    p.add_argument("--platform-key", required=True, action="append",
                   metavar="[KEY_ID=]HEX_OR_FILE",
                   help="a platform public key (64 hex digits, PEM, or a file of either); "
                   "repeat for several, naming each key id")
    p.add_argument("--headers", required=True, metavar="FILE",
                   help="the request headers, one 'Name: value' per line")
    p.add_argument("--body", required=True, metavar="FILE", help="the raw request body")
    p.add_argument("--tolerance", type=int, default=300,
                   help="seconds the timestamp may be off (default 300); raise it to "
                   "check an old capture")

    p = sub.add_parser("verify-signature", help="verify a detached Ed25519 signature "
                       "(settlement statements)", description=verify_signature_cmd.__doc__)
    p.add_argument("--public-key", required=True, metavar="HEX_OR_FILE",
                   help="the platform public key (64 hex digits, PEM, or a file of either)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--signature", metavar="B64", help="standard base64 signature")
    group.add_argument("--signature-file", metavar="FILE", help="a file holding it")
    p.add_argument("file", metavar="FILE", help="the signed file")
    return parser


def main(argv: Sequence[str] | None = None, *,
         transport: httpx.BaseTransport | None = None) -> int:
    """Run the command line; ``transport`` is for tests (an ``httpx.MockTransport``)."""
    args = build_parser().parse_args(argv)
    if args.command == "keygen":
        return keygen(args)
    if args.command == "request":
        return request(args, transport)
    if args.command == "verify-webhook":
        return verify_webhook_cmd(args)
    return verify_signature_cmd(args)


if __name__ == "__main__":
    sys.exit(main())
