"""Client-side deadlines for PostgreSQL connections whose server has gone silent.

The server enforces ``statement_timeout``, and TCP keepalives end a connection
whose peer has vanished from the network. Neither helps when the socket stays
open and acknowledged but nothing comes back: a partition behind a proxy or a
load balancer, or a server that has stopped working. A blocked driver call then
waits for as long as the silence lasts. The watchdog bounds that wait: when an
operation outlives its deadline it shuts the connection's socket down, which
wakes the blocked call with an error at once; the pool then drops the connection.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Watch", "Watchdog"]

logger = logging.getLogger(__name__)


@dataclass(order=True)
class Watch:
    """One armed deadline; ``fired`` tells the caller its connection was cut."""

    deadline: float
    seq: int
    started: float = field(compare=False)
    fileno: int = field(compare=False)
    done: bool = field(default=False, compare=False)
    fired: bool = field(default=False, compare=False)


class Watchdog:
    """One daemon thread that cuts the sockets of operations past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[Watch] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, dbapi_conn: Any, seconds: float) -> Iterator[Watch]:
        """Cut ``dbapi_conn`` (a psycopg connection) if the block is still running after
        ``seconds``. The connection must stay open while the block runs."""
        now = time.monotonic()
        w = Watch(now + seconds, next(self._seq), now, dbapi_conn.fileno())
        with self._cond:
            heapq.heappush(self._heap, w)
            self._ensure_thread()
            if self._heap[0] is w:
                self._cond.notify()
        try:
            yield w
        finally:
            with self._cond:
                w.done = True

    def cut_older_than(self, age: float) -> int:
        """Cut every operation running for longer than ``age`` seconds: another one's
        silence is evidence that the server no longer answers any of them."""
        limit = time.monotonic() - age
        with self._cond:
            old = [w for w in self._heap if not w.done and not w.fired and w.started <= limit]
            for w in old:
                self._cut(w)
        return len(old)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="mw-db-deadline", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                w = heapq.heappop(self._heap)
                if not w.fired:
                    self._cut(w)

    def _cut(self, w: Watch) -> None:
        """Shut the socket down (the caller holds the lock, so the block has not ended and
        the descriptor still belongs to its connection)."""
        w.fired = True
        try:
            with socket.socket(fileno=os.dup(w.fileno)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already closed by the peer or the driver
            logger.debug("store connection %d: shutdown failed: %s", w.fileno, exc)
        else:
            elapsed = time.monotonic() - w.started
            logger.warning("store connection cut after %.1fs without an answer", elapsed)
