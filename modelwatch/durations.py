"""Durations as written in config and APIs: ``30s``, ``15m``, ``1h``, ``1d``, ``2w``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import PlainSerializer, ValidatorFunctionWrapHandler, WrapValidator

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str | int | float) -> int:
    """Seconds in a duration; plain numbers are seconds."""
    if isinstance(text, bool):
        raise ValueError("a duration is a string like '15m', '1h' or '7d'")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return int(text)
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like '30s', '15m', '1h', '1d' or '2w'")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class _Written(int):
    """Seconds that remember how they were written, so ``7d`` is shown as ``7d``, not ``1w``."""

    text: str = ""


def _validate(value: object, check: ValidatorFunctionWrapHandler) -> int:
    if not isinstance(value, (str, int, float)):
        raise ValueError("a duration is a string like '15m', '1h' or '7d'")
    written = _Written(check(parse_duration(value)))  # the field's bounds (ge=...) apply
    if isinstance(value, str):
        written.text = value.strip()
    return written


def _show(seconds: int) -> str:
    return getattr(seconds, "text", "") or format_duration(seconds)


Duration = Annotated[
    int,
    WrapValidator(_validate),
    PlainSerializer(_show, return_type=str),
]
"""Seconds, written and shown as ``15m``/``1h``/``7d``."""
