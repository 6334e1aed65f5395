"""Catalog tables (managed by Alembic). Per-model data tables live in :mod:`layout`."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelwatch.store.types import UTCDateTime

__all__ = [
    "alias_changes",
    "api_keys",
    "approvals",
    "archive_files",
    "audit_log",
    "metadata",
    "model_versions",
    "models",
    "pipeline_endpoints",
    "reference_datasets",
    "retention_settings",
    "retrain_cooldowns",
    "retrain_requests",
    "usage_samples",
    "webhook_receipts",
]

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("task", String(16), nullable=False),
    Column("spec", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(128), nullable=False),
    Column("alias", String(16), nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_version"),
    UniqueConstraint("model_id", "alias", name="uq_model_versions_alias"),
)

alias_changes = Table(
    "alias_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("alias", String(16), nullable=False),
    Column("from_version_id", Integer, ForeignKey("model_versions.id"), nullable=True),
    Column("to_version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("changed_by", String(128), nullable=False),
    Index("ix_alias_changes_model", "model_id", "changed_at"),
)

reference_datasets = Table(
    "reference_datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("rows", BigInteger, nullable=False),
    Column("format", String(16), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("uploaded_at", UTCDateTime(), nullable=False),
    Column("uploaded_by", String(128), nullable=False),
    Index("ix_reference_datasets_version", "version_id", "id"),
)

usage_samples = Table(
    "usage_samples",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column(
        "version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("ts_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("latency_ms", Float, nullable=True),
    Column("cpu_seconds", Float, nullable=True),
    Column("memory_mb", Float, nullable=True),
    Column("gpu_seconds", Float, nullable=True),
    Column("cost", Float, nullable=True),
    Column("extra", Text, nullable=True),
    Column("sample_id", String(128), nullable=True),
    Index("ix_usage_samples_version_ts", "version_id", "ts_us"),
    # A resent sample (same id) is a duplicate; samples without an id are all kept.
    Index("uq_usage_samples_sample", "version_id", "sample_id", unique=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

monitors = Table(
    "monitors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("spec", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# One row per (monitor, version, window, segment key, data state): the unique key
# is what makes every window evaluate exactly once per state, however many workers.
evaluation_runs = Table(
    "evaluation_runs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("monitor_id", Integer, ForeignKey("monitors.id", ondelete="CASCADE"), nullable=False),
    Column(
        "version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("window_start_us", BigInteger, nullable=False),
    Column("window_end_us", BigInteger, nullable=False),
    Column("segment_key", String(128), nullable=False),
    Column("data_state", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("current", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("n_events", BigInteger, nullable=False, default=0),
    Column("n_labels", BigInteger, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint(
        "monitor_id",
        "version_id",
        "window_start_us",
        "segment_key",
        "data_state",
        name="uq_evaluation_runs_key",
    ),
    Index("ix_evaluation_runs_status", "status", "window_start_us"),
    Index("ix_evaluation_runs_monitor", "monitor_id", "id"),
)

metric_results = Table(
    "metric_results",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column(
        "run_id", BigInteger, ForeignKey("evaluation_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("monitor_id", Integer, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("window_start_us", BigInteger, nullable=False),
    Column("window_end_us", BigInteger, nullable=False),
    Column("current", Integer, nullable=False),
    Column("segment", String(256), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("column_name", String(256), nullable=False),
    Column("label", String(128), nullable=False),
    Column("value", Float, nullable=True),
    Column("p_value", Float, nullable=True),
    Column("ci_low", Float, nullable=True),
    Column("ci_high", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("n", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),
    Column("detail", Text, nullable=False),
    Column("p_adjusted", Float, nullable=True),  # p_value adjusted over the run's tests
    Column("effect", Float, nullable=True),  # the effect size a drift verdict also needed
    Column("band_low", Float, nullable=True),  # the band learnt from the reference chunks
    Column("band_high", Float, nullable=True),
    Index("ix_metric_results_query", "version_id", "metric", "window_start_us"),
    Index("ix_metric_results_run", "run_id"),
)

# Batches the collector refused, so data quality can report schema violations.
ingest_rejections = Table(
    "ingest_rejections",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", Integer, nullable=True),
    Column("received_us", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("items", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("first_error", Text, nullable=False),
    Index("ix_ingest_rejections_version", "version_id", "received_us"),
)

_BIGPK = BigInteger().with_variant(Integer, "sqlite")

policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("spec", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# An alert's identity is its label set (the fingerprint); one row per identity,
# re-used when it fires again, with every transition kept in alert_transitions.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("policy", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("labels", Text, nullable=False),
    Column("annotations", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("trend", Text, nullable=False),
    Column("consecutive", Integer, nullable=False),
    Column("window_start_us", BigInteger, nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_alerts_state", "state"),
)

alert_transitions = Table(
    "alert_transitions",
    metadata,
    Column("id", _BIGPK, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("cause", Text, nullable=False),
    Index("ix_alert_transitions_alert", "alert_id", "id"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("matchers", Text, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expired_at", UTCDateTime(), nullable=True),
)

alert_groups = Table(
    "alert_groups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("receiver", String(128), nullable=False),
    Column("group_key", String(512), nullable=False),
    Column("labels", Text, nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_notified_at", UTCDateTime(), nullable=True),
    Column("notified_state", Text, nullable=False),
    Column("thread", Text, nullable=False),
    UniqueConstraint("receiver", "group_key", name="uq_alert_groups_key"),
)

# The outbox: every side effect is written here first, then delivered by a worker.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", _BIGPK, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("stream", String(512), nullable=False),
    Column("target", String(128), nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("claimed_by", String(128), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_stream", "stream", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", _BIGPK, primary_key=True),
    Column(
        "delivery_id", BigInteger, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False
    ),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("retry_after", Float, nullable=True),
    Column("detail", Text, nullable=False),
    Index("ix_delivery_attempts_delivery", "delivery_id", "attempt"),
)

# Append-only record of every change of state: who (API key name or "system"), when, what.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _BIGPK, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("model", String(128), nullable=True),
    Column("version", String(128), nullable=True),
    Column("subject", String(256), nullable=True),
    Column("details", Text, nullable=False),
    Index("ix_audit_log_model", "model", "id"),
    Index("ix_audit_log_action", "action", "id"),
    Index("ix_audit_log_at", "at"),
)

# State of each configured retrain/deploy pipeline endpoint (the spec is in the config).
pipeline_endpoints = Table(
    "pipeline_endpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("disabled_at", UTCDateTime(), nullable=True),
    Column("disabled_reason", Text, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Per (model, policy): when a retrain was last requested; the row is locked while a
# new request is decided, so concurrent workers cannot both pass the cooldown.
retrain_cooldowns = Table(
    "retrain_cooldowns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("policy", String(128), nullable=False),
    Column("last_requested_at", UTCDateTime(), nullable=True),
    UniqueConstraint("model_id", "policy", name="uq_retrain_cooldowns_key"),
)

# One row per alert episode that asked for a retrain (trigger_key is unique), including
# those suppressed by the cooldown or a retrain already in flight.
retrain_requests = Table(
    "retrain_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(64), nullable=False, unique=True),
    Column("trigger_key", String(256), nullable=False, unique=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", Integer, nullable=True),
    Column("policy", String(128), nullable=False),
    Column("pipeline", String(128), nullable=False),
    Column("alert_id", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("window_start_us", BigInteger, nullable=True),
    Column("window_end_us", BigInteger, nullable=True),
    Column("progress", Float, nullable=True),
    Column("new_version_id", Integer, nullable=True),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    Index("ix_retrain_requests_model", "model_id", "status", "requested_at"),
)

# Promotions waiting for (or decided by) a human; pending_key is set only while pending,
# so one candidate version has at most one pending approval.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("policy", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("pending_key", String(64), nullable=True, unique=True),
    Column("trigger_key", String(256), nullable=True, unique=True),
    Column("details", Text, nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("decided_by", String(128), nullable=True),
    Column("comment", Text, nullable=False),
    Index("ix_approvals_model", "model_id", "id"),
)

# Signed webhooks received (retrain callbacks), by sender and webhook-id, while a replay
# of one could still pass the timestamp check: a repeated delivery is not applied twice.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("webhook_id", String(256), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Index("ix_webhook_receipts_received_at", "received_at"),
)

# How long a model's raw events, labels and usage stay in the hot store after their windows
# can no longer change, and its results and runs (NULL: the documented default). ``source``
# says who set it: the config (re-applied at every start) or the API.
retention_settings = Table(
    "retention_settings",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("raw_s", BigInteger, nullable=True),
    Column("results_s", BigInteger, nullable=True),
    Column("source", String(16), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# Parquet files of closed days in the archive: one per model, version, UTC day and kind
# (events joined with their labels, or usage). A row is written only after its file is
# complete, so the catalog never names a partial file; rows and sha256 let it be verified.
archive_files = Table(
    "archive_files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("day", String(10), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("written_at", UTCDateTime(), nullable=False),
    UniqueConstraint("model_id", "version_id", "day", "kind", name="uq_archive_files_day"),
)

# Halves of inferences a model server's request logger sent as CloudEvents (request or
# response), kept until the other half of the same inference arrives or the pairing timeout
# passes. ``pair_key`` identifies the inference (service, namespace, component and event id);
# ``body`` is the half already mapped to the model's features or predictions (JSON).
cloudevent_halves = Table(
    "cloudevent_halves",
    metadata,
    Column("pair_key", String(64), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("event_id", String(256), nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", String(128), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_cloudevent_halves_received_us", "received_us"),
)

# Halves dropped by the pairing timeout, counted by reason (``unpaired_request`` or
# ``unpaired_response``) in the transaction that drops them: /metrics reads the counts, so
# every replica serves the same ``modelwatch_cloudevents_dropped_total``.
cloudevent_drops = Table(
    "cloudevent_drops",
    metadata,
    Column("reason", String(32), primary_key=True),
    Column("dropped", BigInteger, nullable=False),
)

# How far each scheduled label source has been read: a SQL source's watermark (the
# largest value of its watermark column taken, as tagged JSON so that a timestamp comes
# back as a timestamp) and a file source's files taken, by path and size.
label_source_marks = Table(
    "label_source_marks",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("watermark", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

label_source_files = Table(
    "label_source_files",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("taken_us", BigInteger, nullable=False),
)

# The version each MLflow-synced alias last pointed to on both sides. A side whose
# alias differs from it has moved since; both moved is a conflict (MLflow wins).
mlflow_aliases = Table(
    "mlflow_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(16), primary_key=True),
    Column("version", String(128), nullable=False),
    Column("synced_us", BigInteger, nullable=False),
)
