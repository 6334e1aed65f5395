"""Timestamps on the wire: RFC 3339 strings or Unix seconds; stored as UTC microseconds."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "now_us",
    "parse_retry_after",
    "parse_timestamp_us",
    "rfc3339",
    "us_to_datetime",
    "utcnow",
]

_MIN_US = 0
_MAX_US = 253402300799_000000  # 9999-12-31T23:59:59Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_us() -> int:
    return time.time_ns() // 1000


def parse_timestamp_us(value: object) -> int | None:
    """Microseconds since the epoch, or None when ``value`` is not a timestamp.

    Strings are ISO 8601 / RFC 3339 (naive ones are taken as UTC); numbers are
    Unix seconds.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        us = (parsed - _EPOCH) // _ONE_US
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # Compared in seconds first: a huge float times 1e6 overflows to inf.
        if not _MIN_US / 1e6 - 1 <= value <= _MAX_US / 1e6 + 1:
            return None  # NaN fails every comparison, so it lands here too
        us = round(value * 1_000_000)
    else:
        return None
    return us if _MIN_US <= us <= _MAX_US else None


def us_to_datetime(us: int | None) -> datetime | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with a ``Z`` suffix; naive datetimes are taken as UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date).

    None when absent or unparseable; dates in the past give 0.
    """
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return _seconds_until(value, now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(http_date.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
