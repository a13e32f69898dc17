"""A tiny HTTP/1.1 proxy for fault tests: it can swallow a response after the server
produced it, as a connection that drops between the server's commit and the client.

Only what the tests need: requests and responses with Content-Length (no chunking),
keep-alive connections, one upstream connection per client connection.
"""

from __future__ import annotations

import socket
import socketserver
import threading


def _read_message(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    """One HTTP message (head + Content-Length body) from ``sock``; None at EOF."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buffer
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buffer
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


class DroppingProxy:
    """Forward to ``upstream`` (host, port); drop the responses of the first ``drops``
    requests whose request line starts with ``match`` (e.g. b"POST /v1/redemptions")."""

    def __init__(self, upstream: tuple[str, int], match: bytes, drops: int = 1):
        self.upstream, self.match, self.drops = upstream, match, drops
        self.dropped = 0
        self.seen: list[bytes] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _drop_this(self, request: bytes) -> bool:
        with self._lock:
            self.seen.append(request.split(b"\r\n", 1)[0])
            if request.startswith(self.match) and self.dropped < self.drops:
                self.dropped += 1
                return True
            return False

    def _serve(self, client: socket.socket) -> None:
        with socket.create_connection(self.upstream) as upstream:
            from_client, from_upstream = b"", b""
            while True:
                request, from_client = _read_message(client, from_client)
                if request is None:
                    return
                upstream.sendall(request)
                response, from_upstream = _read_message(upstream, from_upstream)
                if response is None:
                    return
                if self._drop_this(request):
                    client.shutdown(socket.SHUT_RDWR)  # the server committed; the client
                    return                              # never hears of it
                client.sendall(response)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
