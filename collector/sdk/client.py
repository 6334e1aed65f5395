"""The modelwatch client: log predictions, labels and usage from a model server.

``log_*`` serialises the item at once (so later changes to the caller's dicts
do not leak in), buffers it and returns; a background thread sends batches.
Nothing here blocks on the network or raises because of it: what cannot be
delivered is logged and counted in :attr:`Client.stats`.
"""

from __future__ import annotations

import decimal
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx
import orjson

from collector.sdk._batcher import Batcher, Clock, Limits
from collector.sdk._http import BatchKey, RetryPolicy, Sender
from collector.sdk._spill import Spool
from collector.sdk._stats import ClientStats
from collector.sdk.usage import Measurement, measured
from modelwatch import __version__
from modelwatch.timeutil import rfc3339

__all__ = ["Client", "Timestamp"]

logger = logging.getLogger("modelwatch.sdk")

P = ParamSpec("P")
R = TypeVar("R")

Timestamp = datetime | float | int | str
"""A datetime (naive ones are UTC), Unix seconds, or an RFC 3339 string."""

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _wire_timestamp(value: Timestamp | None) -> float | str:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, bool):
        raise TypeError("timestamp must be a datetime, Unix seconds or an RFC 3339 string")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return value
    raise TypeError("timestamp must be a datetime, Unix seconds or an RFC 3339 string")


