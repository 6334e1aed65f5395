"""``modelwatch retention run``: show or apply retention of the hot store, with progress."""

from __future__ import annotations

import click

from modelwatch.errors import ModelwatchError
from modelwatch.settings import ENV_CONFIG, Settings
from modelwatch.store.engine import Store
from modelwatch.timeutil import us_to_datetime

__all__ = ["retention"]


@click.group()
def retention() -> None:
    """How long raw events, labels and usage stay in the hot store."""


@retention.command("run")
@click.option("--model", "model_name", help="Only this model (default: every model).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=ENV_CONFIG)
@click.pass_context
def retention_run(
    ctx: click.Context, model_name: str | None, dry_run: bool, config_path: str | None
) -> None:
    """Delete (or with --dry-run count) each model's rows past its retention."""
    from lifecycle.archive import attach_archive
    from lifecycle.retention import Retention
    from modelwatch.config import load_config
    from modelwatch.retention import RetentionSpec
    from modelwatch.store.migrate import upgrade
    from modelwatch.store.registry import Registry

    settings: Settings = ctx.find_root().obj
    try:
        config = load_config(config_path) if config_path else None
        spec = RetentionSpec.model_validate({}) if config is None else config.retention
        store = Store.from_settings(settings)
        upgrade(store)
        registry = Registry(store)
        archive = attach_archive(store, registry, None if config is None else config.archive)
        service = Retention(store, registry, spec, archive=archive)
        plans = service.plan(model_name)
    except ModelwatchError as exc:
        raise click.ClickException(str(exc)) from None
    for cutoffs in plans:
        before = us_to_datetime(cutoffs.raw_before_us)
        line = f"{cutoffs.model.name} ({cutoffs.source} retention): raw data before {before:%F}"
        if cutoffs.results_before_us is not None:
            line += f", results before {us_to_datetime(cutoffs.results_before_us):%F}"
        click.echo(line)
        name = cutoffs.model.name

        def progress(model: str, kind: str, rows: int) -> None:
            verb = "archived" if kind == "archived" else "deleted"
            click.echo(f"  {model}: {kind}: {rows} rows {verb} so far", err=True)

        try:
            (report,) = service.run(name, dry_run=dry_run, progress=progress)
        except ModelwatchError as exc:
            raise click.ClickException(f"{name}: {exc}") from None
        verb = "would delete" if dry_run else "deleted"
        counts = ", ".join(f"{n} {kind}" for kind, n in report.rows.items())
        click.echo(f"  {verb}: {counts} ({report.seconds:.1f} s)")
