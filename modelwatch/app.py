"""Process wiring: builds the FastAPI app from the store and the capability routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from alerts.conditions import needed_metrics
from alerts.routes import router as alerts_router
from alerts.service import AlertingService
from collector.ingest import Ingestor
from collector.routes import DOC_MODELS
from collector.routes import router as ingest_router
from evaluators.base import metric_keys
from evaluators.routes import router as evaluation_router
from evaluators.routes import validate_monitor
from evaluators.scheduler import EvaluationService
from modelwatch import __version__
from modelwatch.api.health import router as health_router
from modelwatch.api.registry import router as registry_router
from modelwatch.auth import KeyStore
from modelwatch.config import Config
from modelwatch.errors import ConfigError, ValidationFailed
from modelwatch.http import install_error_handlers
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.monitors import MonitorStore
from modelwatch.store.references import ReferenceStore
from modelwatch.store.registry import Registry

__all__ = ["apply_config", "check_config", "create_app"]

ALERTING_INTERVAL_S = 5.0


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    config: Config | None = None,
    *,
    scheduler: bool = False,
) -> FastAPI:
    """The API; with ``scheduler`` the evaluation scheduler runs in the same process."""
    settings = settings or Settings.from_env()
    store = store or Store(settings.database_url)
    config = config or Config.model_validate({})
    registry = Registry(store)
    evaluation = EvaluationService(store, registry)
    alerting = AlertingService(store, registry, config, evaluation.runner.worker)
    evaluation.add_job(alerting.cycle, ALERTING_INTERVAL_S, "alerting")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if scheduler:
            evaluation.start()
        try:
            yield
        finally:
            evaluation.shutdown()

    app = FastAPI(
        title="modelwatch",
        version=__version__,
        description="Monitoring and continuous evaluation for ML models in production.",
        lifespan=lifespan,
    )
    app.state.evaluation = evaluation
    app.state.alerting = alerting
    app.state.config = config
    app.state.metric_keys = metric_keys
    app.state.settings = settings
    app.state.store = store
    app.state.registry = registry
    app.state.keys = KeyStore(store)
    app.state.ingestor = Ingestor(store, registry, settings.max_batch_events)
    app.state.references = ReferenceStore(store)
    apply_config(config, store, registry)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(registry_router)
    app.include_router(ingest_router)
    app.include_router(evaluation_router)
    app.include_router(alerts_router)
    _document_raw_bodies(app)
    return app


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


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the schemas of raw-body routes (parsed by orjson) to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in DOC_MODELS:
            doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(doc.pop("$defs", {}))
            components[model.__name__] = doc
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
