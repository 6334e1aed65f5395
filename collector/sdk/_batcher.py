"""The bounded buffer and the one background thread that empties it in batches.

Items wait in one list per (endpoint, model, version). The thread sends full
batches as soon as a list holds ``batch_size`` items, and everything every
``flush_interval`` seconds, on :meth:`Batcher.flush` and at close. Adding
never blocks: when ``max_buffer`` items are waiting or in flight, the new item
is dropped and counted. The thread logs and counts failures and never raises.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

from collector.sdk._http import BatchKey, Sender, Tally, Throttle

__all__ = ["Batcher", "ClientStats"]

logger = logging.getLogger("modelwatch.sdk")

_JOIN_AFTER_ABORT = 2.0
_JOIN_AFTER_EXIT = 5.0


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of the client's counters (items unless named otherwise)."""

    sent: int = 0
    """acknowledged by the server"""
    accepted: int = 0
    """stored as new rows"""
    duplicates: int = 0
    """already stored (request id seen before)"""
    updated: int = 0
    """labels that corrected an earlier label"""
    dropped: int = 0
    """never stored: buffer full, closed, invalid, rejected or out of retries"""
    retries: int = 0
    """requests repeated after a retryable failure"""
    failed_batches: int = 0
    """batches whose items were (partly) dropped after leaving the buffer"""
    buffered: int = 0
    """waiting or in flight now"""


_LIVE: set[Batcher] = set()


@atexit.register
def _close_all_at_exit() -> None:
    for batcher in list(_LIVE):
        batcher.close(batcher.close_timeout)


def _after_fork_hook(ref: weakref.ref[Batcher]) -> Callable[[], None]:
    def hook() -> None:
        batcher = ref()
        if batcher is not None:
            batcher._after_fork()

    return hook


