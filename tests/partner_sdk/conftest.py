"""Fixtures for the partner SDK's unit tests: a scripted API behind httpx.MockTransport.

No server runs: :class:`ScriptedAPI` answers each request with the next scripted
response (or raises the next scripted transport error) and records what was sent, so a
test can check every attempt's headers and bytes. The retry wait is stubbed: ``waits``
records what the client would have slept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from partner_sdk import Client

BASE_URL = "http://api.test"
PARTNER, KEY_ID = "banka", "key_0123456789abcdef"


def problem(status: int, code: str, detail: str = "refused", field_: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    """A problem+json answer shaped like the API's (app/errors.py)."""
    body = {"type": f"https://pointclear.example/problems/{code}", "title": code,
            "status": status, "detail": detail, "code": code, **extra}
    if field_:
        body["field"] = field_
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/problem+json",
                                   **(headers or {})})


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class ScriptedAPI:
    """Answers request N with ``script[N]``; records every request it saw."""

    script: list[Step] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"unscripted request {request.method} {request.url}")
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    def then(self, *steps: Step) -> ScriptedAPI:
        self.script.extend(steps)
        return self

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def json_of(self, n: int) -> Any:
        return json.loads(self.requests[n].content)


@pytest.fixture
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def scripted() -> ScriptedAPI:
    return ScriptedAPI()


@pytest.fixture
def waits() -> list[tuple[int, float | None]]:
    """(attempt, retry_after) of every backoff the client asked for."""
    return []


@pytest.fixture
def client(scripted, private_key, waits):
    """A client on the scripted API whose backoff records and never sleeps."""
    def backoff(attempt: int, retry_after: float | None) -> float:
        waits.append((attempt, retry_after))
        return 0.0

    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL, transport=scripted.transport,
                backoff=backoff, sleep=lambda seconds: None) as c:
        yield c