def _default(value: Any) -> Any:
    """JSON for what orjson does not know: Decimal and numpy-like scalars."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Client:
    """Sends monitoring data to a modelwatch server in background batches.

    Nothing it accepted is dropped while the service says "come back later":
    on 5xx, 429, 408, 401/403 and network errors every batch is retried
    (honouring ``Retry-After``) with no attempt cap until the service has been
    unavailable for ``max_outage_s`` seconds. Meanwhile new items queue in
    memory up to ``max_buffer_events`` items and ``max_buffer_bytes`` bytes;
    beyond that they are dropped, never blocking the caller.

    With ``spill_dir``, batches that do not fit or outlive the outage, and
    whatever is unsent when :meth:`close` times out, are written there
    (fsync'd; at most ``max_spill_bytes`` in the directory) and sent oldest
    first once the service answers, by this client or by a later one using the
    same directory. Several processes may share a directory.

    ``transport`` replaces httpx's network transport (tests use
    ``httpx.MockTransport``); ``clock`` replaces the time source (tests).
    ``retry`` sets the pauses between attempts. ``close_timeout`` bounds how
    long :meth:`close` (also at the end of a ``with`` block and at interpreter
    exit) waits; None waits until everything is delivered or given up.
    What was dropped, and why, is counted in :attr:`dropped`.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_batch_bytes: int = 4 * 1024 * 1024,
        max_buffer_events: int = 100_000,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        max_outage_s: float = 600.0,
        spill_dir: str | os.PathLike[str] | None = None,
        max_spill_bytes: int = 1024 * 1024 * 1024,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        close_timeout: float | None = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self.url = url
        limits = Limits(
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_batch_bytes=max_batch_bytes,
            max_buffer_events=max_buffer_events,
            max_buffer_bytes=max_buffer_bytes,
            max_outage_s=max_outage_s,
            close_timeout=close_timeout,
        )
        sender = Sender(
            url,
            api_key,
            transport=transport,
            timeout=timeout,
            user_agent=f"modelwatch-sdk/{__version__}",
        )
        spool = None if spill_dir is None else Spool(spill_dir, max_spill_bytes)
        self._batcher = Batcher(sender, limits, retry or RetryPolicy(), spool, clock)

    # --- logging -------------------------------------------------------------------

    def log_prediction(
        self,
        model: str,
        version: str,
        request_id: str,
        features: Mapping[str, object],
        prediction: object,
        *,
        score: float | None = None,
        scores: Mapping[str, float] | None = None,
        segment: Mapping[str, object] | None = None,
        timestamp: Timestamp | None = None,
    ) -> bool:
        """Buffer one prediction event; False if it was dropped (see :attr:`stats`)."""
        try:
            event: dict[str, object] = {
                "request_id": request_id,
                "timestamp": _wire_timestamp(timestamp),
                "features": features,
                "prediction": prediction,
            }
            if score is not None:
                event["score"] = score
            if scores is not None:
                event["scores"] = scores
            if segment is not None:
                event["segment"] = segment
        except Exception as exc:
            return self._invalid("prediction", exc)
        return self._add(("/v1/predictions", model, version), event)

    def log_label(
        self, model: str, request_id: str, label: object, *, timestamp: Timestamp | None = None
    ) -> bool:
        """Buffer the ground truth for ``request_id``; False if it was dropped."""
        try:
            item = {
                "request_id": request_id,
                "label": label,
                "timestamp": _wire_timestamp(timestamp),
            }
        except Exception as exc:
            return self._invalid("label", exc)
        return self._add(("/v1/ground-truth", model, None), item)

    def log_usage(
        self,
        model: str,
        version: str,
        *,
        latency_ms: float | None = None,
        cpu_seconds: float | None = None,
        memory_mb: float | None = None,
        gpu_seconds: float | None = None,
        cost: float | None = None,
        timestamp: Timestamp | None = None,
        **extra: float,
    ) -> bool:
        """Buffer one resource usage sample; ``extra`` holds other numeric measurements."""
        try:
            values = {
                "latency_ms": latency_ms,
                "cpu_seconds": cpu_seconds,
                "memory_mb": memory_mb,
                "gpu_seconds": gpu_seconds,
                "cost": cost,
                **extra,
            }
            sample: dict[str, object] = {"timestamp": _wire_timestamp(timestamp)}
            sample.update((k, v) for k, v in values.items() if v is not None)
            if len(sample) == 1:
                raise ValueError("a usage sample needs at least one measurement")
            # An id of its own makes a resent batch idempotent, as request ids do.
            sample["sample_id"] = uuid.uuid4().hex
        except Exception as exc:
            return self._invalid("usage sample", exc)
        return self._add(("/v1/resource-usage", model, version), sample)

    def measure(self, model: str, version: str, **fields: float) -> Measurement:
        """``with client.measure(m, v): ...`` logs the block's latency and CPU time."""
        return Measurement(self, model, version, fields)

    def measured(
        self, model: str, version: str, **fields: float
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: log each call's latency and CPU time as a usage sample."""
        return measured(self, model, version, **fields)

    def _add(self, key: BatchKey, item: Mapping[str, object]) -> bool:
        try:
            _, model, version = key
            if not isinstance(model, str) or not (version is None or isinstance(version, str)):
                raise TypeError("model and version must be strings")
            data = orjson.dumps(item, default=_default, option=_DUMPS_OPTIONS)
            return self._batcher.add(key, data)
        except Exception as exc:
            return self._invalid(key[0].rsplit("/", 1)[-1], exc)

    def _invalid(self, what: str, exc: Exception) -> bool:
        self._batcher.count_dropped("invalid")
        self._batcher.throttle.warn(f"invalid {what}", "dropped an invalid %s: %s", what, exc)
        return False

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def stats(self) -> ClientStats:
        """Counters so far, as a frozen snapshot."""
        return self._batcher.stats()

    @property
    def dropped(self) -> dict[str, int]:
        """Items dropped so far by reason (every reason present, most of them 0):
        ``buffer_full``, ``outage_exceeded``, ``auth``, ``rejected``, ``too_large``,
        ``spill_full``, ``spill_error``, ``close_timeout``, ``closed``, ``invalid``,
        ``error``. Each drop episode is also logged (at most once per reason every
        10 s, with the count of the rest)."""
        return self._batcher.dropped()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far was delivered, spilled or given up,
        and no spilled batch is left that this client could send; False on timeout.
        With ``timeout=None`` it may wait for as long as ``max_outage_s``."""
        return self._batcher.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread; later ``log_*`` calls drop their item.

        Waits up to ``timeout`` seconds (default: the client's ``close_timeout``;
        None: until delivered or given up). What is still unsent then is written
        to ``spill_dir`` (when set; spilled files stay there for a later client)
        or dropped and counted as ``close_timeout``; then it returns False.
        """
        limit = self._batcher.limits.close_timeout if timeout is None else timeout
        return self._batcher.close(limit)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"
