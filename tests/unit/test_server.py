"""Ember's HTTP front under many open connections: Slack (or a proxy in front) may hold more than a
hundred at once, and each must be answered."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

from bot.server import EmberWSGI, HttpServer

OPEN_AT_ONCE = 150


def test_every_one_of_many_connections_held_open_at_once_is_answered() -> None:
    server = HttpServer(
        EmberWSGI(None, None, health=lambda: {"status": "ok"}, metrics=lambda: b""), host="127.0.0.1", port=0
    )
    server.start()
    try:
        # Every connection is open before any asks: a server that stops accepting at a limit
        # leaves the ones past it waiting.
        connections = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(OPEN_AT_ONCE)]

        def ask(connection: socket.socket) -> bytes:
            request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: keep-alive\r\n\r\n"
            connection.sendall(request.encode())
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                received += chunk
            return received.split(b"\r\n", 1)[0]

        with ThreadPoolExecutor(max_workers=32) as pool:
            status_lines = list(pool.map(ask, connections))
        assert status_lines == [b"HTTP/1.1 200 OK"] * OPEN_AT_ONCE
        for connection in connections:
            connection.close()
    finally:
        server.stop()
