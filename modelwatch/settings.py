"""Process settings. Every environment variable modelwatch reads is a constant here.

| variable | meaning | default |
|---|---|---|
| ``MODELWATCH_DATABASE_URL`` | SQLAlchemy URL of the store | ``sqlite:///modelwatch.db`` |
| ``MODELWATCH_CONFIG`` | path of the YAML config file | none |
| ``MODELWATCH_MAX_BODY_BYTES`` | largest ingest request body accepted (413 beyond) | 16 MiB |
| ``MODELWATCH_MAX_REFERENCE_BYTES`` | largest reference upload accepted (413 beyond) | 512 MiB |
| ``MODELWATCH_MAX_BATCH_EVENTS`` | most events, labels or samples in one request | 100000 |
| ``MODELWATCH_MAX_INFLIGHT_BATCHES`` | ingest requests at once per process (503 beyond) | 16 |
| ``MODELWATCH_MAX_JSON_BYTES`` | largest body of every other route | 1 MiB |
| ``MODELWATCH_BODY_TIMEOUT_S`` | seconds a client has to send a whole body (408 beyond) | 30 |
| ``MODELWATCH_UPLOAD_TIMEOUT_S`` | the same for reference uploads and retrain callbacks | 300 |
| ``MODELWATCH_HEADER_TIMEOUT_S`` | seconds to send a request's line and headers (408 beyond) | 10 |
| ``MODELWATCH_WORKERS`` | ``modelwatch serve``: API processes (``--workers``) | 1 |
| ``MODELWATCH_SCHEDULER_STATE`` | set by ``serve --workers N``: its scheduler's state file | none |
| ``MODELWATCH_LOG_LEVEL`` | Python logging level name | ``INFO`` |
| ``MODELWATCH_DEMO_SLACK_CHANNEL`` | ``modelwatch demo``: Slack channel for its alerts | none |
| ``MODELWATCH_API_KEY`` | ``modelwatch demo --api-url``: the key its simulator sends | none |
| ``MODELWATCH_WEBHOOK_SECRET`` | whsec_ secret for ``modelwatch webhooks sign/verify`` | none |
| ``MODELWATCH_METRICS_TOP_FEATURES`` | drifted features per version in ``/metrics`` | 10 |
| ``MLFLOW_TRACKING_TOKEN`` | the ``mlflow:`` sync's bearer token (as MLflow's own client) | none |
| ``MLFLOW_TRACKING_USERNAME`` | the ``mlflow:`` sync's basic-auth user, without a token | none |
| ``MLFLOW_TRACKING_PASSWORD`` | the ``mlflow:`` sync's basic-auth password | none |
| ``MODELWATCH_METRICS_INLINE_BUDGET_S`` | slower ``/metrics`` sections: from the last read | 1 |
| ``MODELWATCH_REPORT_DIR`` | cache of ``/v1/runs/{id}/report`` | ``./modelwatch-reports`` |
| ``MODELWATCH_REPORT_MAX_ROWS`` | rows a run report samples (seeded), window and baseline | 20000 |
| ``MODELWATCH_DB_CONNECT_TIMEOUT_S`` | opening a connection; a pooled one's check | 5 |
| ``MODELWATCH_DB_POOL_TIMEOUT_S`` | waiting for a free pooled connection (PostgreSQL) | 5 |
| ``MODELWATCH_DB_STATEMENT_TIMEOUT_S`` | API and short background statements (see below) | 30 |
| ``MODELWATCH_DB_READ_TIMEOUT_S`` | an evaluation's window or reference read (PostgreSQL) | 600 |
| ``MODELWATCH_DB_LOCK_TIMEOUT_S`` | longest wait for a row or table lock (PostgreSQL) | 5 |
| ``MODELWATCH_DB_DEAD_PEER_S`` | a silent PostgreSQL peer is dropped after about this | 10 |
| ``MODELWATCH_RUN_LEASE_S`` | seconds before a dead worker's evaluation run is taken over | 900 |
| ``MODELWATCH_DELIVERY_LEASE_S`` | seconds until a dead worker's delivery is taken over | 120 |

The statement timeout also bounds a store transaction whose server stays silent
(the client cuts it 2 s later) and the longest a SQLite writer queues for the
write lock. The dead-peer bound works through TCP keepalives and
``tcp_user_timeout``.

OpenTelemetry export of the service's own traces and metrics (standard
``OTEL_*`` variables, read by :mod:`modelwatch.telemetry`; nothing is exported
unless an endpoint is set):

| variable | meaning | default |
|---|---|---|
| ``OTEL_SDK_DISABLED`` | ``true`` turns all export off | ``false`` |
| ``OTEL_EXPORTER_OTLP_ENDPOINT`` | OTLP/HTTP base URL; ``/v1/<signal>`` is added | none |
| ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` | full URL for traces (overrides the base) | none |
| ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` | full URL for metrics (overrides the base) | none |
| ``OTEL_EXPORTER_OTLP_PROTOCOL`` | only ``http/protobuf`` is supported | ``http/protobuf`` |
| ``OTEL_TRACES_EXPORTER`` | ``otlp`` or ``none`` | ``otlp`` |
| ``OTEL_METRICS_EXPORTER`` | ``otlp`` or ``none`` | ``otlp`` |
| ``OTEL_SERVICE_NAME`` | ``service.name`` of the exported resource | ``modelwatch`` |
| ``OTEL_RESOURCE_ATTRIBUTES`` | extra resource attributes, ``key=value,...`` | none |
| ``OTEL_METRIC_EXPORT_INTERVAL`` | milliseconds between metric exports | ``60000`` |

The exporter itself also reads ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]HEADERS``,
``_TIMEOUT``, ``_COMPRESSION`` and ``_CERTIFICATE``, and the span processor the
``OTEL_BSP_*`` variables, from the process environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ENV_API_KEY",
    "ENV_BODY_TIMEOUT_S",
    "ENV_CONFIG",
    "ENV_DATABASE_URL",
    "ENV_DB_CONNECT_TIMEOUT_S",
    "ENV_DB_DEAD_PEER_S",
    "ENV_DB_LOCK_TIMEOUT_S",
    "ENV_DB_POOL_TIMEOUT_S",
    "ENV_DB_READ_TIMEOUT_S",
    "ENV_DB_STATEMENT_TIMEOUT_S",
    "ENV_DELIVERY_LEASE_S",
    "ENV_DEMO_SLACK_CHANNEL",
    "ENV_HEADER_TIMEOUT_S",
    "ENV_LOG_LEVEL",
    "ENV_MAX_BATCH_EVENTS",
    "ENV_MAX_BODY_BYTES",
    "ENV_MAX_INFLIGHT_BATCHES",
    "ENV_MAX_JSON_BYTES",
    "ENV_MAX_REFERENCE_BYTES",
    "ENV_METRICS_INLINE_BUDGET_S",
    "ENV_METRICS_TOP_FEATURES",
    "ENV_MLFLOW_TRACKING_PASSWORD",
    "ENV_MLFLOW_TRACKING_TOKEN",
    "ENV_MLFLOW_TRACKING_USERNAME",
    "ENV_OTEL_ENDPOINT",
    "ENV_OTEL_METRICS_ENDPOINT",
    "ENV_OTEL_METRICS_EXPORTER",
    "ENV_OTEL_METRIC_EXPORT_INTERVAL",
    "ENV_OTEL_PROTOCOL",
    "ENV_OTEL_RESOURCE_ATTRIBUTES",
    "ENV_OTEL_SDK_DISABLED",
    "ENV_OTEL_SERVICE_NAME",
    "ENV_OTEL_TRACES_ENDPOINT",
    "ENV_OTEL_TRACES_EXPORTER",
    "ENV_REPORT_DIR",
    "ENV_REPORT_MAX_ROWS",
    "ENV_RUN_LEASE_S",
    "ENV_SCHEDULER_STATE",
    "ENV_UPLOAD_TIMEOUT_S",
    "ENV_WEBHOOK_SECRET",
    "ENV_WORKERS",
    "Settings",
    "lease_seconds",
]

ENV_DATABASE_URL = "MODELWATCH_DATABASE_URL"
ENV_CONFIG = "MODELWATCH_CONFIG"
ENV_MAX_BODY_BYTES = "MODELWATCH_MAX_BODY_BYTES"
ENV_MAX_REFERENCE_BYTES = "MODELWATCH_MAX_REFERENCE_BYTES"
ENV_MAX_BATCH_EVENTS = "MODELWATCH_MAX_BATCH_EVENTS"
ENV_MAX_JSON_BYTES = "MODELWATCH_MAX_JSON_BYTES"
ENV_MAX_INFLIGHT_BATCHES = "MODELWATCH_MAX_INFLIGHT_BATCHES"
ENV_BODY_TIMEOUT_S = "MODELWATCH_BODY_TIMEOUT_S"
ENV_UPLOAD_TIMEOUT_S = "MODELWATCH_UPLOAD_TIMEOUT_S"
ENV_HEADER_TIMEOUT_S = "MODELWATCH_HEADER_TIMEOUT_S"
ENV_LOG_LEVEL = "MODELWATCH_LOG_LEVEL"
ENV_WORKERS = "MODELWATCH_WORKERS"
ENV_SCHEDULER_STATE = "MODELWATCH_SCHEDULER_STATE"
ENV_WEBHOOK_SECRET = "MODELWATCH_WEBHOOK_SECRET"
ENV_API_KEY = "MODELWATCH_API_KEY"
ENV_DEMO_SLACK_CHANNEL = "MODELWATCH_DEMO_SLACK_CHANNEL"
ENV_METRICS_TOP_FEATURES = "MODELWATCH_METRICS_TOP_FEATURES"
ENV_METRICS_INLINE_BUDGET_S = "MODELWATCH_METRICS_INLINE_BUDGET_S"
ENV_MLFLOW_TRACKING_TOKEN = "MLFLOW_TRACKING_TOKEN"
ENV_MLFLOW_TRACKING_USERNAME = "MLFLOW_TRACKING_USERNAME"
ENV_MLFLOW_TRACKING_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
ENV_REPORT_DIR = "MODELWATCH_REPORT_DIR"
ENV_REPORT_MAX_ROWS = "MODELWATCH_REPORT_MAX_ROWS"
ENV_DB_CONNECT_TIMEOUT_S = "MODELWATCH_DB_CONNECT_TIMEOUT_S"
ENV_DB_POOL_TIMEOUT_S = "MODELWATCH_DB_POOL_TIMEOUT_S"
ENV_DB_STATEMENT_TIMEOUT_S = "MODELWATCH_DB_STATEMENT_TIMEOUT_S"
ENV_DB_READ_TIMEOUT_S = "MODELWATCH_DB_READ_TIMEOUT_S"
ENV_DB_LOCK_TIMEOUT_S = "MODELWATCH_DB_LOCK_TIMEOUT_S"
ENV_DB_DEAD_PEER_S = "MODELWATCH_DB_DEAD_PEER_S"
ENV_RUN_LEASE_S = "MODELWATCH_RUN_LEASE_S"
ENV_DELIVERY_LEASE_S = "MODELWATCH_DELIVERY_LEASE_S"

ENV_OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_OTEL_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTEL_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_OTEL_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
ENV_OTEL_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
ENV_OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
ENV_OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
ENV_OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"

DEFAULT_DATABASE_URL = "sqlite:///modelwatch.db"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"environment variable {name}={raw!r} must be positive")
    return value


def lease_seconds(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """A claim lease from the environment (``ENV_RUN_LEASE_S``, ``ENV_DELIVERY_LEASE_S``).

    Read where the claiming store is built, so ``serve``, ``worker`` and the API
    processes of ``serve --workers N`` all honour it without more wiring. A lease
    shorter than the longest evaluation or delivery lets a second worker take over
    work that is still in progress.
    """
    return _seconds(os.environ if env is None else env, name, default)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"environment variable {name}={raw!r} must be positive seconds")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    config_path: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_reference_bytes: int = 512 * 1024 * 1024
    max_batch_events: int = 100_000
    max_json_bytes: int = 1024 * 1024
    max_inflight_batches: int = 16
    body_timeout_s: float = 30.0
    upload_timeout_s: float = 300.0
    header_timeout_s: float = 10.0
    log_level: str = "INFO"
    metrics_top_features: int = 10
    metrics_inline_budget_s: float = 1.0
    report_dir: str = "./modelwatch-reports"
    report_max_rows: int = 20_000
    scheduler_state_path: str | None = None
    db_connect_timeout_s: float = 5.0
    db_pool_timeout_s: float = 5.0
    db_statement_timeout_s: float = 30.0
    db_read_timeout_s: float = 600.0
    db_lock_timeout_s: float = 5.0
    db_dead_peer_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL,
            config_path=env.get(ENV_CONFIG) or None,
            max_body_bytes=_int(env, ENV_MAX_BODY_BYTES, cls.max_body_bytes),
            max_reference_bytes=_int(env, ENV_MAX_REFERENCE_BYTES, cls.max_reference_bytes),
            max_batch_events=_int(env, ENV_MAX_BATCH_EVENTS, cls.max_batch_events),
            max_json_bytes=_int(env, ENV_MAX_JSON_BYTES, cls.max_json_bytes),
            max_inflight_batches=_int(env, ENV_MAX_INFLIGHT_BATCHES, cls.max_inflight_batches),
            body_timeout_s=_int(env, ENV_BODY_TIMEOUT_S, int(cls.body_timeout_s)),
            upload_timeout_s=_int(env, ENV_UPLOAD_TIMEOUT_S, int(cls.upload_timeout_s)),
            header_timeout_s=_seconds(env, ENV_HEADER_TIMEOUT_S, cls.header_timeout_s),
            log_level=env.get(ENV_LOG_LEVEL) or "INFO",
            metrics_top_features=_int(env, ENV_METRICS_TOP_FEATURES, cls.metrics_top_features),
            metrics_inline_budget_s=_seconds(
                env, ENV_METRICS_INLINE_BUDGET_S, cls.metrics_inline_budget_s
            ),
            report_dir=env.get(ENV_REPORT_DIR) or cls.report_dir,
            report_max_rows=_int(env, ENV_REPORT_MAX_ROWS, cls.report_max_rows),
            scheduler_state_path=env.get(ENV_SCHEDULER_STATE) or None,
            db_connect_timeout_s=_seconds(env, ENV_DB_CONNECT_TIMEOUT_S, 5.0),
            db_pool_timeout_s=_seconds(env, ENV_DB_POOL_TIMEOUT_S, 5.0),
            db_statement_timeout_s=_seconds(env, ENV_DB_STATEMENT_TIMEOUT_S, 30.0),
            db_read_timeout_s=_seconds(env, ENV_DB_READ_TIMEOUT_S, 600.0),
            db_lock_timeout_s=_seconds(env, ENV_DB_LOCK_TIMEOUT_S, 5.0),
            db_dead_peer_s=_seconds(env, ENV_DB_DEAD_PEER_S, 10.0),
        )
