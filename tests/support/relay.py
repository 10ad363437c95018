"""A TCP relay that can go silent: the connections stay open, but nothing passes either way any more.

That is how a dead server or a broken network looks to a client: no close, no reset, only silence,
which the client can notice only by its own pings going unanswered.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """Forwards every connection made to `port` to 127.0.0.1:`target` until `go_silent()`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.silent = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def go_silent(self) -> None:
        self.silent.set()

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), name="relay-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.silent.is_set():
                continue  # swallowed: the other side hears nothing, and nothing is closed
            try:
                sink.sendall(data)
            except OSError:
                return