class Batcher:
    def __init__(
        self,
        sender: Sender,
        *,
        batch_size: int,
        flush_interval: float,
        max_buffer: int,
        max_batch_bytes: int,
        close_timeout: float | None,
    ) -> None:
        for name, value in [
            ("batch_size", batch_size),
            ("flush_interval", flush_interval),
            ("max_buffer", max_buffer),
            ("max_batch_bytes", max_batch_bytes),
        ]:
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.sender = sender
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.max_batch_bytes = max_batch_bytes
        self.close_timeout = close_timeout
        self._closing = False
        self._reset()
        sender.on_retry = self._count_retry
        _LIVE.add(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_hook(weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._drain_lock = threading.Lock()
        self._buffers: dict[BatchKey, list[bytes]] = {}
        self._pending = 0  # waiting or in flight
        self._full_batches = False  # some buffer holds batch_size items
        self._flush_wanted = False
        self._next_sweep = time.monotonic() + self.flush_interval
        self._sweeps_started = 0  # drains that take everything
        self._sweeps_done = 0
        self._totals = Tally()
        self._retries = 0
        self._thread: threading.Thread | None = None
        self._no_thread = False

    @property
    def throttle(self) -> Throttle:
        return self.sender.throttle

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's items, locks, thread and sockets."""
        self._reset()
        self.sender.reset()

    # --- caller side -----------------------------------------------------------

    def add(self, key: BatchKey, item: bytes) -> bool:
        """Buffer one serialised item; False (and counted as dropped) when it cannot be."""
        with self._lock:
            if self._closing:
                reason = "closed"
            elif self._pending >= self.max_buffer:
                reason = "full"
            else:
                buf = self._buffers.setdefault(key, [])
                buf.append(item)
                self._pending += 1
                if len(buf) == self.batch_size:
                    self._full_batches = True
                    self._cond.notify()
                start = self._thread is None and not self._no_thread
                reason = ""
            if reason:
                self._totals.dropped += 1
        if reason == "full":
            self.throttle.warn(
                "full", "buffer full (%d items): dropping new items", self.max_buffer
            )
        elif reason == "closed":
            self.throttle.warn("closed", "client is closed: dropping new items")
        elif start:
            self._start_thread()
        return not reason

    def count_dropped(self, n: int = 1) -> None:
        with self._lock:
            self._totals.dropped += n

    def _count_retry(self) -> None:
        with self._lock:
            self._retries += 1

    def stats(self) -> ClientStats:
        with self._lock:
            counts = {f.name: getattr(self._totals, f.name) for f in fields(Tally)}
            return ClientStats(**counts, retries=self._retries, buffered=self._pending)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything added before this call was sent or given up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._pending == 0:
                return True
            ticket = self._sweeps_started + 1
            self._flush_wanted = True
            self._cond.notify_all()
            threaded = self._thread is not None and self._thread.is_alive()
        if not threaded:  # no thread (e.g. at interpreter exit): send from here
            self._drain(everything=True, stop_at=deadline if self._closing else None)
        with self._cond:
            while self._sweeps_done < ticket:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new items, flush, stop the thread. Items still unsent when
        ``timeout`` expires are dropped and counted. Safe to call twice."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        _LIVE.discard(self)
        try:
            done = self.flush(timeout)
            if not done:
                self.sender.abort.set()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(_JOIN_AFTER_EXIT if done else _JOIN_AFTER_ABORT)
                if thread.is_alive():
                    logger.warning(
                        "modelwatch: sender thread still busy at close; %d item(s) may be lost",
                        self._pending,
                    )
                    return False
            self.sender.close()
            return done
        except Exception:  # close() runs at interpreter exit: never raise
            logger.exception("modelwatch: error while closing the client")
            return False

    # --- the thread --------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._no_thread:
                return
            thread = threading.Thread(target=self._run, name="modelwatch-sdk", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # e.g. at interpreter shutdown: flush/close send inline
            logger.debug("modelwatch: cannot start the sender thread", exc_info=True)
            with self._lock:
                self._thread = None
                self._no_thread = True

    def _run(self) -> None:
        while True:
            try:
                if not self._cycle():
                    return
            except Exception:
                logger.exception("modelwatch: sender thread error (continuing)")
                time.sleep(0.1)

    def _cycle(self) -> bool:
        """Wait for work, send it; False once closed and empty."""
        with self._cond:
            while not (self._closing or self._flush_wanted or self._full_batches):
                remaining = self._next_sweep - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            everything = self._closing or self._flush_wanted or time.monotonic() >= self._next_sweep
        self._drain(everything)
        with self._cond:
            return not (self._closing and self._pending == 0)

    def _take(self, everything: bool) -> list[tuple[BatchKey, list[bytes]]]:
        """Remove work from the buffers (lock held): all of it, or the full batches."""
        self._full_batches = False
        if everything:
            taken = list(self._buffers.items())
            self._buffers = {}
            return taken
        taken = []
        for key, buf in self._buffers.items():
            n = len(buf) - len(buf) % self.batch_size
            if n:
                taken.append((key, buf[:n]))
                del buf[:n]
        return taken

    def _batches(
        self, taken: list[tuple[BatchKey, list[bytes]]]
    ) -> Iterator[tuple[BatchKey, list[bytes]]]:
        for key, items in taken:
            chunk: list[bytes] = []
            size = 0
            for item in items:
                if chunk and (
                    len(chunk) >= self.batch_size or size + len(item) > self.max_batch_bytes
                ):
                    yield key, chunk
                    chunk, size = [], 0
                chunk.append(item)
                size += len(item) + 1
            if chunk:
                yield key, chunk

    def _drain(self, everything: bool, stop_at: float | None = None) -> None:
        with self._drain_lock:
            with self._cond:
                if everything:
                    self._flush_wanted = False
                    self._sweeps_started += 1
                    self._next_sweep = time.monotonic() + self.flush_interval
                sweep = self._sweeps_started
                taken = self._take(everything)
            total = sum(len(items) for _, items in taken)
            done = 0
            try:
                for key, chunk in self._batches(taken):
                    if self.sender.abort.is_set():
                        tally = Tally(dropped=len(chunk), failed_batches=1)
                        self.throttle.warn(
                            "abort", "dropped %d unsent item(s) at close", len(chunk)
                        )
                    else:
                        tally = self.sender.send(key, chunk, stop_at)
                    with self._cond:
                        self._count(tally)
                        self._pending -= len(chunk)
                    done += len(chunk)
            finally:
                with self._cond:
                    if done < total:
                        self._totals.dropped += total - done
                        self._pending -= total - done
                    if everything:
                        self._sweeps_done = sweep
                    self._cond.notify_all()

    def _count(self, tally: Tally) -> None:
        for f in fields(Tally):
            setattr(self._totals, f.name, getattr(self._totals, f.name) + getattr(tally, f.name))
