"""One webhook POST: resolve the host, vet every address, connect to a vetted address
and get the answer -- all before a hard deadline.

- **Where.** The host is resolved once per attempt and every address it resolves to is
  vetted (:mod:`app.clearing.webhook_urls`): outside development, one private,
  loopback or reserved address refuses the attempt. The connection then goes to a
  vetted address itself -- never to the name again, which a DNS server could answer
  differently a moment later (rebinding) -- while the ``Host`` header, TLS SNI and the
  certificate check use the host name. No proxy is used and no redirect is followed (a
  3xx is an answer like any other that is not 2xx).
- **How long.** A socket timeout bounds each operation, not the attempt: a server that
  trickles a byte a second would hold it for ever, outlive the claim's lease, and a
  second worker would POST the same delivery beside it. Here every step -- resolving,
  connecting, the TLS handshake, sending, each read -- gets only the time left before
  the attempt's deadline, and at most ``MAX_RESPONSE_READ`` bytes of the answer are read.
- **What the partner sees.** Only a category (:data:`CATEGORIES`, or ``http_<status>``):
  what exactly went wrong names addresses and errors of the platform's network, so it
  goes to the worker's own output (``Answer.detail``), not to the delivery log.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.clearing.webhook_urls import allowed_scheme, public_address

MAX_RESPONSE_READ = 64 * 1024
CONNECTION_FAILED, TIMEOUT, TLS_ERROR = "connection_failed", "timeout", "tls_error"
REFUSED_ADDRESS = "refused_address"
CATEGORIES = (CONNECTION_FAILED, TIMEOUT, TLS_ERROR, REFUSED_ADDRESS)


@dataclass(frozen=True)
class Answer:
    """How one POST ended.

    Attributes:
      status: the HTTP status the endpoint answered, or None if it never did.
      error: None for a 2xx; else the category the partner sees (``http_<status>``,
        ``timeout``, ...).
      detail: what happened, for the worker's output and log only.
    """

    status: int | None
    error: str | None
    detail: str | None = None


class RefusedAddress(Exception):
    """The URL's scheme or one of its host's addresses may not receive webhooks here."""


def left(deadline: float) -> float:
    """Seconds left before ``deadline`` (``time.monotonic``); none left is a timeout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the attempt's deadline passed")
    return remaining


def resolve(host: str, port: int, *, deadline: float, dev_targets: bool) -> list[tuple]:
    """``(family, sockaddr)`` of every address of ``host``, each vetted; refused whole if
    any one is not public (outside development)."""
    found: dict = {}

    def lookup():
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # noqa: BLE001  (handed to the waiting thread)
            found["error"] = exc

    # getaddrinfo takes no timeout: wait for it only as long as the attempt may last.
    resolver = threading.Thread(target=lookup, name="webhook-dns", daemon=True)
    resolver.start()
    resolver.join(left(deadline))
    if resolver.is_alive():
        raise TimeoutError(f"resolving {host} outlasted the attempt")
    if "error" in found:
        raise found["error"]
    addresses = [(family, sockaddr) for family, _, _, _, sockaddr in found["infos"]
                 if family in (socket.AF_INET, socket.AF_INET6)]
    if not addresses:
        raise OSError(f"{host} has no IPv4 or IPv6 address")
    if not dev_targets:
        for _, sockaddr in addresses:
            if not public_address(sockaddr[0]):
                raise RefusedAddress(f"{host} resolves to {sockaddr[0]}, which is not a "
                                     "public address")
    return addresses


def open_socket(addresses: list[tuple], deadline: float) -> socket.socket:
    """A TCP connection to the first of the vetted ``addresses`` that accepts one."""
    error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(left(deadline))
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            error = exc
    raise error or OSError("no address to connect to")


class _DeadlineReader(io.RawIOBase):
    """The answer's bytes, each read given only the time left; EOF after the cap."""

    def __init__(self, owner: _DeadlineSocket):
        self._owner, self._read = owner, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        room = MAX_RESPONSE_READ - self._read
        if room <= 0:
            return 0
        sock = self._owner.sock
        sock.settimeout(left(self._owner.deadline))
        n = sock.recv_into(memoryview(buffer)[:room])
        self._read += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._owner.file_closed()
        super().close()


