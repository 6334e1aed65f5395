"""The ``modelwatch`` command: serve, db, keys, import, check-config, demo."""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelwatch import __version__
from modelwatch.cli_archive import archive
from modelwatch.cli_keys import keys
from modelwatch.cli_labels import labels
from modelwatch.cli_mlflow import mlflow
from modelwatch.cli_retention import retention
from modelwatch.cli_webhooks import webhooks
from modelwatch.errors import ModelwatchError
from modelwatch.settings import (
    ENV_API_KEY,
    ENV_CONFIG,
    ENV_SCHEDULER_STATE,
    ENV_WORKERS,
    Settings,
)
from modelwatch.store.engine import Store
from modelwatch.timeutil import us_to_datetime

if TYPE_CHECKING:
    from evaluators.scheduler import EvaluationService
    from modelwatch.background import Background
    from modelwatch.config import Config
    from modelwatch.telemetry import Telemetry

__all__ = ["main"]


def _store(ctx: click.Context) -> Store:
    settings: Settings = ctx.obj
    return Store.from_settings(settings)


def _telemetry() -> Telemetry:
    """OpenTelemetry for the long-running commands; the short ones start without loading it."""
    from modelwatch.telemetry import setup_telemetry

    return setup_telemetry()


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group()
@click.version_option(__version__, prog_name="modelwatch")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """modelwatch: monitoring and continuous evaluation for ML models in production."""
    try:
        ctx.obj = Settings.from_env()
    except ValueError as exc:
        _fail(str(exc))
    logging.basicConfig(
        level=ctx.obj.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Per-request and per-job INFO lines would drown the demo's narration and our own logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load(config_path: str | None) -> Config | None:
    if config_path is None:
        return None
    from modelwatch.app import check_config
    from modelwatch.config import load_config

    try:
        config = load_config(config_path)
        check_config(config, config_path)
    except ModelwatchError as exc:
        _fail(str(exc))
    return config


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=ENV_CONFIG)
@click.option("--insecure", is_flag=True, help="Allow binding beyond loopback with no API keys.")
@click.option(
    "--migrate/--no-migrate", default=True, show_default=True, help="Upgrade the store first."
)
@click.option(
    "--scheduler/--no-scheduler", default=True, show_default=True, help="Evaluate in this process."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    envvar=ENV_WORKERS,
    help="API processes sharing the port; the scheduler runs once, in the parent.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    config_path: str | None,
    insecure: bool,
    migrate: bool,
    scheduler: bool,
    workers: int,
) -> None:
    """Run the API and the evaluation scheduler."""
    import uvicorn

    from modelwatch.app import create_app
    from modelwatch.auth import KeyStore
    from modelwatch.serving import UVICORN_LIMITS
    from modelwatch.store.migrate import schema_problem, upgrade

    config = _load(config_path)
    store = _store(ctx)
    try:
        if migrate:
            upgrade(store)
        elif (problem := schema_problem(store)) is not None:
            _fail(problem)
        if not is_loopback(host) and not insecure and not KeyStore(store).any_active():
            _fail(
                f"refusing to listen on {host}: no API keys exist, so anyone could write and read. "
                "Create one with 'modelwatch keys create --name NAME --scope admin', "
                "or pass --insecure."
            )
        if workers > 1:
            _serve_processes(ctx.obj, store, config, config_path, host, port, workers, scheduler)
            return
        app = create_app(ctx.obj, store, config, scheduler=scheduler)
    except ModelwatchError as exc:
        _fail(str(exc))
    telemetry = _telemetry()
    try:
        uvicorn.run(
            app, host=host, port=port, log_level=ctx.obj.log_level.lower(), **UVICORN_LIMITS
        )
    finally:
        telemetry.shutdown()


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=ENV_CONFIG)
@click.pass_context
def worker(ctx: click.Context, config_path: str | None) -> None:
    """Run only the scheduler and background work (no API); stops on SIGINT/SIGTERM."""
    import signal
    import threading

    from modelwatch.store.migrate import schema_problem

    config = _load(config_path)
    store = _store(ctx)
    if (problem := schema_problem(store)) is not None:
        _fail(problem)
    background = _background(ctx.obj, store, config)
    service = background.evaluation
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    telemetry = _telemetry()
    background.start()
    click.echo(f"worker {service.runner.worker} evaluating {len(service.state.monitors)} monitors")
    stop.wait()
    background.shutdown()
    telemetry.shutdown()
    click.echo(f"worker stopped: {service.state.evaluated} runs evaluated")


