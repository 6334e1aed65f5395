"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from modelwatch.errors import ModelwatchError
from modelwatch.http import ORJSONResponse
from modelwatch.store.engine import Store
from modelwatch.store.migrate import is_current

__all__ = ["router"]

router = APIRouter(tags=["health"], default_response_class=ORJSONResponse)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> dict[str, str] | ORJSONResponse:
    """The store is reachable and its schema is current."""
    store: Store = request.app.state.store
    try:
        await run_in_threadpool(store.ping)
        current = await run_in_threadpool(is_current, store)
    except ModelwatchError as exc:
        return ORJSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    except Exception as exc:  # the store may fail in ways we cannot enumerate
        return ORJSONResponse({"status": "unavailable", "detail": repr(exc)}, status_code=503)
    if not current:
        detail = "store schema is behind; run 'modelwatch db upgrade'"
        return ORJSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
    return {"status": "ok", "store": store.dialect}
