"""Measure a predict call and log it as a resource usage sample.

Latency is wall time (:func:`time.perf_counter`); CPU is the process's CPU
time (:func:`time.process_time`) over the call, so in a server that predicts
on several threads at once it includes their work too. The sample is logged
whether or not the call raised; the exception is never swallowed.

    with client.measure("churn", "v7", cost=0.0002):
        y = model.predict(x)

    @client.measured("churn", "v7")
    def predict(x): ...
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from collector.sdk.client import Client

__all__ = ["Measurement", "measured"]

logger = logging.getLogger("modelwatch.sdk")

P = ParamSpec("P")
R = TypeVar("R")


class Measurement:
    """A context manager timing its block; ``fields`` are logged with the sample
    and may be added to inside the block (e.g. ``m.fields["tokens"] = 812``)."""

    def __init__(
        self, client: Client, model: str, version: str, fields: dict[str, float] | None = None
    ) -> None:
        self.client = client
        self.model = model
        self.version = version
        self.fields: dict[str, float] = dict(fields or {})
        self.latency_ms: float | None = None
        self.cpu_seconds: float | None = None
        self._started_at = 0.0
        self._wall0 = 0.0
        self._cpu0 = 0.0

    def __enter__(self) -> Measurement:
        self._started_at = time.time()
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.latency_ms = (time.perf_counter() - self._wall0) * 1000.0
        self.cpu_seconds = max(0.0, time.process_time() - self._cpu0)
        values: dict[str, Any] = {
            **self.fields,
            "latency_ms": self.latency_ms,
            "cpu_seconds": self.cpu_seconds,
        }
        try:
            self.client.log_usage(self.model, self.version, timestamp=self._started_at, **values)
        except Exception:  # never let monitoring mask or replace the caller's outcome
            logger.exception("modelwatch: could not log a usage sample")


def measured(
    client: Client, model: str, version: str, **fields: float
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (sync or async) so every call is measured and logged."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def measured_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with Measurement(client, model, version, fields):
                    return await fn(*args, **kwargs)

            return cast(Callable[P, R], measured_async)

        @functools.wraps(fn)
        def measured_call(*args: P.args, **kwargs: P.kwargs) -> R:
            with Measurement(client, model, version, fields):
                return fn(*args, **kwargs)

        return measured_call

    return decorate
