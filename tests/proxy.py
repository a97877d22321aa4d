"""A TCP proxy on 127.0.0.1 in front of a PostgreSQL server, that can cut the network.

`cut()` models a network partition: every connection stays open at both ends,
but bytes stop flowing in both directions (they are dropped), a connection
closed during the cut is not closed on the other side (no FIN gets through),
and new connections are accepted but hear nothing back. `heal()` lets bytes
through again. The upstream can be TCP (host, port) or a unix socket (a DSN
whose host is a directory, as the embedded server's), so one proxy serves both
test servers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo


class Proxy:
    def __init__(self, target_dsn: str) -> None:
        params = conninfo_to_dict(target_dsn)
        host = str(params.get("host") or "localhost").split(",")[0]
        port = int(str(params.get("port") or 5432).split(",")[0])
        self._family: int
        self._address: Any
        if host.startswith("/"):
            self._family, self._address = socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"
        else:
            self._family, self._address = socket.AF_INET, (params.get("hostaddr") or host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        params.pop("hostaddr", None)
        self.dsn = make_conninfo("", **{**params, "host": "127.0.0.1", "port": str(self.port)})
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    # ---- control -----------------------------------------------------------

    def cut(self) -> None:
        """Stop forwarding, silently: nothing is closed, every byte is dropped."""
        self._forwarding.clear()

    def heal(self) -> None:
        self._forwarding.set()

    @property
    def is_cut(self) -> bool:
        return not self._forwarding.is_set()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- plumbing ----------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.socket(self._family, socket.SOCK_STREAM)
                upstream.connect(self._address)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                self.connections += 1
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True,
                                 name="proxy-pump").start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if not self._forwarding.is_set():
                continue  # the network is cut: the bytes are lost
            try:
                target.sendall(data)
            except OSError:
                break
        # The source closed. During a cut, the other side never hears of it.
        if self._forwarding.is_set() and not self._closed:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
