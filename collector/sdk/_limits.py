"""What the batcher is configured with and works on: its limits, its clock, a batch."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from collector.sdk._http import BatchKey

__all__ = ["Batch", "Clock", "Limits", "MonotonicClock"]


class Clock(Protocol):
    """Where the batcher reads the time and waits; tests pass a faster one."""

    def now(self) -> float: ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(timeout)


@dataclass(frozen=True)
class Limits:
    batch_size: int
    flush_interval: float
    max_batch_bytes: int
    max_buffer_events: int
    max_buffer_bytes: int
    max_outage_s: float
    close_timeout: float | None

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name != "close_timeout" and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass
class Batch:
    key: BatchKey
    items: list[bytes]

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.items))
