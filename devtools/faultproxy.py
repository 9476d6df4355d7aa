"""A TCP proxy the fault tests control: pass traffic, stall it (a partition), or cut it.

A real fault injector between a client (or worker) and Postgres/PgBouncer, in the spirit of
Toxiproxy, with the three faults the matrix needs:

- ``stall()``: bytes stop flowing both ways on every connection, current and new (new ones are
  accepted but never reach the server). To the peers this is a network partition: nothing is
  refused, nothing arrives, only keepalives, ``tcp_user_timeout`` and statement timeouts end it.
- ``cut()``: every current connection is reset (RST); new ones keep working. What a pooler or
  server restart, or a NAT dropping its state, looks like to a pooled connection.
- ``refuse()``: new connections are reset at once until ``resume()``; current ones are cut.

``resume()`` lets traffic flow again (connections stalled but not cut carry on where they were).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket | None
    closed: bool = False


def _reset(sock: socket.socket | None) -> None:
    """Close with SO_LINGER 0: the peer sees a reset, not an orderly end of stream."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1:<port> and forwards to (target_host, target_port)."""

    target_host: str
    target_port: int
    host: str = "127.0.0.1"
    port: int = 0
    _flowing: threading.Event = field(default_factory=threading.Event)
    _refusing: bool = False
    _pairs: list[_Pair] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None
    _stopped: bool = False
    accepted: int = 0

    def start(self) -> FaultProxy:
        self._flowing.set()
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((self.host, self.port))
        lsock.listen(128)
        self.port = lsock.getsockname()[1]
        self._listener = lsock
        threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True).start()
        return self

    # -- the faults ------------------------------------------------------------------------

    def stall(self) -> None:
        """Partition: stop moving bytes both ways, on current and new connections."""
        self._flowing.clear()

    def resume(self) -> None:
        """End a stall or a refusal: bytes flow, new connections reach the server."""
        self._refusing = False
        self._flowing.set()

    def cut(self) -> None:
        """Reset every current connection; new ones are unaffected."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.closed = True
            _reset(pair.client)
            _reset(pair.server)

    def refuse(self) -> None:
        """Reset current connections and every new one until :meth:`resume`."""
        self._refusing = True
        self.cut()

    def stop(self) -> None:
        self._stopped = True
        self._flowing.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        self.cut()

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return sum(1 for p in self._pairs if not p.closed)

    def dsn_for(self, dsn: str) -> str:
        """The same DSN with host and port pointing at this proxy."""
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(dsn)
        info["host"] = self.host
        info["port"] = str(self.port)
        info.pop("hostaddr", None)
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})

    # -- plumbing --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._refusing:
                _reset(client)
                continue
            pair = _Pair(client, None)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._connect, args=(pair,), daemon=True).start()

    def _connect(self, pair: _Pair) -> None:
        # A stalled proxy holds new connections here: accepted, never forwarded.
        while not self._flowing.wait(0.05):
            if pair.closed or self._stopped:
                return
        try:
            server = socket.create_connection((self.target_host, self.target_port), timeout=5)
        except OSError:
            pair.closed = True
            _reset(pair.client)
            return
        server.settimeout(None)
        pair.server = server
        if pair.closed:
            _reset(server)
            return
        for src, dst in ((pair.client, server), (server, pair.client)):
            threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        while not pair.closed:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            while not self._flowing.wait(0.05):
                if pair.closed:
                    return
            try:
                dst.sendall(data)
            except OSError:
                break
        if not pair.closed:
            pair.closed = True
            # An orderly end on one side ends the other (as a server closing a session does).
            for sock in (pair.client, pair.server):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        sock.close()


@contextlib.contextmanager
def fault_proxy(host: str, port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(host, port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
