"""The background jobs every scheduling process runs: one place, for ``serve`` and ``worker``.

Evaluation (APScheduler plans and drains runs), alerting (policies, grouping,
notification delivery), retraining (retrain requests, promotions, pipeline
webhooks), the usage scrapers, the scheduled label sources, the MLflow registry
sync, retention of the hot store and the expiry of unpaired CloudEvents halves.
Several processes may run them on one PostgreSQL store: runs, deliveries and
retrain requests are claimed or keyed in the database, so each happens once; a
label two processes pull is stored once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from alerts.service import AlertingService
from collector.cloudevents import CloudEventsReceiver
from collector.files import parse_reference
from collector.ingest import Ingestor
from collector.label_sources import LabelSourcePuller
from collector.scrape import Scraper
from evaluators.scheduler import EvaluationService
from lifecycle.archive import attach_archive
from lifecycle.retention import Retention
from modelwatch.config import Config
from modelwatch.store.engine import Store
from modelwatch.store.registry import Registry
from retrain.mlflow_sync import MlflowSync
from retrain.service import RetrainService

__all__ = ["ALERTING_INTERVAL_S", "Background", "build_background"]

ALERTING_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Background:
    evaluation: EvaluationService
    alerting: AlertingService
    retraining: RetrainService
    scraper: Scraper
    retention: Retention
    label_sources: LabelSourcePuller
    mlflow: MlflowSync | None = None

    def start(self) -> None:
        self.evaluation.start()

    def shutdown(self) -> None:
        self.evaluation.shutdown()
        self.scraper.close()
        self.label_sources.close()
        if self.mlflow is not None:
            self.mlflow.close()


def build_background(
    store: Store,
    registry: Registry,
    config: Config,
    ingestor: Ingestor,
    *,
    clock: Callable[[], float] | None = None,
) -> Background:
    """The jobs on one scheduler; ``clock`` (epoch seconds; default: the real time) drives
    evaluation and alerting, e.g. a simulated clock in tests."""
    if clock is None:  # each service's own default
        evaluation = EvaluationService(store, registry)
    else:
        evaluation = EvaluationService(store, registry, clock=clock)
    worker = evaluation.runner.worker
    alerting_clock = None if clock is None else _utc(clock)
    alerting = AlertingService(store, registry, config, worker, clock=alerting_clock)
    evaluation.add_job(alerting.cycle, ALERTING_INTERVAL_S, "alerting")
    retraining = RetrainService(store, registry, config, worker, alerting.policies)
    evaluation.add_job(retraining.cycle, ALERTING_INTERVAL_S, "retrain")
    scraper = Scraper(config.scrape, ingestor)
    for job, every_s, job_id in scraper.jobs():
        evaluation.add_job(job, every_s, job_id)
    archive = attach_archive(store, registry, config.archive)
    if clock is None:
        retention = Retention(store, registry, config.retention, archive=archive)
    else:
        retention = Retention(store, registry, config.retention, clock=clock, archive=archive)
    evaluation.add_job(retention.run_quietly, config.retention.interval, "retention")
    # CloudEvents halves whose partner never came: dropped and counted.
    pairing = CloudEventsReceiver(store, registry, config.cloudevents)
    evaluation.add_job(pairing.expire_quietly, pairing.expiry_interval_s, "cloudevents")
    label_sources = LabelSourcePuller(ingestor, config.label_sources)
    for job, every_s, job_id in label_sources.jobs():
        evaluation.add_job(job, every_s, job_id)
    mlflow = None
    if config.mlflow is not None:
        mlflow = MlflowSync(store, registry, config.mlflow, parse_reference)
        evaluation.add_job(mlflow.sync_quietly, float(config.mlflow.interval), "mlflow")
    return Background(evaluation, alerting, retraining, scraper, retention, label_sources, mlflow)


def _utc(clock: Callable[[], float]) -> Callable[[], datetime]:
    """``clock`` (epoch seconds) as aware UTC datetimes, the alerting service's clock."""
    return lambda: datetime.fromtimestamp(clock(), UTC)
