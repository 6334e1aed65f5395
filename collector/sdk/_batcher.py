"""The memory buffer, the outage clock and the one background thread that empties them.

Items wait in one list per (endpoint, model, version) and are cut into
batches (``batch_size`` items, ``max_batch_bytes``) as soon as a list is full,
every ``flush_interval`` seconds, on flush and at close. Batches go out one at
a time, oldest first, spilled files before memory.

While the service is unavailable the thread keeps the batches and tries again
after each pause (``Retry-After`` or backoff) with no attempt cap; only when
the service has been unavailable for longer than ``max_outage_s`` are the
batches in memory given up: spilled when there is a spill directory, else
dropped. Adding never blocks: beyond ``max_buffer_events`` or
``max_buffer_bytes`` in memory the new item is dropped. With a spill
directory, the thread moves everything in memory to disk once half of either
limit is reached, so memory does not fill in the first place.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator

from collector.sdk._http import Answer, BatchKey, Outcome, RetryPolicy, Sender
from collector.sdk._limits import Batch, Clock, Limits, MonotonicClock
from collector.sdk._spill import SpillFile, Spool
from collector.sdk._stats import DROP_REASONS, ClientStats, Throttle

__all__ = ["Batcher", "Clock", "Limits"]

logger = logging.getLogger("modelwatch.sdk")

_JOIN_AFTER_ABORT = 2.0
_JOIN_AFTER_EXIT = 5.0
_COUNTERS = (
    *("sent", "accepted", "duplicates", "updated"),
    *("retries", "failed_batches", "spilled", "restored"),
)


_LIVE: set[Batcher] = set()


@atexit.register
def _close_all_at_exit() -> None:
    for batcher in list(_LIVE):
        batcher.close(batcher.limits.close_timeout)


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
        limits: Limits,
        retry: RetryPolicy,
        spool: Spool | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.sender = sender
        self.limits = limits
        self.retry = retry
        self.spool = spool
        self.clock: Clock = clock or MonotonicClock()
        self._disk: SpillFile | None = None  # the spilled file being sent (thread only)
        self._reset()
        _LIVE.add(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_hook(weakref.ref(self)))
        if spool is not None and spool.backlog:
            self._start_thread()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.throttle = Throttle(clock=self.clock.now)
        self._buffers: dict[BatchKey, list[bytes]] = {}
        self._queue: deque[Batch] = deque()
        self._inflight: Batch | None = None
        self._mem_items = 0  # buffered, queued or in flight
        self._mem_bytes = 0
        self._added = 0  # items ever accepted into memory
        self._finished = 0  # of those, delivered, dropped or spilled
        self._flush_waiters = 0
        self._full_batches = False
        self._spill_wanted = False
        self._next_sweep = self.clock.now() + self.limits.flush_interval
        self._closing = False
        self._aborting = False
        self._disk_busy = False
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._drops = dict.fromkeys(DROP_REASONS, 0)
        self._down_since: float | None = None
        self._streak = 0
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._no_thread = False

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's items, locks, thread, claims and sockets."""
        if self._disk is not None and self.spool is not None:
            self.spool.forget(self._disk)
        self._disk = None
        if self.spool is not None:
            self.spool.after_fork()
        self._reset()
        self.sender.reset()

    # --- caller side -----------------------------------------------------------

    def add(self, key: BatchKey, item: bytes) -> bool:
        """Buffer one serialised item; False (and counted as dropped) when it cannot be."""
        limits = self.limits
        with self._lock:
            if self._closing:
                reason = "closed"
            elif (
                self._mem_items >= limits.max_buffer_events
                or self._mem_bytes + len(item) > limits.max_buffer_bytes
            ):
                reason = "buffer_full"
            else:
                reason = ""
                buf = self._buffers.setdefault(key, [])
                buf.append(item)
                self._mem_items += 1
                self._mem_bytes += len(item)
                self._added += 1
                if len(buf) == limits.batch_size:
                    self._full_batches = True
                    self._cond.notify()
                if self.spool is not None and not self._spill_wanted and self._half_full():
                    self._spill_wanted = True
                    self._cond.notify()
                start = self._thread is None and not self._no_thread
            if reason:
                self._drops[reason] += 1
        if reason == "buffer_full":
            self.throttle.warn(
                reason,
                "buffer full (%d items or %d bytes): dropping new items",
                limits.max_buffer_events,
                limits.max_buffer_bytes,
            )
        elif reason == "closed":
            self.throttle.warn(reason, "client is closed: dropping new items")
        elif start:
            self._start_thread()
        return not reason

    def _half_full(self) -> bool:
        return (
            2 * self._mem_items >= self.limits.max_buffer_events
            or 2 * self._mem_bytes >= self.limits.max_buffer_bytes
        )

    def count_dropped(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._drops[reason] += n

    def stats(self) -> ClientStats:
        with self._lock:
            dropped = sum(self._drops.values())
            return ClientStats(**self._counts, dropped=dropped, buffered=self._mem_items)

    def dropped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._drops)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything added before this call was delivered, spilled or
        given up, and no spilled file is left that this client could send."""
        deadline = None if timeout is None else self.clock.now() + timeout
        with self._cond:
            ticket = self._added
            self._flush_waiters += 1
            self._cond.notify_all()
            start = self._thread is None and not self._no_thread
        if start:
            self._start_thread()
        try:
            return self._wait_until(lambda: self._flushed(ticket), deadline)
        finally:
            with self._cond:
                self._flush_waiters -= 1

    def _flushed(self, ticket: int) -> bool:
        if self._finished < ticket or self._disk_busy:
            return False
        return self.spool is None or self.spool.backlog == 0

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new items and flush for up to ``timeout`` seconds; then spill what
        is still unsent (with a spill directory) or drop and count it. Safe to repeat."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        _LIVE.discard(self)
        try:
            done = self.flush(timeout)
            with self._cond:
                self._aborting = True
                self._cond.notify_all()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(_JOIN_AFTER_EXIT if done else _JOIN_AFTER_ABORT)
                if thread.is_alive():
                    self._abandon(from_thread=False)
                    logger.warning(
                        "modelwatch: sender thread still busy at close; its batch in flight "
                        "may be lost"
                    )
                    return False
            elif not done:
                self._abandon(from_thread=True)
            self.sender.close()
            return done
        except Exception:  # close() runs at interpreter exit: never raise
            logger.exception("modelwatch: error while closing the client")
            return False

    def _wait_until(self, done: Callable[[], bool], deadline: float | None) -> bool:
        while True:
            with self._cond:
                if done():
                    return True
                remaining = None if deadline is None else deadline - self.clock.now()
                if remaining is not None and remaining <= 0:
                    return False
                inline = self._thread is None or not self._thread.is_alive()
                if not inline:
                    self.clock.wait(self._cond, remaining)
                    continue
                pause = self._pause()
                if pause > 0:  # no thread (e.g. at interpreter exit): work from here
                    self.clock.wait(
                        self._cond, pause if remaining is None else min(pause, remaining)
                    )
                    continue
            self._step()

    # --- the thread --------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._no_thread:
                return
            thread = threading.Thread(target=self._run, name="modelwatch-sdk", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # e.g. at interpreter shutdown: flush/close work inline
            logger.debug("modelwatch: cannot start the sender thread", exc_info=True)
            with self._lock:
                self._thread = None
                self._no_thread = True

    def _run(self) -> None:
        while True:
            try:
                with self._cond:
                    while (pause := self._pause()) > 0:
                        if self._should_exit():
                            return
                        self.clock.wait(self._cond, pause)
                    if self._should_exit():
                        return
                self._step()
            except Exception:
                logger.exception("modelwatch: sender thread error (continuing)")
                time.sleep(0.1)

    def _should_exit(self) -> bool:
        if self._aborting:
            return self._mem_items == 0 and self._disk is None
        return self._closing and self._mem_items == 0 and not self._has_work()

    def _has_work(self) -> bool:
        return bool(self._queue) or self._disk_busy or bool(self.spool and self.spool.backlog)

    def _pause(self) -> float:
        """Seconds until the thread has something to do (lock held)."""
        if self._aborting or self._spill_wanted or self._full_batches:
            return 0.0
        if self._buffers and (self._closing or self._flush_waiters):
            return 0.0
        now = self.clock.now()
        pause = self._next_sweep - now
        if self._has_work():
            pause = min(pause, self._retry_at - now)
        return max(0.0, pause)

    def _step(self) -> None:
        with self._cond:
            if self._aborting:
                abandon, periodic, spill, due = True, False, False, False
            else:
                abandon = False
                now = self.clock.now()
                periodic = now >= self._next_sweep
                if periodic:
                    self._next_sweep = now + self.limits.flush_interval
                self._take(periodic or self._closing or self._flush_waiters > 0)
                spill, self._spill_wanted = self._spill_wanted, False
                due = now >= self._retry_at
        if abandon:
            return self._abandon(from_thread=True)
        if periodic:
            self.throttle.report_quiet()
            if self.spool is not None and self._disk is None:
                self.spool.refresh()
        if spill:
            self._evict(None)
        if due:
            self._send_next()
        return None

    def _take(self, everything: bool) -> None:
        """Cut batches from the buffers into the queue (lock held): all, or the full ones."""
        self._full_batches = False
        for key in list(self._buffers):
            buf = self._buffers[key]
            n = len(buf) if everything else len(buf) - len(buf) % self.limits.batch_size
            if n:
                self._queue.extend(self._batches(key, buf[:n]))
                del buf[:n]
            if not buf:
                del self._buffers[key]

    def _batches(self, key: BatchKey, items: list[bytes]) -> Iterator[Batch]:
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and (
                len(chunk) >= self.limits.batch_size
                or size + len(item) > self.limits.max_batch_bytes
            ):
                yield Batch(key, chunk)
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 1
        if chunk:
            yield Batch(key, chunk)

    # --- sending -------------------------------------------------------------------

    def _send_next(self) -> None:
        batch = self._next_batch()
        if batch is None:
            return
        try:
            answer = self.sender.attempt(batch.key, batch.items)
        except Exception as exc:  # a bug here or in a custom transport
            logger.exception("modelwatch: unexpected error sending %d items", len(batch.items))
            answer = Answer(Outcome.REJECT_ALL, f"{type(exc).__name__}: {exc}", reason="error")
        self._settle(batch, answer)

    def _next_batch(self) -> Batch | None:
        """Spilled files first (they are older), then memory, oldest first."""
        if self._disk is None and self.spool is not None and self.spool.backlog:
            with self._cond:
                self._disk_busy = True  # flush() must not see the backlog empty meanwhile
            try:
                file, corrupt = self.spool.claim()
            except Exception:
                logger.exception("modelwatch: cannot read the spill directory")
                file, corrupt = None, 0
            if corrupt:
                self._drop("spill_error", corrupt, "unreadable line(s) in the spill directory")
            with self._cond:
                self._disk = file
                self._disk_busy = file is not None
                if file is not None:
                    self._counts["restored"] += sum(map(len, file.pieces))
                self._cond.notify_all()
        if self._disk is not None:
            return Batch(self._disk.key, self._disk.pieces[0])
        with self._cond:
            if self._queue:
                self._inflight = self._queue[0]
                return self._inflight
        return None

    def _settle(self, batch: Batch, answer: Answer) -> None:
        if answer.outcome is Outcome.RETRY:
            return self._failed(answer)
        self._answered()
        items, n = batch.items, len(batch.items)
        replacement: list[list[bytes]] = []
        changed = True
        if answer.outcome is Outcome.DELIVERED:
            self._delivered(answer, n)
        elif answer.outcome is Outcome.SPLIT:
            replacement, changed = [items[: n // 2], items[n // 2 :]], False
        elif answer.outcome is Outcome.REJECT_SOME:
            rest = [item for i, item in enumerate(items) if i not in answer.bad]
            replacement = [rest] if rest else []
            what = f"{n - len(rest)} invalid item(s) of {_describe(batch)}"
            self._drop("rejected", n - len(rest), "%s: %s", what, answer.problem, batches=1)
        else:
            what = f"{_describe(batch)} {answer.reason.replace('_', ' ')}"
            self._drop(answer.reason, n, "%s: %s", what, answer.problem, batches=1)
        if self._disk is not None and batch.items is self._disk.pieces[0]:
            assert self.spool is not None
            if self.spool.settle(self._disk, replacement, changed):
                with self._cond:
                    self._disk = None
                    self._disk_busy = False
                    self._cond.notify_all()
            return None
        with self._cond:
            self._queue.popleft()
            self._queue.extendleft(Batch(batch.key, piece) for piece in reversed(replacement))
            kept = sum(map(len, replacement))
            self._left_memory(n - kept, batch.nbytes - sum(sum(map(len, p)) for p in replacement))
            self._inflight = None
        return None

    def _delivered(self, answer: Answer, n: int) -> None:
        with self._cond:
            self._counts["sent"] += n
            self._counts["accepted"] += answer.accepted
            self._counts["duplicates"] += answer.duplicates
            self._counts["updated"] += answer.updated

    def _left_memory(self, n: int, nbytes: int) -> None:
        """``n`` items are out of memory: delivered, dropped or spilled (lock held)."""
        self._mem_items -= n
        self._mem_bytes -= nbytes
        self._finished += n
        self._cond.notify_all()

    # --- the outage clock ----------------------------------------------------------

    def _failed(self, answer: Answer) -> None:
        max_outage = self.limits.max_outage_s
        with self._cond:
            now = self.clock.now()
            first = self._down_since is None
            if self._down_since is None:
                self._down_since = now
            self._inflight = None
            self._streak += 1
            held_for = now - self._down_since
            exceeded = held_for > max_outage
            delay = self.retry.delay(self._streak, answer.retry_after)
            self._retry_at = now + delay
            if not exceeded:
                self._counts["retries"] += 1
            held = self._mem_items
        if first:
            self._log_outage(answer, held, delay)
        else:
            logger.debug("modelwatch: %s; retrying in %.2fs", answer.problem, delay)
        if exceeded:
            self._evict("auth" if answer.auth else "outage_exceeded", answer.problem, held_for)

    def _log_outage(self, answer: Answer, held: int, delay: float) -> None:
        limit = self.limits.max_outage_s
        if answer.auth:
            logger.error(
                "modelwatch: the service refuses this client's API key (%s): holding %d "
                "item(s) and retrying for up to %.0fs; check the key",
                answer.problem,
                held,
                limit,
            )
        else:
            logger.warning(
                "modelwatch: the service is unavailable (%s): holding %d item(s), "
                "retrying in %.1fs, for up to %.0fs",
                answer.problem,
                held,
                delay,
                limit,
            )

    def _answered(self) -> None:
        with self._cond:
            if self._down_since is None:
                return
            held_for = self.clock.now() - self._down_since
            self._down_since = None
            self._streak = 0
            self._retry_at = 0.0
        logger.info("modelwatch: the service answers again after %.1fs", held_for)

    # --- giving up: spill or drop --------------------------------------------------

    def _evict(self, reason: str | None, problem: str = "", held_for: float = 0.0) -> None:
        """Move everything in memory (but a batch in flight) to the spill, or, without
        one, drop it for ``reason``."""
        with self._cond:
            self._take(everything=True)
            batches = [b for b in self._queue if b is not self._inflight]
            self._queue = deque(b for b in self._queue if b is self._inflight)
        if not batches:
            return
        if self.spool is None:
            results = [reason or "close_timeout"] * len(batches)
        else:
            results = self.spool.write([(b.key, b.items) for b in batches])
        self._report_evicted(batches, results, problem, held_for)  # before flush() wakes
        with self._cond:
            for batch, result in zip(batches, results, strict=True):
                self._left_memory(len(batch.items), batch.nbytes)
                if not result:
                    self._counts["spilled"] += len(batch.items)

    def _report_evicted(
        self, batches: list[Batch], results: list[str], problem: str, held_for: float
    ) -> None:
        by_reason: dict[str, tuple[int, int]] = {}
        for batch, result in zip(batches, results, strict=True):
            n, b = by_reason.get(result, (0, 0))
            by_reason[result] = (n + len(batch.items), b + 1)
        for result, (n, count) in by_reason.items():
            if not result:
                logger.info("modelwatch: spilled %d item(s) to %s", n, self.spool.directory)  # type: ignore[union-attr]
            elif result in ("outage_exceeded", "auth"):
                self._drop(
                    result,
                    n,
                    "%d item(s): the service has been unavailable for %.0fs, longer than "
                    "max_outage_s=%.0f (%s)",
                    n,
                    held_for,
                    self.limits.max_outage_s,
                    problem,
                    batches=count,
                )
            else:
                self._drop(result, n, "%d unsent item(s)", n, batches=count)

    def _abandon(self, from_thread: bool) -> None:
        """Close's timeout ran out: spill or drop what is in memory, keep spilled files."""
        self._evict(None if self.spool is not None else "close_timeout")
        if from_thread and self._disk is not None and self.spool is not None:
            self.spool.release(self._disk)
            with self._cond:
                self._disk = None
                self._disk_busy = False
                self._cond.notify_all()

    def _drop(self, reason: str, n: int, message: str, *args: object, batches: int = 0) -> None:
        with self._cond:
            self._drops[reason] += n
            self._counts["failed_batches"] += batches
        level = logging.ERROR if reason == "auth" else logging.WARNING
        self.throttle.warn(reason, f"dropped ({reason}) {message}", *args, level=level)


def _describe(batch: Batch) -> str:
    path, model, version = batch.key
    what = f"{len(batch.items)} item(s) for {path} model={model!r}"
    return what + (f" version={version!r}" if version is not None else "")
