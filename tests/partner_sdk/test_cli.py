"""``pointclear-sdk``: keygen, request (against a MockTransport, and once through the
installed script against a tiny local HTTP server), verify-webhook, verify-signature."""

from __future__ import annotations

import base64
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from partner_sdk import cli, load_private_key, public_key_hex, public_key_pem
from partner_sdk.keys import private_key_pem
from partner_sdk.webhooks import DETACHED_TAG

from .test_signing import check_signed
from .test_webhooks import NOW, deliver

SCRIPT = Path(sys.executable).parent / "pointclear-sdk"


def test_keygen_writes_an_owner_only_key_and_prints_the_public_half(tmp_path, capsys):
    prefix = tmp_path / "banka"
    assert cli.main(["keygen", "--out", str(prefix)]) == 0
    private = Path(f"{prefix}.pem")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = load_private_key(private)
    out = capsys.readouterr().out
    assert public_key_hex(key) in out and public_key_pem(key).strip() in out
    assert Path(f"{prefix}.pub.pem").read_text() == public_key_pem(key)
    assert cli.main(["keygen", "--out", str(prefix)]) == 1  # never overwritten silently
    assert "exists" in capsys.readouterr().err
    assert cli.main(["keygen", "--out", str(prefix), "--force"]) == 0
    assert public_key_hex(load_private_key(private)) != public_key_hex(key)


@pytest.fixture
def key_file(tmp_path) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "banka.pem"
    path.write_bytes(private_key_pem(key))
    return path, key


def run_request(key_file, handler, *args: str) -> int:
    path, _ = key_file
    return cli.main(["request", "--partner", "banka", "--key-id", "key_0123456789abcdef",
                     "--key", str(path), "--base-url", "http://api.test", *args],
                    transport=httpx.MockTransport(handler))


def test_request_signs_sends_and_prints(key_file, capsys):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "op-1", "points": 20},
                              headers={"X-Request-Id": "req-9", "Idempotent-Replayed": "true"})

    code = run_request(key_file, handler, "--idempotency-key", "k-77", "post",
                       "/v1/redemptions", '{"customer_ref": "mm-1", "points": 20}')
    assert code == 0
    check_signed(seen[0], key_file[1].public_key())
    assert seen[0].content == b'{"customer_ref":"mm-1","points":20}'
    assert seen[0].headers["Idempotency-Key"] == "k-77"
    out = capsys.readouterr().out
    assert out.startswith("HTTP 201\n")
    for line in ("Idempotency-Key: k-77 (sent)", "X-Request-Id: req-9",
                 "Idempotent-Replayed: true", '"points": 20'):
        assert line in out


def test_request_with_a_query_and_an_error_exits_1(key_file, capsys):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"code": "member_not_found", "status": 404},
                              headers={"Content-Type": "application/problem+json"})

    assert run_request(key_file, handler, "GET", "/v1/transactions?customer_ref=x&limit=5") == 1
    assert seen[0].url.raw_path == b"/v1/transactions?customer_ref=x&limit=5"
    check_signed(seen[0], key_file[1].public_key())
    out = capsys.readouterr().out
    assert out.startswith("HTTP 404\n") and "member_not_found" in out