def _background(settings: Settings, store: Store, config: Config | None) -> Background:
    """Evaluation, alerting, retraining and scrapers, for the one process that runs them:
    API replicas started with --no-scheduler, and serve's worker processes, do none of it."""
    from collector.ingest import Ingestor
    from modelwatch.app import apply_config
    from modelwatch.background import build_background
    from modelwatch.config import Config
    from modelwatch.store.registry import Registry

    config = config or Config.model_validate({})
    registry = Registry(store)
    apply_config(config, store, registry)
    ingestor = Ingestor(store, registry, settings.max_batch_events)
    return build_background(store, registry, config, ingestor)


def _serve_processes(
    settings: Settings,
    store: Store,
    config: Config | None,
    config_path: str | None,
    host: str,
    port: int,
    workers: int,
    scheduler: bool,
) -> None:
    """uvicorn's worker processes serve the API; this one supervises them and schedules."""
    import tempfile

    import uvicorn

    from modelwatch.scheduler_state import PUBLISH_INTERVAL_S, publish_state
    from modelwatch.serving import UVICORN_LIMITS

    # The workers are spawned, not forked: they read all they need from the environment.
    if config_path is not None:
        os.environ[ENV_CONFIG] = str(Path(config_path).resolve())
    background = _background(settings, store, config) if scheduler else None
    telemetry = _telemetry()
    os.environ.pop(ENV_SCHEDULER_STATE, None)  # set below only if this process schedules
    with tempfile.TemporaryDirectory(prefix="modelwatch-serve-") as tmp:
        if background is not None:
            state, path = background.evaluation.state, Path(tmp) / "scheduler.json"
            os.environ[ENV_SCHEDULER_STATE] = str(path)
            background.evaluation.add_job(
                lambda: publish_state(state, path), PUBLISH_INTERVAL_S, "publish-state"
            )
            background.start()
            publish_state(state, path)
        try:
            uvicorn.run(
                "modelwatch.app:worker_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=settings.log_level.lower(),
                **UVICORN_LIMITS,
            )
        finally:
            if background is not None:
                background.shutdown()
            telemetry.shutdown()


_SINCE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
WAIT_POLL_S = 1.0  # how often evaluate looks at runs other workers hold


