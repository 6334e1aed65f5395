"""A loopback TCP proxy that can partition the network without closing a socket.

``partition()`` stops every byte in both directions while both sides keep their
connections open (and the kernel keeps acknowledging), which is what a client
sees of a server behind a stalled proxy or a severed link: silence, no error.
New connections are accepted during a partition and stay silent too. ``heal()``
lets the held bytes through, as TCP retransmission would once the link is back.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

__all__ = ["PartitionProxy"]

_CHUNK = 64 * 1024
_POLL_S = 0.05


class PartitionProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream``; a context manager that stops it on exit."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._accepting.start()

    def partition(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    def close(self) -> None:
        self._stopped.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
        self._accepting.join(timeout=5)

    def __enter__(self) -> PartitionProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], _POLL_S)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Copy ``src`` to ``dst``; while partitioned, read nothing and send nothing."""
        try:
            while not self._stopped.is_set():
                if not self._flowing.wait(_POLL_S):
                    continue
                ready, _, _ = select.select([src], [], [], _POLL_S)
                if not ready:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    break
                while not self._flowing.wait(_POLL_S):
                    if self._stopped.is_set():
                        return
                dst.sendall(data)
        except (OSError, ValueError):  # closed under us by close()
            return
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
