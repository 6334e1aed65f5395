"""What the client counts and how it warns: totals, drops by reason, rate-limited logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DROP_REASONS", "ClientStats", "Throttle"]

logger = logging.getLogger("modelwatch.sdk")

WARN_INTERVAL = 10.0

DROP_REASONS = (
    "buffer_full",
    "outage_exceeded",
    "auth",
    "rejected",
    "too_large",
    "spill_full",
    "spill_error",
    "close_timeout",
    "closed",
    "invalid",
    "error",
)
"""Why items are dropped; :attr:`Client.dropped` counts each.

- ``buffer_full``: logged while the memory buffer was at ``max_buffer_events``
  or ``max_buffer_bytes`` and nothing could be spilled in time.
- ``outage_exceeded``: the service answered 5xx/429/408 or could not be reached
  for longer than ``max_outage_s`` and there is no spill directory.
- ``auth``: the same, but the service kept refusing the API key (401/403).
- ``rejected``: the service refused the item itself (named in a 422, or a
  404/400-like answer about the whole batch); resending cannot help.
- ``too_large``: a single item bigger than the service accepts (413).
- ``spill_full``: the spill directory already held ``max_spill_bytes``.
- ``spill_error``: writing the spill failed, or a spilled line was unreadable.
- ``close_timeout``: still unsent when :meth:`Client.close`'s timeout ran out,
  with no spill directory.
- ``closed``: logged after :meth:`Client.close`.
- ``invalid``: the caller's data could not be turned into JSON.
- ``error``: an unexpected error in the SDK or a custom transport.
"""


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
    """never stored, for any reason (see :attr:`Client.dropped` for the reasons)"""
    retries: int = 0
    """requests repeated after a failure that may pass (5xx, 429, 408, 401/403, network)"""
    failed_batches: int = 0
    """batches whose items were (partly) dropped after leaving the buffer"""
    buffered: int = 0
    """waiting in memory or in flight now"""
    spilled: int = 0
    """written to the spill directory (they are sent from there later)"""
    restored: int = 0
    """read back from the spill directory to be sent (also other processes' spills)"""


class Throttle:
    """At most one warning per key every ``interval`` seconds; the rest are
    summed and reported with the next one, or by :meth:`report_quiet`."""

    def __init__(
        self, interval: float = WARN_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self._level: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            self._level[key] = level
            return
        self._last[key] = now
        quiet = self._quiet.pop(key, 0)
        suffix = f" ({quiet} more like this since the last warning)" if quiet else ""
        logger.log(level, "modelwatch: " + message + suffix, *args)

    def report_quiet(self) -> None:
        """Log the count of warnings held back once their key's interval has passed."""
        now = self.clock()
        for key in [k for k, n in self._quiet.items() if n]:
            if now - self._last.get(key, now) >= self.interval:
                n = self._quiet.pop(key)
                self._last[key] = now
                level = self._level.pop(key, logging.WARNING)
                logger.log(
                    level, "modelwatch: %s: %d more like this since the last warning", key, n
                )
