"""``modelwatch archive list|verify|restore``: the Parquet archive's catalog, checked and used.

The archive is the config's ``archive:`` section (``--config`` or MODELWATCH_CONFIG).
``verify`` exits 1 when a file is missing or differs from its catalog entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelwatch.errors import ModelwatchError
from modelwatch.settings import ENV_CONFIG, Settings
from modelwatch.store.engine import Store

if TYPE_CHECKING:
    from lifecycle.archive import ArchivedFile, ParquetArchive
    from modelwatch.store.registry import ModelRecord

__all__ = ["archive"]

_CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=ENV_CONFIG,
    help="The config whose archive: section names the archive.",
)
_MODEL = click.option("--model", "model_name", required=True)


def _check_day(_ctx: click.Context, _param: click.Parameter, day: str | None) -> str | None:
    from datetime import datetime

    if day is not None:
        try:
            datetime.strptime(day, "%Y-%m-%d")
        except ValueError:
            raise click.BadParameter(f"{day!r} is not a day: YYYY-MM-DD") from None
    return day


_DAY = click.option(
    "--day", callback=_check_day, help="One UTC day, YYYY-MM-DD (default: every archived day)."
)


@click.group()
def archive() -> None:
    """Closed days of raw data archived as Parquet: list, verify, restore."""


def _open(
    ctx: click.Context, config_path: str | None, model_name: str
) -> tuple[ParquetArchive, ModelRecord]:
    from lifecycle.archive import attach_archive
    from modelwatch.config import load_config
    from modelwatch.store.migrate import upgrade
    from modelwatch.store.registry import Registry

    if config_path is None:
        raise click.ClickException("no config: pass --config (or set MODELWATCH_CONFIG)")
    settings: Settings = ctx.find_root().obj
    try:
        config = load_config(config_path)
        if config.archive is None:
            raise click.ClickException(f"{config_path}: archive: no archive is configured")
        store = Store.from_settings(settings)
        upgrade(store)
        registry = Registry(store)
        opened = attach_archive(store, registry, config.archive)
        assert opened is not None
        return opened, registry.get_model(model_name)
    except ModelwatchError as exc:
        raise click.ClickException(str(exc)) from None


def _files(
    opened: ParquetArchive, model: ModelRecord, day: str | None, kind: str | None = None
) -> list[ArchivedFile]:
    files = opened.files(model, day=day, kind=kind)
    if not files:
        where = f" on {day}" if day else ""
        raise click.ClickException(f"{model.name}: nothing archived{where}")
    return files


def _line(f: ArchivedFile) -> str:
    return f"{f.day}  v{f.version_id}  {f.kind:<6}  {f.rows:>9} rows  {f.bytes:>10} B  {f.path}"


@archive.command("list")
@_MODEL
@_DAY
@_CONFIG
@click.pass_context
def archive_list(
    ctx: click.Context, model_name: str, day: str | None, config_path: str | None
) -> None:
    """The model's archived files: day, version id, kind, rows, bytes, where."""
    opened, model = _open(ctx, config_path, model_name)
    for f in _files(opened, model, day):
        click.echo(_line(f))


@archive.command("verify")
@_MODEL
@_DAY
@_CONFIG
@click.pass_context
def archive_verify(
    ctx: click.Context, model_name: str, day: str | None, config_path: str | None
) -> None:
    """Read each archived file back and check its bytes, SHA-256 and rows."""
    opened, model = _open(ctx, config_path, model_name)
    files = _files(opened, model, day)
    bad = 0
    for done, f in enumerate(files, 1):
        verdict = opened.verify(f)
        if not verdict.ok:
            bad += 1
            click.echo(f"BAD  {_line(f)}: {verdict.problem}")
        if done % 50 == 0:
            click.echo(f"  {done} of {len(files)} files read", err=True)
    click.echo(f"{len(files) - bad} of {len(files)} files verified")
    if bad:
        ctx.exit(1)


@archive.command("restore")
@_MODEL
@click.option("--day", required=True, callback=_check_day, help="The UTC day, YYYY-MM-DD.")
@_CONFIG
@click.pass_context
def archive_restore(ctx: click.Context, model_name: str, day: str, config_path: str | None) -> None:
    """Put an archived day back in the hot tables (rows already there are skipped)."""
    from lifecycle.restore import restore_day

    opened, model = _open(ctx, config_path, model_name)
    for f in _files(opened, model, day):
        try:
            rows = restore_day(opened, model, f)
        except ModelwatchError as exc:
            raise click.ClickException(f"{f.path}: {exc}") from None
        click.echo(f"{f.day} v{f.version_id} {f.kind}: {rows} of {f.rows} rows restored")
