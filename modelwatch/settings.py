"""Process settings. Every environment variable modelwatch reads is a constant here.

| variable | meaning | default |
|---|---|---|
| ``MODELWATCH_DATABASE_URL`` | SQLAlchemy URL of the store | ``sqlite:///modelwatch.db`` |
| ``MODELWATCH_CONFIG`` | path of the YAML config file | none |
| ``MODELWATCH_MAX_BODY_BYTES`` | largest ingest request body accepted (413 beyond) | 16 MiB |
| ``MODELWATCH_MAX_REFERENCE_BYTES`` | largest reference upload accepted (413 beyond) | 512 MiB |
| ``MODELWATCH_MAX_BATCH_EVENTS`` | most events, labels or samples in one request | 100000 |
| ``MODELWATCH_LOG_LEVEL`` | Python logging level name | ``INFO`` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ENV_CONFIG",
    "ENV_DATABASE_URL",
    "ENV_LOG_LEVEL",
    "ENV_MAX_BATCH_EVENTS",
    "ENV_MAX_BODY_BYTES",
    "ENV_MAX_REFERENCE_BYTES",
    "Settings",
]

ENV_DATABASE_URL = "MODELWATCH_DATABASE_URL"
ENV_CONFIG = "MODELWATCH_CONFIG"
ENV_MAX_BODY_BYTES = "MODELWATCH_MAX_BODY_BYTES"
ENV_MAX_REFERENCE_BYTES = "MODELWATCH_MAX_REFERENCE_BYTES"
ENV_MAX_BATCH_EVENTS = "MODELWATCH_MAX_BATCH_EVENTS"
ENV_LOG_LEVEL = "MODELWATCH_LOG_LEVEL"

DEFAULT_DATABASE_URL = "sqlite:///modelwatch.db"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"environment variable {name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    config_path: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_reference_bytes: int = 512 * 1024 * 1024
    max_batch_events: int = 100_000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL,
            config_path=env.get(ENV_CONFIG) or None,
            max_body_bytes=_int(env, ENV_MAX_BODY_BYTES, cls.max_body_bytes),
            max_reference_bytes=_int(env, ENV_MAX_REFERENCE_BYTES, cls.max_reference_bytes),
            max_batch_events=_int(env, ENV_MAX_BATCH_EVENTS, cls.max_batch_events),
            log_level=env.get(ENV_LOG_LEVEL) or "INFO",
        )
