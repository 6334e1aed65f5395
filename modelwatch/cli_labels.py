"""``modelwatch labels pull``: pull the config's label sources now, with progress."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelwatch.errors import ModelwatchError
from modelwatch.settings import ENV_CONFIG, Settings
from modelwatch.store.engine import Store

if TYPE_CHECKING:
    from collector.label_sources import LabelSourcePuller

__all__ = ["labels"]


@click.group()
def labels() -> None:
    """Ground truth from the config's scheduled label sources."""


@labels.command("pull")
@click.option("--source", "source_name", help="Only this source (default: every source).")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=ENV_CONFIG, required=True
)
@click.pass_context
def labels_pull(ctx: click.Context, source_name: str | None, config_path: str) -> None:
    """Take what is new in each label source, as the scheduler does, and say what was
    stored; a bad row is named with its row number and field and left out."""
    from collector.ingest import Ingestor
    from collector.label_sources import LabelSourcePuller
    from modelwatch.config import load_config
    from modelwatch.store.migrate import upgrade
    from modelwatch.store.registry import Registry

    settings: Settings = ctx.find_root().obj
    try:
        config = load_config(config_path)
    except ModelwatchError as exc:
        raise click.ClickException(str(exc)) from None
    names = [s.name for s in config.label_sources]
    if source_name is not None and source_name not in names:
        raise click.ClickException(
            f"{config_path}: label_sources: no source named {source_name!r} (known: {names})"
        )
    store = Store.from_settings(settings)
    upgrade(store)
    puller = LabelSourcePuller(Ingestor(store, Registry(store)), config.label_sources)
    failed = False
    try:
        for name in [source_name] if source_name else names:
            failed = not _pull(puller, name) or failed
    finally:
        puller.close()
    if failed:
        raise SystemExit(1)


def _pull(puller: LabelSourcePuller, name: str) -> bool:
    read = [0]

    def progress(rows: int) -> None:
        read[0] += rows
        click.echo(f"  {name}: {read[0]} rows read so far", err=True)

    try:
        result = puller.pull(name, progress)
    except Exception as exc:  # the source's own error (connection, SQL, file): say it, go on
        click.echo(f"{name}: failed: {exc}", err=True)
        return False
    for error in result.errors:
        click.echo(f"  {name}: rejected {error}", err=True)
    click.echo(
        f"{name}: {result.read} rows read, {result.stored} stored, {result.duplicates} "
        f"duplicates, {result.updated} updated, {result.rejected} rejected"
        + (f", {result.files} files taken" if result.files else "")
    )
    return True
