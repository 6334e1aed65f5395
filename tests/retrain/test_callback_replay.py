"""Signed callbacks: the signature is checked before the body is parsed or anything is
revealed, and a delivery is applied once per webhook-id. Both stores."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select, update

from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.store import tables as t
from modelwatch.timeutil import utcnow
from modelwatch.webhooks import HEADER_SIGNATURE, generate_secret, signed_headers
from retrain.callback import RECEIPT_KEEP_S
from tests.api.test_limits import HUGE, drive
from tests.retrain.conftest import Loop
from tests.retrain.helpers import SECRET, audit, requests


def _signed(body: dict[str, Any] | bytes, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return signed_headers([secret], msg_id, raw)


def _send(api: TestClient, body: dict[str, Any] | bytes, headers: dict[str, str]) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    response: Response = api.post(
        "/v1/retrain/callback",
        content=raw,
        headers={"content-type": "application/json", **headers},
    )
    return response


def test_a_replayed_callback_changes_nothing(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    early = {"retrain_id": retrain_id, "status": "running", "progress": 0.2}
    early_headers = _signed(early, "msg_early")
    assert _send(api, early, early_headers).json()["progress"] == 0.2
    later = {"retrain_id": retrain_id, "status": "running", "progress": 0.6}
    assert _send(api, later, _signed(later, "msg_later")).json()["progress"] == 0.6
    records = len(audit(store))

    replay = _send(api, early, early_headers)  # the old delivery again, within tolerance
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "running" and replay.json()["progress"] == 0.6
    assert requests(store)[0]["progress"] == 0.6  # progress did not move back
    assert len(audit(store)) == records  # and no second audit record
    assert [r.details["progress"] for r in audit(store, "retrain.running")] == [0.2, 0.6]


def test_a_retried_delivery_is_answered_with_the_current_state(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    failed = {"retrain_id": retrain_id, "status": "failed", "message": "OOM"}
    headers = _signed(failed, "msg_failed")
    first = _send(api, failed, headers)
    assert first.status_code == 200 and first.json()["status"] == "failed"
    records = len(audit(store))
    again = _send(api, failed, headers)  # the pipeline timed out and sent it again
    assert again.status_code == 200 and again.json() == first.json()
    assert len(audit(store)) == records


def test_receipts_older_than_a_replay_could_be_are_pruned(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    for i in range(3):
        body = {"retrain_id": retrain_id, "status": "running", "progress": i / 10}
        assert _send(api, body, _signed(body, f"msg_{i}")).status_code == 200
    stale = utcnow() - timedelta(seconds=RECEIPT_KEEP_S + 1)
    r = t.webhook_receipts
    with store.write() as conn:
        conn.execute(update(r).where(r.c.webhook_id != "msg_2").values(received_at=stale))
    body = {"retrain_id": retrain_id, "status": "running", "progress": 0.5}
    assert _send(api, body, _signed(body, "msg_3")).status_code == 200
    with store.read() as conn:
        kept = sorted(conn.execute(select(r.c.webhook_id)).scalars())
    assert kept == ["msg_2", "msg_3"]


def test_nothing_is_revealed_before_the_signature_verifies(loop: Loop) -> None:
    api, store = loop.api, loop.world.store
    loop.request_retrain()
    wrong = generate_secret()
    for body in (
        {"retrain_id": "msg_nope", "status": "running"},  # an unknown retrain
        {"retrain_id": "msg_nope", "status": "bogus", "extra": 1},  # not the schema
        b"{not json",
    ):
        answer = _send(api, body, _signed(body, "msg_x", wrong))
        assert answer.status_code == 401, answer.text
        assert answer.json() == {
            "error": "bad_signature",
            "detail": "no signature matches the body with the given secret(s)",
        }
    # with a valid signature the same bodies get their real answers
    unknown = {"retrain_id": "msg_nope", "status": "running"}
    assert _send(api, unknown, _signed(unknown, "msg_y")).status_code == 404
    bad = {"retrain_id": "msg_nope", "status": "bogus"}
    assert _send(api, bad, _signed(bad, "msg_z")).status_code == 422
    assert audit(store, "retrain.running") == []


def test_headers_and_keys_are_checked_before_the_body_is_read(loop: Loop) -> None:
    app, store = loop.api.app, loop.world.store
    retrain_id = loop.request_retrain()
    body = orjson.dumps({"retrain_id": retrain_id, "status": "running"})
    stale = signed_headers([SECRET], "msg_old", body, int(time.time()) - 3600)
    sent = drive(app, "/v1/retrain/callback", stale, HUGE)  # type: ignore[arg-type]
    assert (sent.status, sent.pulled) == (401, 0)
    assert "tolerance" in sent.json()["detail"]
    missing = drive(app, "/v1/retrain/callback", {HEADER_SIGNATURE: "v1,x"}, HUGE)  # type: ignore[arg-type]
    assert (missing.status, missing.pulled) == (401, 0)
    assert "missing header" in missing.json()["detail"]
    KeyStore(store).create("viewer", Scope.READ)
    unsigned = drive(app, "/v1/retrain/callback", {}, HUGE)  # type: ignore[arg-type]
    assert (unsigned.status, unsigned.pulled) == (401, 0)


def test_two_copies_at_once_apply_once(loop: Loop) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api, store = loop.api, loop.world.store
    retrain_id = loop.request_retrain()
    body = {"retrain_id": retrain_id, "status": "running", "progress": 0.3}
    headers = _signed(body, "msg_twice")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _send(api, body, headers), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert len(audit(store, "retrain.running")) == 1
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.webhook_receipts)).scalar() == 1
