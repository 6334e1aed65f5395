"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from fastapi import APIRouter, Request

from modelwatch.errors import ModelwatchError
from modelwatch.http import ORJSONResponse
from modelwatch.store.engine import Store
from modelwatch.store.migrate import schema_problem

__all__ = ["READY_DEADLINE_S", "router"]

router = APIRouter(tags=["health"], default_response_class=ORJSONResponse)

# A load balancer's probe gets an answer within this, whatever the store does.
READY_DEADLINE_S = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (the store is not consulted)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> dict[str, str] | ORJSONResponse:
    """The store answers within two seconds and its schema is current."""
    store: Store = request.app.state.store
    check = _readiness(request).check()
    try:
        problem = await asyncio.wait_for(
            asyncio.shield(asyncio.wrap_future(check)), READY_DEADLINE_S
        )
    except TimeoutError:
        problem = f"store did not answer within {READY_DEADLINE_S:g}s"
    if problem is not None:
        return ORJSONResponse({"status": "unavailable", "detail": problem}, status_code=503)
    return {"status": "ok", "store": store.dialect}


class Readiness:
    """Checks the store on a thread of its own, one check at a time: a store that
    hangs holds one thread, not one per probe, and never the request thread pool."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._running: Future[str | None] | None = None

    def check(self) -> Future[str | None]:
        """The check in progress, or a new one: its result is None or the problem."""
        with self._lock:
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(
                    target=self._run, args=(self._running,), name="mw-readyz", daemon=True
                ).start()
            return self._running

    def _run(self, result: Future[str | None]) -> None:
        try:
            self.store.ping()
            problem = schema_problem(self.store)
        except ModelwatchError as exc:
            result.set_result(str(exc))
        except Exception as exc:  # the store may fail in ways we cannot enumerate
            result.set_result(repr(exc))
        else:
            result.set_result(problem)


def _readiness(request: Request) -> Readiness:
    state = request.app.state
    readiness: Readiness | None = getattr(state, "readiness", None)
    if readiness is None or readiness.store is not state.store:
        readiness = state.readiness = Readiness(state.store)
    return readiness
