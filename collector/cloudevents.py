"""``POST /v1/cloudevents``: the inferences model servers' request loggers send as CloudEvents.

KServe's InferenceLogger (``logger: {mode: all, url: .../v1/cloudevents}``) posts each
inference twice, in binary content mode: the request (type
``org.kubeflow.serving.inference.request``) and, when the model answered 200, the response
(``...inference.response``), both with the same ``ce-id`` and the extension attributes
``inferenceservicename``, ``namespace``, ``component`` and ``endpoint``. Seldon Core's
executor sends the same pair as ``io.seldon.serving.inference.request``/``.response``, each
with its own ``ce-id`` and the inference's id in ``ce-requestid``. Events are parsed with
the CloudEvents SDK (binary and structured content modes).

The two halves arrive in any order, possibly retried. The first one is stored in
``cloudevent_halves`` under a key derived from the service, namespace, component and the
inference's id; its partner joins it and the pair becomes one prediction event per
instance (request id ``<id>:<i>``, or ``<id>`` for a single instance; timestamp the
request's ``time``), validated by the ingest validator and stored in the same transaction
that deletes the waiting half. Duplicate request ids are not stored twice, so a retried
half (waiting, or of a pair already stored) changes nothing. Halves still waiting after
``cloudevents.pair_timeout`` are dropped by a background job and counted by reason in
``cloudevent_drops`` (``modelwatch_cloudevents_dropped_total`` on ``/metrics``).

Which model version: the extension attributes ``modelwatchmodel`` and ``modelwatchversion``
when the event carries them, else ``cloudevents.services`` of the config by
``<namespace>/<service>`` or ``<service>``. Every event is answered 200 once stored
(``status``: ``waiting``, ``joined`` or ``duplicate``); KServe logs anything else as a
failure. A malformed CloudEvent is 400, an unknown type or a payload that does not fit the
model 422, an unmapped service or unknown model 404.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import Connection, Select, bindparam, delete, select, text

from collector.cloudevents_map import request_features, response_predictions
from collector.validation import validate_events
from modelwatch.auth import Principal
from modelwatch.cloudevents_spec import CloudEventsSpec, ServiceTarget
from modelwatch.domain import Scope
from modelwatch.errors import FieldError, ModelwatchError, NotFoundError, ValidationFailed
from modelwatch.http import ApiRoute, ORJSONResponse, Requires, read_body
from modelwatch.settings import Settings
from modelwatch.storable import NUL_MESSAGE, may_hold_nul, nul_locations
from modelwatch.store import tables as t
from modelwatch.store.bulk import insert_rows
from modelwatch.store.engine import Store
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord
from modelwatch.telemetry import INGEST_REJECTIONS, INGESTED_ITEMS
from modelwatch.timeutil import now_us, parse_timestamp_us

__all__ = ["EVENT_TYPES", "CloudEventsReceiver", "InvalidCloudEventError", "router"]

log = logging.getLogger(__name__)

REQUEST, RESPONSE = "request", "response"
EVENT_TYPES: dict[str, str] = {
    "org.kubeflow.serving.inference.request": REQUEST,
    "org.kubeflow.serving.inference.response": RESPONSE,
    "io.seldon.serving.inference.request": REQUEST,
    "io.seldon.serving.inference.response": RESPONSE,
}
_SELDON = "io.seldon."
_BINARY_REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type")
_EXPIRY_BATCH = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_halves = t.cloudevent_halves
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


class InvalidCloudEventError(ModelwatchError):
    """The request is not a well-formed CloudEvent."""

    status_code = 400
    code = "invalid_cloudevent"


@dataclass(frozen=True)
class _Half:
    """One parsed, mapped half of an inference."""

    kind: str
    event_id: str
    pair_id: str
    pair_key: str
    service: str
    model: ModelRecord
    version: VersionRecord
    ts_us: int
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What one event did: ``waiting`` for its partner, ``joined`` into ``accepted`` new
    prediction events, or ``duplicate`` (a retry: nothing new stored)."""

    status: str
    received: int
    accepted: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CloudEventsReceiver:
    """Parses, maps and pairs the halves; ``clock`` (epoch seconds) times the pairing."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        spec: CloudEventsSpec,
        *,
        max_instances: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.spec = spec
        self.max_instances = max_instances
        self.clock = clock
        # Built once: the pairing statements run for every event.
        pair = _halves.c.pair_key == bindparam("pair_key")
        columns = (_halves.c.kind, _halves.c.body, _halves.c.ts_us)
        self._find = select(*columns, _halves.c.model, _halves.c.version).where(pair)
        self._find = self._find.with_for_update()
        self._drop = delete(_halves).where(pair, _halves.c.kind == bindparam("kind"))
        self._keep = _halves.insert()
        self._joined: dict[int, Select[tuple[str]]] = {}

    @property
    def expiry_interval_s(self) -> float:
        """How often the background job drops expired halves: a tenth of the timeout."""
        return float(min(max(self.spec.pair_timeout / 10, 1), 60))

    def receive(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        event = parse_event(headers, body)
        if may_hold_nul(body):
            _refuse_nul(event)
        return self._pair(self._half(event))

    # --- parsing and mapping ---------------------------------------------------------

    def _half(self, event: CloudEvent) -> _Half:
        attrs = event.get_attributes()
        kind = EVENT_TYPES.get(str(attrs.get("type")))
        if kind is None:
            known = ", ".join(EVENT_TYPES)
            raise ValidationFailed(
                [
                    FieldError(
                        ("type",),
                        f"not an inference event type; accepted: {known}",
                        attrs.get("type"),
                    )
                ]
            )
        ts_us = parse_timestamp_us(attrs.get("time"))
        if ts_us is None:
            raise InvalidCloudEventError(f"time: not an RFC 3339 timestamp: {attrs.get('time')!r}")
        event_id = str(attrs["id"])
        pair_id = event_id
        if str(attrs["type"]).startswith(_SELDON) and attrs.get("requestid"):
            pair_id = str(attrs["requestid"])  # Seldon: each half has its own ce-id
        service = str(attrs.get("inferenceservicename") or "")
        namespace = str(attrs.get("namespace") or "")
        component = str(attrs.get("component") or attrs.get("modelid") or "")
        model, version, target = self._resolve(attrs, service, namespace)
        data = _data(event.get_data())
        if kind == REQUEST:
            rows = request_features(model.spec, data)
        else:
            rows = response_predictions(model.spec, data, target)
        if not rows:
            raise ValidationFailed([FieldError(("data",), "holds no instance")])
        if len(rows) > self.max_instances:
            raise ValidationFailed(
                [FieldError(("data",), f"{len(rows)} instances; at most {self.max_instances}")]
            )
        parts = "\x1f".join((service, namespace, component, pair_id))
        key = hashlib.sha256(parts.encode()).hexdigest()
        return _Half(kind, event_id, pair_id, key, service, model, version, ts_us, rows)

    def _resolve(
        self, attrs: Mapping[str, Any], service: str, namespace: str
    ) -> tuple[ModelRecord, VersionRecord, ServiceTarget | None]:
        target = self.spec.services.get(f"{namespace}/{service}") or self.spec.services.get(service)
        name, version = attrs.get("modelwatchmodel"), attrs.get("modelwatchversion")
        if name or version:
            if not (name and version):
                missing = "modelwatchversion" if name else "modelwatchmodel"
                raise ValidationFailed([FieldError((missing,), "required with the other one")])
        elif target is not None:
            name, version = target.model, target.version
        elif not service:
            raise ValidationFailed(
                [
                    FieldError(
                        ("inferenceservicename",),
                        "required: the event names neither its inference service nor "
                        "modelwatchmodel and modelwatchversion",
                    )
                ]
            )
        else:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise NotFoundError(
                f"inference service {service!r}{where} is not mapped to a model: add it to "
                "cloudevents.services in the config, or send the extension attributes "
                "modelwatchmodel and modelwatchversion"
            )
        try:
            model = self.registry.get_model(str(name))
            return model, self.registry.get_version(model, str(version)), target
        except NotFoundError as exc:
            raise NotFoundError(f"{exc} (events of inference service {service!r})") from None

    # --- pairing ---------------------------------------------------------------------

    def _pair(self, half: _Half) -> Outcome:
        other = RESPONSE if half.kind == REQUEST else REQUEST
        n = len(half.rows)
        failure: ValidationFailed | None = None
        inserted = 0
        with self.store.write() as conn:
            if self.store.is_postgres:  # both halves at once on two replicas: one waits
                lock = int.from_bytes(bytes.fromhex(half.pair_key[:16]), "big", signed=True)
                conn.execute(_ADVISORY_LOCK, {"k": lock})
            keys = {"pair_key": half.pair_key, "kind": other}
            found = conn.execute(self._find, {"pair_key": half.pair_key}).all()
            partner = next((row for row in found if row.kind == other), None)
            if partner is None:
                return self._wait(conn, half, already=bool(found))
            stored = orjson.loads(partner.body)
            request, response = (half.rows, stored) if half.kind == REQUEST else (stored, half.rows)
            ts_us = half.ts_us if half.kind == REQUEST else int(partner.ts_us)
            layout = half.model.layout
            try:
                if (partner.model, partner.version) != (half.model.name, half.version.version):
                    raise _mismatch(
                        f"the other half went to model {partner.model!r} version "
                        f"{partner.version!r}, this one to {half.model.name!r} "
                        f"version {half.version.version!r}"
                    )
                events = _events(half.pair_id, ts_us, request, response)
                batch = validate_events(layout, half.version.id, events)
            except ValidationFailed as exc:
                # The pair cannot be stored: nothing waits for a retry that would fail alike.
                failure = _relocated(exc)
                conn.execute(self._drop, keys)
                self._record_rejection(conn, half, len(request), failure)
            else:
                inserted = insert_rows(
                    conn, layout.events, layout.event_columns, batch.rows, ignore_conflicts=True
                )
                conn.execute(self._drop, keys)
        if failure is not None:
            INGEST_REJECTIONS.add(1, {"modelwatch.ingest.kind": "predictions"})
            raise failure
        labels = {"modelwatch.ingest.kind": "predictions", "modelwatch.model": half.model.name}
        INGESTED_ITEMS.add(inserted, labels)
        return Outcome("joined", n, inserted, n - inserted)

    def _wait(self, conn: Connection, half: _Half, *, already: bool) -> Outcome:
        """Store the first half, unless it is a retry (still waiting, or already joined).
        Under the pair's lock (the SQLite write lock, a PostgreSQL advisory lock)."""
        n = len(half.rows)
        if already:
            return Outcome("duplicate", n, 0, n)
        first = half.pair_id if n == 1 else f"{half.pair_id}:0"
        ids = {"ids": [half.pair_id, first], "version_id": half.version.id}
        if conn.execute(self._joined_query(half.model), ids).first() is not None:
            return Outcome("duplicate", n, 0, n)
        row = {
            "pair_key": half.pair_key,
            "kind": half.kind,
            "event_id": half.event_id[:256],
            "model": half.model.name,
            "version": half.version.version,
            "ts_us": half.ts_us,
            "received_us": int(self.clock() * 1_000_000),
            "body": orjson.dumps(half.rows).decode(),
        }
        conn.execute(self._keep, row)
        return Outcome("waiting", n)

    def _joined_query(self, model: ModelRecord) -> Select[tuple[str]]:
        """Whether a version's events hold one of ``ids`` (a pair stored before)."""
        query = self._joined.get(model.id)
        if query is None:
            events = model.layout.events
            query = (
                select(events.c.request_id)
                .where(
                    events.c.request_id.in_(bindparam("ids", expanding=True)),
                    events.c.version_id == bindparam("version_id"),
                )
                .limit(1)
            )
            self._joined[model.id] = query
        return query

    def _record_rejection(
        self, conn: Connection, half: _Half, items: int, exc: ValidationFailed
    ) -> None:
        """As the ingest path records a refused batch, for data quality's schema violations."""
        conn.execute(
            t.ingest_rejections.insert().values(
                model_id=half.model.id,
                version_id=half.version.id,
                received_us=now_us(),
                kind="predictions",
                items=items,
                errors=len(exc.errors),
                first_error=str(exc)[:1000],
            )
        )

    # --- expiry ----------------------------------------------------------------------

    def expire(self) -> dict[str, int]:
        """Drop the halves older than the pairing timeout; count them by reason."""
        cutoff = int((self.clock() - self.spec.pair_timeout) * 1_000_000)
        dropped: dict[str, int] = {}
        for kind in (REQUEST, RESPONSE):
            reason = f"unpaired_{kind}"
            dropped[reason] = 0
            while True:  # in batches, each its own transaction: no long write lock
                with self.store.write() as conn:
                    old = (_halves.c.kind == kind) & (_halves.c.received_us < cutoff)
                    keys = select(_halves.c.pair_key).where(old).limit(_EXPIRY_BATCH)
                    gone = conn.execute(
                        delete(_halves).where(old, _halves.c.pair_key.in_(keys))
                    ).rowcount
                    if gone:
                        self._count(conn, reason, gone)
                dropped[reason] += gone
                if gone < _EXPIRY_BATCH:
                    break
        if any(dropped.values()):
            log.warning(
                "dropped CloudEvents halves unpaired after %ss: %s", self.spec.pair_timeout, dropped
            )
        return dropped

    def expire_quietly(self) -> None:
        """:meth:`expire` as a background job: a failure is logged, never raised."""
        try:
            self.expire()
        except Exception:
            log.exception("dropping expired CloudEvents halves failed")

    def _count(self, conn: Connection, reason: str, n: int) -> None:
        drops = t.cloudevent_drops
        insert = self.store.insert(drops).values(reason=reason, dropped=n)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["reason"],
                set_={"dropped": drops.c.dropped + insert.excluded.dropped},
            )
        )


