"""A TCP proxy in front of PostgreSQL that loses replies: once for each watched statement (the
byte strings one request holds: a statement and its parameters), it forwards the COMMIT that
follows it, waits for the server's answer (the write has landed), and drops both connections
instead of relaying it, as a network that fails at the worst moment."""

from __future__ import annotations

import contextlib
import socket
import threading


class LostReplies:
    def __init__(self, upstream_port: int, watched: list[tuple[bytes, ...]]) -> None:
        self.upstream_port = upstream_port
        self.watched = list(watched)
        self.dropped: list[tuple[bytes, ...]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database_url: str) -> str:
        return database_url.replace(f":{self.upstream_port}/", f":{self.port}/")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            # the watched statement awaiting its COMMIT on this connection
            pending: list[tuple[bytes, ...] | None] = [None]
            swallow = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, pending, swallow),
                             daemon=True).start()
            threading.Thread(target=self._replies, args=(client, upstream, pending, swallow),
                             daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket,
                  pending: list[tuple[bytes, ...] | None], swallow: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    for statement in self.watched:
                        if pending[0] is None and all(part in data for part in statement):
                            pending[0] = statement
                    if pending[0] is not None and b"COMMIT" in data:
                        swallow.set()
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _replies(self, client: socket.socket, upstream: socket.socket,
                 pending: list[tuple[bytes, ...] | None], swallow: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if swallow.is_set():
                    with self._lock:
                        if pending[0] in self.watched:
                            self.watched.remove(pending[0])
                            self.dropped.append(pending[0])
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def close(self) -> None:
        self._listener.close()


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
