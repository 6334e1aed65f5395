"""``modelwatch keys``: create, list and revoke API keys (only their hashes are stored)."""

from __future__ import annotations

import click

from modelwatch.domain import Scope
from modelwatch.errors import ModelwatchError
from modelwatch.store.engine import Store

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--name", required=True, help="A name to recognise the key by (shown in audit logs).")
@click.option("--scope", required=True, type=click.Choice([s.value for s in Scope]))
@click.pass_context
def keys_create(ctx: click.Context, name: str, scope: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    from modelwatch.auth import KeyStore
    from modelwatch.store.migrate import upgrade

    store = Store.from_settings(ctx.find_root().obj)
    upgrade(store)
    try:
        token = KeyStore(store).create(name, Scope(scope), actor="cli")
    except ModelwatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(f"created {scope} key {name!r}; store it now, it is not shown again", err=True)


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """List keys (names, scopes, state; never secrets)."""
    from modelwatch.auth import KeyStore

    for key in KeyStore(Store.from_settings(ctx.find_root().obj)).list():
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        click.echo(f"{key.name}\t{key.scope.value}\tmw_{key.prefix}_…\t{state}")


@keys.command("revoke")
@click.argument("name")
@click.pass_context
def keys_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a key by name."""
    from modelwatch.auth import KeyStore

    try:
        KeyStore(Store.from_settings(ctx.find_root().obj)).revoke(name, actor="cli")
    except ModelwatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {name!r}")
