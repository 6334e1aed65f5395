"""``modelwatch mlflow sync``: follow MLflow's model registry now, as the scheduler does."""

from __future__ import annotations

import click

from modelwatch.errors import ModelwatchError
from modelwatch.settings import ENV_CONFIG, Settings
from modelwatch.store.engine import Store

__all__ = ["mlflow"]


@click.group()
def mlflow() -> None:
    """MLflow's model registry: versions and aliases, both ways."""


@mlflow.command("sync")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=ENV_CONFIG, required=True
)
@click.pass_context
def mlflow_sync(ctx: click.Context, config_path: str) -> None:
    """Register new MLflow versions (with their references) and move aliases both ways;
    prints what changed, and exits 1 if a model could not be synced."""
    from collector.files import parse_reference
    from modelwatch.config import load_config
    from modelwatch.store.migrate import upgrade
    from modelwatch.store.registry import Registry
    from retrain.mlflow_sync import MlflowSync

    settings: Settings = ctx.find_root().obj
    try:
        config = load_config(config_path)
    except ModelwatchError as exc:
        raise click.ClickException(str(exc)) from None
    if config.mlflow is None:
        raise click.ClickException(f"{config_path}: mlflow: is not configured")
    store = Store.from_settings(settings)
    upgrade(store)
    sync = MlflowSync(store, Registry(store), config.mlflow, parse_reference)
    try:
        results = sync.sync()
    finally:
        sync.close()
    for r in results:
        click.echo(
            f"{r.model}: {len(r.versions_added)} versions added {r.versions_added}, "
            f"{len(r.references)} references, aliases from MLflow {r.aliases_pulled}, "
            f"to MLflow {r.aliases_pushed}, conflicts {r.conflicts}"
        )
        for problem in r.problems:
            click.echo(f"  {r.model}: {problem}", err=True)
    if any(r.problems for r in results):
        raise SystemExit(1)