@cli.command()
@click.option("--model", "model_name", required=True)
@click.option("--monitor", "monitor_name", help="Only this monitor (default: all of the model's).")
@click.option("--since", type=click.DateTime(_SINCE_FORMATS), help="UTC; default: the backfill.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=ENV_CONFIG,
    help="With an archive: section, archived days are read from the archive.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    model_name: str,
    monitor_name: str | None,
    since: datetime | None,
    config_path: str | None,
) -> None:
    """Plan and run evaluations now, with the scheduler's own code."""
    from evaluators.scheduler import EvaluationService
    from modelwatch.store.migrate import upgrade
    from modelwatch.store.registry import Registry

    store = _store(ctx)
    upgrade(store)
    config = _load(config_path)
    if config is not None and config.archive is not None:
        from lifecycle.archive import attach_archive

        attach_archive(store, Registry(store), config.archive)
    service = EvaluationService(store, Registry(store))
    try:
        model = service.registry.get_model(model_name)
        monitors = [m for m in service.monitors.list(model.id) if monitor_name in (None, m.name)]
    except ModelwatchError as exc:
        _fail(str(exc))
    if not monitors:
        _fail(
            f"no monitor for model {model_name!r}; declare one in the config or POST /v1/monitors"
        )
    since_us = None if since is None else int(since.replace(tzinfo=UTC).timestamp() * 1_000_000)
    planned = sum(service.plan(m, since_us) for m in monitors)
    ids = [m.id for m in monitors]
    pending = sum(service.runs.counts(i).get("pending", 0) for i in ids)
    click.echo(f"{planned} runs planned, {pending} pending for {len(monitors)} monitors")
    _evaluate_all(service, ids, pending)
    counts: dict[str, int] = {}
    for i in ids:
        for status, n in service.runs.counts(i).items():
            counts[status] = counts.get(status, 0) + n
    click.echo("runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if counts.get("failed"):
        _fail(f"{counts['failed']} runs failed; see GET /v1/monitors/{{id}}/runs?status=failed")


def _evaluate_all(service: EvaluationService, ids: list[int], pending: int) -> None:
    """Evaluate every claimable run, then wait for the runs other workers (a running
    ``serve``) hold, and report those with their outcome: the command ends when the
    whole plan has an outcome. A holder that dies loses its lease, and its run comes
    back here to be claimed."""
    held = {r.id: r for r in service.runs.running(ids)}
    with click.progressbar(length=pending, label="evaluating", show_pos=True) as bar:
        while True:
            while service.run_one(ids) is not None:
                bar.update(1)
            running = service.runs.running(ids)
            held.update((r.id, r) for r in running)
            if not running:
                break
            time.sleep(WAIT_POLL_S)
    for run_id in sorted(held):
        run = service.runs.get(run_id)
        start = us_to_datetime(run.window_start_us)
        window = start.isoformat() if start else "?"
        click.echo(
            f"run {run.id} (window {window}{' ' + run.segment_key if run.segment_key else ''}), "
            f"held by {held[run_id].claimed_by}: {run.status}"
            + (f" by {run.claimed_by}" if run.claimed_by != held[run_id].claimed_by else "")
        )


@cli.group()
def db() -> None:
    """Manage the store's schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations."""
    from modelwatch.store.migrate import current_revision, upgrade

    store = _store(ctx.parent)  # type: ignore[arg-type]
    upgrade(store)
    click.echo(f"store at revision {current_revision(store)} ({store.dialect})")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the store's schema revision."""
    from modelwatch.store.migrate import current_revision, head_revision

    store = _store(ctx.parent)  # type: ignore[arg-type]
    click.echo(f"current: {current_revision(store)}  head: {head_revision()}")


cli.add_command(keys)
cli.add_command(webhooks)
cli.add_command(retention)
cli.add_command(archive)
cli.add_command(labels)
cli.add_command(mlflow)


@cli.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
def check_config(file: str) -> None:
    """Validate a config file; errors name the file, the key and the bad value."""
    config = _load(file)
    assert config is not None
    click.echo(f"{file}: ok ({len(config.models)} models, {len(config.monitors)} monitors)")


@cli.group("import")
def import_() -> None:
    """Import predictions, labels or usage from Parquet or CSV files."""


def _import(
    ctx: click.Context, kind: str, file: str, model: str, version: str | None, batch_size: int
) -> None:
    from collector.importer import import_file
    from modelwatch.store.migrate import upgrade

    store = _store(ctx.parent)  # type: ignore[arg-type]
    upgrade(store)
    path = Path(file)
    try:
        with click.progressbar(length=1, label=f"importing {path.name}", show_pos=True) as bar:
            result = import_file(store, kind, path, model, version, batch_size, bar)
    except ModelwatchError as exc:
        _fail(f"{file}: {exc}")
    click.echo(
        f"{file}: {result.received} rows, {result.accepted} stored, "
        f"{result.duplicates} duplicates, {result.updated} updated"
    )


_file_arg = click.argument("file", type=click.Path(exists=True, dir_okay=False))
_batch_opt = click.option(
    "--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000)
)


@import_.command("predictions")
@_file_arg
@click.option("--model", required=True)
@click.option("--version", required=True)
@_batch_opt
@click.pass_context
def import_predictions(
    ctx: click.Context, file: str, model: str, version: str, batch_size: int
) -> None:
    """Prediction events: request_id, timestamp, features, prediction, score(s), segments."""
    _import(ctx, "predictions", file, model, version, batch_size)


@import_.command("labels")
@_file_arg
@click.option("--model", required=True)
@_batch_opt
@click.pass_context
def import_labels(ctx: click.Context, file: str, model: str, batch_size: int) -> None:
    """Ground truth: request_id, label (or the schema's target column), timestamp."""
    _import(ctx, "labels", file, model, None, batch_size)


@import_.command("usage")
@_file_arg
@click.option("--model", required=True)
@click.option("--version", required=True)
@_batch_opt
@click.pass_context
def import_usage(ctx: click.Context, file: str, model: str, version: str, batch_size: int) -> None:
    """Resource usage: timestamp, latency_ms, cpu_seconds, memory_mb, gpu_seconds, cost."""
    _import(ctx, "usage", file, model, version, batch_size)


@cli.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--history", default="1h", show_default=True, help="Past traffic replayed at start.")
@click.option(
    "--speed",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1e6),
    help="Replay the history this many times faster than real time (0: as fast as possible).",
)
@click.option("--seed", default=7, show_default=True, type=int)
@click.option(
    "--rate", default=2.0, show_default=True, type=click.FloatRange(0.01, 1000), help="Requests/s."
)
@click.option(
    "--duration", default=0.0, type=float, help="Seconds of live traffic (0: until Ctrl-C)."
)
@click.option(
    "--drift-at",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds into the live traffic when a drift hits the fraud model's traffic.",
)
@click.option(
    "--drift-for",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds the drift lasts (0: no drift).",
)
@click.option(
    "--label-delay",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds after its prediction a label arrives.",
)
@click.option(
    "--api-url",
    default=None,
    help="Simulate traffic for the modelwatch at this URL instead of starting one "
    "(registers models, monitors and policies through its API; no retrain loop).",
)
@click.option("--api-key", default=None, envvar=ENV_API_KEY, help="With --api-url.")
@click.pass_context
def demo(
    ctx: click.Context,
    port: int,
    history: str,
    speed: float,
    seed: int,
    rate: float,
    duration: float,
    drift_at: float,
    drift_for: float,
    label_delay: float,
    api_url: str | None,
    api_key: str | None,
) -> None:
    """The service on the embedded store plus simulated models sending live traffic.

    A drift hits the fraud model; its alert goes to a local Slack-compatible sink
    printed on the console (and to Slack too when SLACK_BOT_TOKEN and
    MODELWATCH_DEMO_SLACK_CHANNEL are set), a signed retrain webhook goes to a local
    demo pipeline, which calls back with a new version; modelwatch compares it with
    the champion and promotes it when it wins.
    """
    # The narration is the demo's output: no migration chatter, no skipped-tick warnings.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    from demo.run import DemoFailed, DemoOptions, run_local, run_remote
    from modelwatch.durations import parse_duration

    try:
        history_s = parse_duration(history)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--history") from None
    options = DemoOptions(
        port=port,
        history_s=history_s,
        speed=speed,
        seed=seed,
        rate=rate,
        duration=duration,
        drift_at=drift_at,
        drift_for=drift_for,
        label_delay=label_delay,
        api_url=api_url,
        api_key=api_key,
    )
    say = click.echo
    try:
        run = run_remote if api_url else lambda o, say: run_local(o, ctx.obj, _store(ctx), say)
        s = run(options, say)
    except DemoFailed as exc:
        _fail(str(exc))
        return
    say(f"done: {s.predictions} predictions, {s.labels} labels, {s.usage} usage samples sent")


def main() -> None:
    cli(prog_name="modelwatch")


if __name__ == "__main__":  # pragma: no cover
    main()