def test_request_reads_the_body_from_a_file_and_needs_credentials(key_file, tmp_path,
                                                                  capsys, monkeypatch):
    body = tmp_path / "body.json"
    body.write_text('{"ttl_seconds": 300}')
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"token": "mt_x"})

    assert run_request(key_file, handler, "POST", "/v1/members/c-1/tokens", f"@{body}") == 0
    assert json.loads(seen[0].content) == {"ttl_seconds": 300}
    for name in ("POINTCLEAR_PARTNER", "POINTCLEAR_KEY_ID", "POINTCLEAR_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["request", "GET", "/v1/partner"]) == 2
    assert "--partner, --key-id, --key" in capsys.readouterr().err


def test_request_that_cannot_connect_exits_1(key_file, capsys):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert run_request(key_file, handler, "--max-retries", "0", "GET", "/v1/partner") == 1
    assert "ConnectError" in capsys.readouterr().err


class _Checking(http.server.BaseHTTPRequestHandler):
    """Answers 200 if the request carries a signature over what it received."""

    public_key = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        h = self.headers
        path, _, query = self.path.partition("?")
        message = "\n".join(["pointclear-v1", "GET", path, query, h["Pointclear-Timestamp"],
                             h["Pointclear-Nonce"], h["Content-Digest"]]).encode()
        try:
            self.public_key.verify(base64.b64decode(h["Pointclear-Signature"]), message)
            status, body = 200, {"id": "banka", "path": self.path}
        except Exception:  # noqa: BLE001 -- any failure is a refusal here
            status, body = 401, {"code": "bad_signature"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_the_installed_script_talks_to_a_real_http_server(key_file):
    handler = type("Handler", (_Checking,), {"public_key": key_file[1].public_key()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [str(SCRIPT), "request", "--key", str(key_file[0]),
             "--base-url", f"http://127.0.0.1:{server.server_port}", "GET",
             "/v1/members/m%C3%A9/balances?x=1"],
            env={**os.environ, "POINTCLEAR_PARTNER": "banka",
                 "POINTCLEAR_KEY_ID": "key_0123456789abcdef"},
            capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("HTTP 200")
    assert "/v1/members/m%C3%A9/balances?x=1" in result.stdout  # signed as it was received


def test_the_installed_script_has_help_for_each_command():
    for command in ("keygen", "request", "verify-webhook", "verify-signature"):
        result = subprocess.run([str(SCRIPT), command, "--help"], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0 and "usage: pointclear-sdk" in result.stdout


def write_delivery(tmp_path, platform_key, **options) -> tuple[Path, Path]:
    body, headers = deliver(platform_key, **options)
    headers_file, body_file = tmp_path / "headers.txt", tmp_path / "body.json"
    headers_file.write_text("POST /hooks/pointclear HTTP/1.1\n"
                            + "".join(f"{k}: {v}\n" for k, v in headers.items()))
    body_file.write_bytes(body)
    return headers_file, body_file


def test_verify_webhook(tmp_path, capsys):
    platform = Ed25519PrivateKey.generate()
    headers, body = write_delivery(tmp_path, platform, timestamp=NOW)
    key_file = tmp_path / "platform.pub.pem"
    key_file.write_text(public_key_pem(platform))
    common = ["--headers", str(headers), "--body", str(body), "--tolerance", "999999999"]
    assert cli.main(["verify-webhook", "--platform-key", public_key_hex(platform), *common]) == 0
    assert "verified: event evt_0190a (transaction.posted)" in capsys.readouterr().out
    assert cli.main(["verify-webhook", "--platform-key", str(key_file), *common]) == 0
    assert cli.main(["verify-webhook", "--platform-key", f"pk_1={public_key_hex(platform)}",
                     *common]) == 0
    assert cli.main(["verify-webhook", "--platform-key", f"pk_9={public_key_hex(platform)}",
                     *common]) == 1
    assert "unknown platform key" in capsys.readouterr().err
    body.write_bytes(body.read_bytes().replace(b"5000", b"9000"))
    assert cli.main(["verify-webhook", "--platform-key", public_key_hex(platform), *common]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().err
    assert cli.main(["verify-webhook", "--platform-key", public_key_hex(platform),
                     "--headers", str(headers), "--body", str(body)]) == 1  # stale by default


def test_verify_signature(tmp_path, capsys):
    platform = Ed25519PrivateKey.generate()
    statement = tmp_path / "statement-2026-01-15.csv"
    statement.write_bytes(b"partner,net\nbanka,-1960\n")
    signature = base64.b64encode(platform.sign(DETACHED_TAG + statement.read_bytes())).decode()
    sig_file = tmp_path / "statement.sig"
    sig_file.write_text(signature + "\n")
    key = public_key_hex(platform)
    assert cli.main(["verify-signature", "--public-key", key, "--signature", signature,
                     str(statement)]) == 0
    assert cli.main(["verify-signature", "--public-key", key, "--signature-file",
                     str(sig_file), str(statement)]) == 0
    statement.write_bytes(b"partner,net\nbanka,-1961\n")
    assert cli.main(["verify-signature", "--public-key", key, "--signature", signature,
                     str(statement)]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().err
