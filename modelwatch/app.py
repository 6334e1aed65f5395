"""Process wiring: builds the FastAPI app from the store and the capability routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from alerts.conditions import needed_metrics
from alerts.routes import router as alerts_router
from collector.cloudevents import CloudEventsReceiver
from collector.cloudevents import router as cloudevents_router
from collector.files import parse_reference
from collector.ingest import Ingestor
from collector.otlp import OtlpReceiver
from collector.otlp import router as otlp_router
from collector.routes import DOC_MODELS
from collector.routes import router as ingest_router
from dashboards.app import mount_dash
from dashboards.metrics import SchedulerView, build_metrics_registry
from dashboards.metrics_cloudevents import CloudEventsCollector
from dashboards.report_routes import router as report_router
from dashboards.reports import ReportService
from dashboards.routes import METRICS_REGISTRY_STATE
from dashboards.routes import router as metrics_router
from evaluators.base import Family, metric_keys
from evaluators.routes import router as evaluation_router
from evaluators.routes import validate_monitor
from lifecycle.routes import RETENTION_STATE
from lifecycle.routes import router as lifecycle_router
from modelwatch import __version__
from modelwatch.api.audit import router as audit_router
from modelwatch.api.health import router as health_router
from modelwatch.api.registry import router as registry_router
from modelwatch.auth import KeyStore
from modelwatch.background import build_background
from modelwatch.config import Config, load_config
from modelwatch.errors import ConfigError, NotFoundError, ValidationFailed
from modelwatch.http import install_error_handlers
from modelwatch.limits import RequestLimits
from modelwatch.scheduler_state import SchedulerStateFile
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.references import ReferenceStore
from modelwatch.store.registry import Registry
from modelwatch.telemetry import Telemetry, setup_telemetry
from retrain.callback import CallbackIn, CallbackService
from retrain.routes import router as retrain_router

__all__ = ["apply_config", "check_config", "create_app", "worker_app"]


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    config: Config | None = None,
    *,
    scheduler: bool = False,
    telemetry: Telemetry | None = None,
    scheduler_state: Callable[[], SchedulerView | None] | None = None,
) -> FastAPI:
    """The API; with ``scheduler`` the evaluation scheduler runs in the same process.
    ``telemetry``, when given, is shut down (its last spans and metrics flushed) with the app;
    ``scheduler_state`` is where ``/metrics`` reads the scheduler's state when another
    process schedules (default: this process's scheduler)."""
    settings = settings or Settings.from_env()
    store = store or Store.from_settings(settings)
    config = config or Config.model_validate({})
    registry = Registry(store)
    reports = ReportService(store, registry, settings.report_dir, settings.report_max_rows)
    ingestor = Ingestor(store, registry, settings.max_batch_events)
    background = build_background(store, registry, config, ingestor)
    evaluation, alerting = background.evaluation, background.alerting

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if scheduler:
            evaluation.start()
        try:
            yield
        finally:
            background.shutdown()
            reports.shutdown()
            if telemetry is not None:
                telemetry.shutdown()

    app = FastAPI(
        title="modelwatch",
        version=__version__,
        description="Monitoring and continuous evaluation for ML models in production.",
        lifespan=lifespan,
    )
    app.state.evaluation = evaluation
    app.state.alerting = alerting
    app.state.retrain = background.retraining
    mlflow_reference = None if background.mlflow is None else background.mlflow.reference_of
    app.state.retrain_callbacks = CallbackService(
        store, registry, parse_reference, mlflow_reference=mlflow_reference
    )
    app.state.config = config
    app.state.metric_keys = metric_keys
    app.state.settings = settings
    app.state.store = store
    app.state.registry = registry
    app.state.keys = KeyStore(store)
    app.state.ingestor = ingestor
    app.state.otlp = OtlpReceiver(config.otlp, ingestor)
    app.state.cloudevents = CloudEventsReceiver(
        store, registry, config.cloudevents, max_instances=settings.max_batch_events
    )
    app.state.scraper = background.scraper
    app.state.references = ReferenceStore(store)
    app.state.reports = reports
    setattr(app.state, RETENTION_STATE, background.retention)
    apply_config(config, store, registry)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(registry_router)
    app.include_router(ingest_router)
    app.include_router(otlp_router)
    app.include_router(cloudevents_router)
    app.include_router(evaluation_router)
    app.include_router(alerts_router)
    app.include_router(retrain_router)
    app.include_router(audit_router)
    app.include_router(report_router)
    app.include_router(lifecycle_router)
    families = {key: family.value for family in Family for key in metric_keys(family)}
    mount_dash(
        app, store, app.state.keys, policies=lambda: list(config.policies), families=families
    )
    metrics_registry = build_metrics_registry(
        store,
        families=families,
        top_features=settings.metrics_top_features,
        inline_budget_s=settings.metrics_inline_budget_s,
        scheduler=scheduler_state or (lambda: evaluation.state),
    )
    metrics_registry.register(CloudEventsCollector(store))
    setattr(app.state, METRICS_REGISTRY_STATE, metrics_registry)
    app.include_router(metrics_router)
    _document_raw_bodies(app)
    app.add_middleware(RequestLimits, api=app, settings=settings)
    return app


def worker_app() -> FastAPI:
    """One API process of ``modelwatch serve --workers N`` (uvicorn's app factory).

    Settings and the config file come from the environment the parent set; the parent
    has migrated the store and checked the config, and runs the scheduler itself.
    """
    settings = Settings.from_env()
    config = None if settings.config_path is None else load_config(settings.config_path)
    store = Store.from_settings(settings)
    path = settings.scheduler_state_path
    state = None if path is None else SchedulerStateFile(Path(path))
    return create_app(settings, store, config, telemetry=setup_telemetry(), scheduler_state=state)


def check_config(config: Config, file: str) -> None:
    """Checks the core cannot make itself: metric keys exist in the evaluators' registry."""
    errors = []
    for i, monitor in enumerate(config.monitors):
        try:
            validate_monitor(monitor)
        except ValidationFailed as exc:
            errors += [f"{file}: monitors[{i}].{e.path()}: {e.msg}" for e in exc.errors]
    known = set(metric_keys())
    for i, policy in enumerate(config.policies):
        for metric in sorted(needed_metrics(policy.condition) - known):
            errors.append(
                f"{file}: policies[{i}].condition: unknown metric {metric!r}; "
                f"known metrics: {', '.join(sorted(known))}"
            )
    if errors:
        raise ConfigError("\n".join(errors))


def apply_config(config: Config, store: Store, registry: Registry) -> None:
    """Register the config's models and create or update its monitors."""
    for spec in config.models:
        registry.ensure_model(spec, "config")
    monitors = MonitorStore(store, registry)
    for monitor in config.monitors:
        monitors.upsert(monitor, "config", "config")
    _check_retention(config, registry)


def _check_retention(config: Config, registry: Registry) -> None:
    """The config's per-model retention names registered models."""
    for name in config.retention.models:
        try:
            registry.get_model(name)
        except NotFoundError:
            raise ConfigError(
                f"retention.models.{name}: no model named {name!r} is registered"
            ) from None


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the schemas of raw-body routes (parsed by orjson) to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        documented: list[type[BaseModel]] = [*DOC_MODELS, CallbackIn]
        for model in documented:
            doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(doc.pop("$defs", {}))
            components[model.__name__] = doc
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
