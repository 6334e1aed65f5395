"""``modelwatch webhooks``: make secrets, sign and verify Standard Webhooks deliveries.

For pipeline authors: check that a delivery you received came from modelwatch,
or sign a callback body to send back with curl.
"""

from __future__ import annotations

import sys
import time
import uuid

import click

from modelwatch.settings import ENV_WEBHOOK_SECRET
from modelwatch.webhooks import (
    DEFAULT_TOLERANCE_S,
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookVerificationError,
    generate_secret,
    secret_key,
    signed_headers,
    verify,
)

__all__ = ["webhooks"]


def _body(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror}") from None


def _secrets(values: tuple[str, ...]) -> list[str]:
    if not values:
        raise click.ClickException("give --secret (or MODELWATCH_WEBHOOK_SECRET)")
    for i, secret in enumerate(values):
        try:
            secret_key(secret)
        except ValueError as exc:
            raise click.ClickException(f"--secret #{i + 1}: {exc}") from None
    return list(values)


@click.group()
def webhooks() -> None:
    """Secrets, signatures and verification of pipeline webhooks."""


@webhooks.command("secret")
def webhooks_secret() -> None:
    """Print a new whsec_ secret for a pipeline's ``secrets``."""
    click.echo(generate_secret())


_SECRET = click.option(
    "--secret",
    "secrets_",
    multiple=True,
    envvar=ENV_WEBHOOK_SECRET,
    help="whsec_ secret; repeat to accept several (rotation).",
)


@webhooks.command("verify")
@click.argument("body", type=click.Path(dir_okay=False, allow_dash=True))
@_SECRET
@click.option("--id", "msg_id", required=True, help=f"the {HEADER_ID} header")
@click.option("--timestamp", required=True, help=f"the {HEADER_TIMESTAMP} header")
@click.option("--signature", required=True, help=f"the {HEADER_SIGNATURE} header")
@click.option(
    "--tolerance",
    default=DEFAULT_TOLERANCE_S,
    show_default=True,
    type=click.IntRange(min=0),
    help="seconds the timestamp may be from now",
)
def webhooks_verify(
    body: str,
    secrets_: tuple[str, ...],
    msg_id: str,
    timestamp: str,
    signature: str,
    tolerance: int,
) -> None:
    """Check that BODY (a file, or - for stdin) with these headers was signed by a secret."""
    headers = {HEADER_ID: msg_id, HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature}
    try:
        verify(_secrets(secrets_), headers, _body(body), tolerance_s=tolerance)
    except WebhookVerificationError as exc:
        raise click.ClickException(f"does not verify: {exc}") from None
    click.echo(f"verified: {HEADER_ID} {msg_id}")


@webhooks.command("sign")
@click.argument("body", type=click.Path(dir_okay=False, allow_dash=True))
@_SECRET
@click.option("--id", "msg_id", default=None, help="default: a new msg_ id")
def webhooks_sign(body: str, secrets_: tuple[str, ...], msg_id: str | None) -> None:
    """Print the headers that sign BODY (e.g. a retrain callback sent with curl)."""
    headers = signed_headers(
        _secrets(secrets_), msg_id or f"msg_{uuid.uuid4().hex}", _body(body), int(time.time())
    )
    for name, value in headers.items():
        click.echo(f"{name}: {value}")