class _DeadlineSocket:
    """The socket as http.client uses it (sendall, makefile, close), on a deadline.
    Like a socket's own files, an open answer keeps it open until the answer is closed
    (http.client closes the connection as soon as it has the headers of an answer that
    ends with the connection)."""

    def __init__(self, sock, deadline: float):
        self.sock, self.deadline = sock, deadline
        self._files, self._closing = 0, False

    def sendall(self, data) -> None:
        self.sock.settimeout(left(self.deadline))
        self.sock.sendall(data)  # the timeout bounds the whole sendall

    def makefile(self, *_args, **_kwargs):
        self._files += 1
        return io.BufferedReader(_DeadlineReader(self))

    def file_closed(self) -> None:
        self._files -= 1
        if self._closing and not self._files:
            self.sock.close()

    def close(self) -> None:
        self._closing = True
        if not self._files:
            self.sock.close()


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``host`` (its Host header) over a connection to a vetted address."""

    def __init__(self, host: str, port: int, *, addresses: list, deadline: float):
        super().__init__(host, port)
        self._addresses, self._deadline = addresses, deadline

    def connect(self) -> None:
        self.sock = _DeadlineSocket(open_socket(self._addresses, self._deadline),
                                    self._deadline)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (Host header, SNI, certificate) over a vetted address."""

    def __init__(self, host: str, port: int, *, addresses: list, deadline: float,
                 context: ssl.SSLContext):
        super().__init__(host, port, context=context)
        self._addresses, self._deadline = addresses, deadline

    def connect(self) -> None:
        raw = open_socket(self._addresses, self._deadline)
        try:
            raw.settimeout(left(self._deadline))
            tls = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock = _DeadlineSocket(tls, self._deadline)


def post(url: str, body: bytes, headers: dict[str, str], *, deadline: float,
         dev_targets: bool = False, context: ssl.SSLContext | None = None) -> Answer:
    """POST ``body`` to ``url``, finished by ``deadline`` (``time.monotonic``) whatever
    the server does; ``context``: the TLS context (default: the system's trust store)."""
    parts = urlsplit(url)
    try:
        if not allowed_scheme(parts.scheme, dev_targets=dev_targets):
            raise RefusedAddress(f"{parts.scheme}:// is not allowed here (only https://)")
        if not parts.hostname:
            raise RefusedAddress("the URL names no host")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        addresses = resolve(parts.hostname, port, deadline=deadline,
                            dev_targets=dev_targets)
        if https:
            connection = PinnedHTTPSConnection(
                parts.hostname, port, addresses=addresses, deadline=deadline,
                context=context or ssl.create_default_context())
        else:
            connection = PinnedHTTPConnection(parts.hostname, port, addresses=addresses,
                                              deadline=deadline)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", target, body=body,
                               headers={**headers, "Connection": "close"})
            response = connection.getresponse()
            try:
                _drain(response)
            finally:
                response.close()
        finally:
            connection.close()
    except RefusedAddress as exc:
        return Answer(None, REFUSED_ADDRESS, str(exc))
    except TimeoutError as exc:
        return Answer(None, TIMEOUT, _text(exc))
    except ssl.SSLError as exc:  # a certificate that does not verify, a failed handshake
        return Answer(None, TLS_ERROR, _text(exc))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Answer(None, CONNECTION_FAILED, _text(exc))
    status = response.status
    detail = f"HTTP {status} {response.reason}".strip()
    return Answer(status, None if 200 <= status < 300 else f"http_{status}", detail)


def _drain(response: http.client.HTTPResponse) -> None:
    """Read what the answer has (to the cap, before the deadline): the status is known,
    so a body cut short changes nothing."""
    try:
        while response.read(16 * 1024):
            pass
    except (OSError, http.client.HTTPException, ValueError):
        pass


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
