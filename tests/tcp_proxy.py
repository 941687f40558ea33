"""A TCP proxy the test owns, between the app and a real server (PostgreSQL, Redis), to cut or freeze that server
for the app only — never by stopping the machine's servers, which other tests and engineers use.

``cut()``: every open connection is closed and new ones are refused (reset at once), as when the server is down.
``freeze()``: connections are accepted but nothing is forwarded any more, as when the server hangs.
``restore()``: new connections are forwarded again; connections held while frozen are closed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

OPEN, CUT, FROZEN = "open", "cut", "frozen"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (no lingering FIN handshake): the client hears at once that the peer is gone."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode = OPEN
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._held: set[socket.socket] = set()  # accepted while frozen: never answered
        self._closed = False
        self.connections = 0  # accepted so far (tests can see that the app really came through the proxy)
        threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True).start()

    # -- control ---------------------------------------------------------------------------------------------
    def cut(self) -> None:
        with self._lock:
            self._mode = CUT
            pairs, self._pairs = self._pairs, set()
            held, self._held = self._held, set()
        for client, server in pairs:
            _reset(client)
            _reset(server)
        for sock in held:
            _reset(sock)

    def freeze(self) -> None:
        with self._lock:
            self._mode = FROZEN

    def restore(self) -> None:
        with self._lock:
            was = self._mode
            self._mode = OPEN
            held, self._held = self._held, set()
            pairs = set(self._pairs) if was == FROZEN else set()
            self._pairs -= pairs
        for sock in held:
            _reset(sock)
        for client, server in pairs:  # stalled mid-conversation: the client must reconnect
            _reset(client)
            _reset(server)

    def close(self) -> None:
        self.cut()
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def url_host_port(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    # -- forwarding ------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with self._lock:
                mode = self._mode
                if mode == FROZEN:
                    self._held.add(client)
                    continue
            if mode == CUT:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        other = {client: server, server: client}
        try:
            while pair in self._pairs:
                if self._mode == FROZEN:
                    # Hung: read nothing, answer nothing (the wait is the proxy's own poll, not a test's timing).
                    select.select([], [], [], 0.05)
                    continue
                ready, _, _ = select.select([client, server], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    other[sock].sendall(data)
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()
