"""Tumbling windows aligned to the clock (UTC epoch), in microseconds."""

from __future__ import annotations

__all__ = ["US", "align", "closed_before"]

US = 1_000_000


def align(ts_us: int, window_s: int) -> int:
    """The start of the window holding ``ts_us``."""
    size = window_s * US
    return ts_us - ts_us % size


def closed_before(now_us: int, window_s: int) -> int:
    """The end of the last window that has closed by ``now_us``."""
    return align(now_us, window_s)
