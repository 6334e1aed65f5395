"""Wire timestamps: RFC 3339 strings or Unix seconds, stored as UTC microseconds."""

from __future__ import annotations

import pytest

from modelwatch.timeutil import parse_timestamp_us


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T10:00:00Z", 1_795_168_800_000_000),
        ("2026-11-20T10:00:00.000001Z", 1_795_168_800_000_001),
        ("2026-11-20T12:00:00.5+02:00", 1_795_168_800_500_000),
        ("2026-11-20T10:00:00", 1_795_168_800_000_000),  # naive: UTC
        ("1969-12-31T23:59:59.999999-00:00", None),  # before the epoch
        ("1970-01-01T00:00:00Z", 0),
        ("9999-12-31T23:59:59Z", 253_402_300_799_000_000),
        (1_795_168_800, 1_795_168_800_000_000),
        (1_795_168_800.25, 1_795_168_800_250_000),
        ("yesterday", None),
        (True, None),
        (float("nan"), None),
        (float("inf"), None),
        (1.797693134862316e302, None),  # overflows to inf in microseconds
        (-1e308, None),
        (10**400, None),
        (None, None),
    ],
)
def test_parse_timestamp_us(value: object, expected: int | None) -> None:
    assert parse_timestamp_us(value) == expected
