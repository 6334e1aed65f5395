"""Standard Webhooks signing and verification: our helpers, the reference library, the CLI."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.sdk.webhooks import WebhookVerificationError as SdkVerificationError
from collector.sdk.webhooks import signed_headers as sdk_signed_headers
from collector.sdk.webhooks import verify_webhook
from modelwatch.cli import cli
from modelwatch.webhooks import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookVerificationError,
    generate_secret,
    secret_key,
    sign,
    signed_headers,
    verify,
)

BODY = b'{"type":"retrain.requested","data":{"model":"churn","version":"v1"}}'
SECRET = generate_secret()
OTHER = generate_secret()


def _headers(secrets: list[str], body: bytes = BODY, ts: int | None = None) -> dict[str, str]:
    return signed_headers(secrets, "msg_1", body, ts)


# --- our signatures ------------------------------------------------------------------


def test_generated_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_") and secret != generate_secret()
    assert len(secret_key(secret)) == 32
    assert base64.b64decode(secret.removeprefix("whsec_")) == secret_key(secret)


def test_a_signed_delivery_verifies_and_returns_its_id() -> None:
    headers = _headers([SECRET])
    assert set(headers) == {HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE}
    assert headers[HEADER_SIGNATURE].startswith("v1,")
    assert abs(int(headers[HEADER_TIMESTAMP]) - time.time()) < 5
    assert verify(SECRET, headers, BODY) == "msg_1"
    # header names are case-insensitive, as web frameworks present them differently
    assert verify(SECRET, {k.title(): v for k, v in headers.items()}, BODY) == "msg_1"


def test_the_signature_is_hmac_sha256_of_id_timestamp_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(secret_key(SECRET), b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", 1_700_000_000, BODY) == "v1," + base64.b64encode(expected).decode()


def test_a_tampered_body_does_not_verify() -> None:
    headers = _headers([SECRET])
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(SECRET, headers, BODY.replace(b"v1", b"v2"))
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY + b" ")


def test_a_tampered_id_or_timestamp_does_not_verify() -> None:
    headers = _headers([SECRET])
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(SECRET, {**headers, HEADER_ID: "msg_2"}, BODY)
    moved = str(int(headers[HEADER_TIMESTAMP]) - 1)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(SECRET, {**headers, HEADER_TIMESTAMP: moved}, BODY)


def test_a_wrong_secret_does_not_verify() -> None:
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(OTHER, _headers([SECRET]), BODY)


def test_stale_and_future_timestamps_are_refused() -> None:
    now = int(time.time())
    assert verify(SECRET, _headers([SECRET], ts=now - 290), BODY) == "msg_1"
    with pytest.raises(WebhookVerificationError, match="tolerance 300 s"):
        verify(SECRET, _headers([SECRET], ts=now - 301), BODY)
    with pytest.raises(WebhookVerificationError, match="tolerance 300 s"):
        verify(SECRET, _headers([SECRET], ts=now + 301), BODY)
    # the tolerance and the clock are the caller's to choose
    old = _headers([SECRET], ts=now - 3600)
    assert verify(SECRET, old, BODY, tolerance_s=7200) == "msg_1"
    assert verify(SECRET, old, BODY, now=now - 3600) == "msg_1"


@pytest.mark.parametrize("header", [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE])
def test_missing_headers_are_named(header: str) -> None:
    headers = _headers([SECRET])
    del headers[header]
    with pytest.raises(WebhookVerificationError, match=f"missing header\\(s\\): {header}"):
        verify(SECRET, headers, BODY)
    with pytest.raises(WebhookVerificationError, match="missing header"):
        verify(SECRET, {**_headers([SECRET]), header: ""}, BODY)


def test_a_malformed_timestamp_is_refused() -> None:
    headers = {**_headers([SECRET]), HEADER_TIMESTAMP: "yesterday"}
    with pytest.raises(WebhookVerificationError, match="not Unix seconds"):
        verify(SECRET, headers, BODY)


def test_rotation_signs_with_every_secret_and_either_one_verifies() -> None:
    new, old = generate_secret(), SECRET
    headers = _headers([new, old])
    signatures = headers[HEADER_SIGNATURE].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verify(new, headers, BODY) == "msg_1"  # a receiver already on the new secret
    assert verify(old, headers, BODY) == "msg_1"  # a receiver still on the old one
    assert verify([OTHER, old], headers, BODY) == "msg_1"  # a receiver holding several
    with pytest.raises(WebhookVerificationError):
        verify(OTHER, headers, BODY)
    # and a receiver that accepts both keeps working once the sender drops the old one
    assert verify([new, old], _headers([new]), BODY) == "msg_1"


def test_malformed_secrets_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="'whsec_' followed by base64"):
        secret_key("whsec_not base64!")
    short = "whsec_" + base64.b64encode(b"x" * 8).decode()
    with pytest.raises(ValueError, match="at least 24 bytes"):
        secret_key(short)
    with pytest.raises(ValueError):
        signed_headers([short], "msg_1", BODY)


def test_the_sdk_re_exports_the_same_helpers() -> None:
    headers = sdk_signed_headers([SECRET], "msg_sdk", BODY)
    assert verify_webhook(SECRET, headers, BODY) == "msg_sdk"
    with pytest.raises(SdkVerificationError):
        verify_webhook(OTHER, headers, BODY)
    assert SdkVerificationError is WebhookVerificationError


# --- interop with the reference library (standardwebhooks on PyPI) ---------------------


def test_the_reference_library_verifies_our_signatures() -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    headers = _headers([SECRET])
    assert standardwebhooks.Webhook(SECRET).verify(BODY, headers)["data"]["model"] == "churn"
    rotated = _headers([OTHER, SECRET])
    assert standardwebhooks.Webhook(SECRET).verify(BODY, rotated)["type"] == "retrain.requested"
    assert standardwebhooks.Webhook(OTHER).verify(BODY, rotated)["type"] == "retrain.requested"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(OTHER).verify(BODY + b" ", rotated)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(BODY, headers)


def test_we_verify_the_reference_librarys_signatures() -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(SECRET).sign("msg_lib", now, BODY.decode())
    headers = {
        HEADER_ID: "msg_lib",
        HEADER_TIMESTAMP: str(int(now.timestamp())),
        HEADER_SIGNATURE: signature,
    }
    assert verify(SECRET, headers, BODY) == "msg_lib"
    assert signature == sign(SECRET, "msg_lib", int(now.timestamp()), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(OTHER, headers, BODY)


# --- modelwatch webhooks secret | sign | verify -----------------------------------------


def _sign_with_cli(body: Path, *secrets: str) -> dict[str, str]:
    flags = [f for s in secrets for f in ("--secret", s)]
    result = CliRunner().invoke(cli, ["webhooks", "sign", str(body), *flags])
    assert result.exit_code == 0, result.output
    lines = [line.split(": ", 1) for line in result.output.strip().splitlines()]
    return {name: value for name, value in lines}


def test_cli_secret_prints_a_usable_secret() -> None:
    result = CliRunner().invoke(cli, ["webhooks", "secret"])
    assert result.exit_code == 0
    secret = result.output.strip()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32


def test_cli_sign_then_verify(tmp_path: Path) -> None:
    body = tmp_path / "callback.json"
    body.write_bytes(BODY)
    headers = _sign_with_cli(body, SECRET)
    assert set(headers) == {HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE}
    assert headers[HEADER_ID].startswith("msg_")
    assert verify(SECRET, headers, BODY) == headers[HEADER_ID]  # what a server will check
    args = [
        "webhooks",
        "verify",
        str(body),
        "--secret",
        SECRET,
        "--id",
        headers[HEADER_ID],
        "--timestamp",
        headers[HEADER_TIMESTAMP],
        "--signature",
        headers[HEADER_SIGNATURE],
    ]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip() == f"verified: webhook-id {headers[HEADER_ID]}"
    # the body from stdin, the secret from the environment
    stdin = CliRunner().invoke(
        cli,
        ["webhooks", "verify", "-", *args[5:]],
        input=BODY,
        env={"MODELWATCH_WEBHOOK_SECRET": SECRET},
    )
    assert stdin.exit_code == 0, stdin.output
    body.write_bytes(BODY + b"\n")
    tampered = CliRunner().invoke(cli, args)
    assert tampered.exit_code == 1
    assert "does not verify: no signature matches" in tampered.output
    wrong = CliRunner().invoke(cli, [*args[:3], "--secret", OTHER, *args[5:]])
    assert wrong.exit_code == 1 and "does not verify" in wrong.output


def test_cli_verify_with_rotated_secrets(tmp_path: Path) -> None:
    body = tmp_path / "b.json"
    body.write_bytes(BODY)
    headers = _sign_with_cli(body, OTHER, SECRET)
    assert len(headers[HEADER_SIGNATURE].split(" ")) == 2
    for secrets in ([SECRET], [OTHER], [generate_secret(), SECRET]):
        flags = [f for s in secrets for f in ("--secret", s)]
        result = CliRunner().invoke(
            cli,
            [
                "webhooks",
                "verify",
                str(body),
                *flags,
                "--id",
                headers[HEADER_ID],
                "--timestamp",
                headers[HEADER_TIMESTAMP],
                "--signature",
                headers[HEADER_SIGNATURE],
            ],
        )
        assert result.exit_code == 0, result.output


def test_cli_verify_refuses_a_stale_delivery(tmp_path: Path) -> None:
    body = tmp_path / "b.json"
    body.write_bytes(BODY)
    stale = signed_headers([SECRET], "msg_old", BODY, int(time.time()) - 3600)
    args = [
        "webhooks",
        "verify",
        str(body),
        "--secret",
        SECRET,
        "--id",
        "msg_old",
        "--timestamp",
        stale[HEADER_TIMESTAMP],
        "--signature",
        stale[HEADER_SIGNATURE],
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "tolerance 300 s" in result.output
    assert CliRunner().invoke(cli, [*args, "--tolerance", "7200"]).exit_code == 0


def test_cli_names_the_bad_or_missing_secret(tmp_path: Path) -> None:
    body = tmp_path / "b.json"
    body.write_bytes(BODY)
    bad = CliRunner().invoke(
        cli, ["webhooks", "sign", str(body), "--secret", SECRET, "--secret", "whsec_nope!"]
    )
    assert bad.exit_code == 1
    assert "--secret #2" in bad.output and "'whsec_' followed by base64" in bad.output
    missing = CliRunner().invoke(
        cli, ["webhooks", "sign", str(body)], env={"MODELWATCH_WEBHOOK_SECRET": None}
    )
    assert missing.exit_code == 1
    assert "--secret" in missing.output and "MODELWATCH_WEBHOOK_SECRET" in missing.output
    unreadable = CliRunner().invoke(
        cli, ["webhooks", "sign", str(tmp_path / "nope.json"), "--secret", SECRET]
    )
    assert unreadable.exit_code != 0 and "nope.json" in unreadable.output