def parse_event(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """The CloudEvent of an HTTP request, in binary or structured content mode."""
    lowered = {k.lower(): v for k, v in headers.items()}
    media = lowered.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/cloudevents-batch+json":
        raise InvalidCloudEventError("batched content mode is not supported: one event a request")
    structured = media.startswith("application/cloudevents")
    if not structured:
        if not any(h.startswith("ce-") for h in lowered):
            raise InvalidCloudEventError(
                "not a CloudEvent: send binary content mode (headers ce-specversion, ce-id, "
                "ce-source, ce-type) or structured mode (application/cloudevents+json)"
            )
        missing = [h for h in _BINARY_REQUIRED if not lowered.get(h)]
        if missing:
            raise InvalidCloudEventError(f"binary-mode CloudEvent without {', '.join(missing)}")
    if structured:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidCloudEventError(
                f"a structured-mode CloudEvent is UTF-8 JSON: invalid byte at {exc.start}"
            ) from None
    try:
        return from_http(lowered, body, data_unmarshaller=_json_or_bytes)
    except (GenericException, UnicodeDecodeError) as exc:
        mode = "structured" if structured else "binary"
        raise InvalidCloudEventError(
            f"not a valid {mode}-mode CloudEvent: {str(exc)[:300]}"
        ) from None


def _refuse_nul(event: CloudEvent) -> None:
    """Neither store can keep a string holding NUL alike: refused, at its path."""
    found = [*nul_locations(event.get_attributes()), *nul_locations(event.get_data(), ("data",))]
    if found:
        raise ValidationFailed([FieldError(loc, NUL_MESSAGE) for loc in found])


def _json_or_bytes(data: Any) -> Any:
    if isinstance(data, bytes | str) and data:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
    return data


def _data(data: object) -> object:
    """The event's data as a document: raw bytes are parsed here so errors say where."""
    if data is None or data in (b"", ""):
        raise ValidationFailed([FieldError(("data",), "required: the inference payload")])
    if isinstance(data, bytes | str):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValidationFailed([FieldError(("data",), f"not JSON: {exc}")]) from None
    return data


def _events(pair_id: str, ts_us: int, request: list[Any], response: list[Any]) -> list[Any]:
    if len(request) != len(response):
        raise _mismatch(f"the request has {len(request)} instances, the response {len(response)}")
    stamp = (_EPOCH + timedelta(microseconds=ts_us)).isoformat()
    single = len(request) == 1
    return [
        {
            **prediction,
            "request_id": pair_id if single else f"{pair_id}:{i}",
            "timestamp": stamp,
            "features": features,
        }
        for i, (features, prediction) in enumerate(zip(request, response, strict=True))
    ]


def _mismatch(msg: str) -> ValidationFailed:
    return ValidationFailed([FieldError(("data",), msg)])


def _relocated(exc: ValidationFailed) -> ValidationFailed:
    """The validator's ``events[i]...`` paths as ``instances[i]...``: the CloudEvents'
    instance ``i``."""
    errors = [
        FieldError(("instances", *e.loc[1:]), e.msg, e.input) if e.loc[:1] == ("events",) else e
        for e in exc.errors
    ]
    return ValidationFailed(errors)


# --- HTTP --------------------------------------------------------------------------------

router = APIRouter(
    prefix="/v1", tags=["ingest"], default_response_class=ORJSONResponse, route_class=ApiRoute
)


class CloudEventAnswer(BaseModel):
    status: str
    received: int
    accepted: int
    duplicates: int


_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "binary mode: the data, ce-* headers"}
            },
            "application/cloudevents+json": {
                "schema": {"type": "object", "description": "structured mode: the whole event"}
            },
        },
    }
}


@router.post("/cloudevents", openapi_extra=_DOC, response_model=CloudEventAnswer)
async def post_cloudevent(
    request: Request, _: Principal = Requires(Scope.INGEST)
) -> dict[str, Any]:
    """One half (request or response) of an inference from a model server's request logger."""
    settings: Settings = request.app.state.settings
    body = await read_body(request, settings.max_body_bytes)
    receiver: CloudEventsReceiver = request.app.state.cloudevents
    outcome = await run_in_threadpool(receiver.receive, dict(request.headers), body)
    return outcome.as_dict()
