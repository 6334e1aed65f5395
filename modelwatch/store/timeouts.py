"""How long the service waits for its store, and the driver options that enforce it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelwatch.settings import Settings

__all__ = ["CLIENT_GRACE_S", "Timeouts"]

# The server cancels a statement at statement_timeout; the client cuts a silent
# connection this much later, so a server that answers always answers first.
CLIENT_GRACE_S = 2.0


@dataclass(frozen=True)
class Timeouts:
    """Bounds on every wait for the store (seconds); the defaults are the settings'."""

    connect_s: float = 5.0
    pool_s: float = 5.0
    statement_s: float = 30.0
    read_s: float = 600.0
    lock_s: float = 5.0
    dead_peer_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            connect_s=settings.db_connect_timeout_s,
            pool_s=settings.db_pool_timeout_s,
            statement_s=settings.db_statement_timeout_s,
            read_s=settings.db_read_timeout_s,
            lock_s=settings.db_lock_timeout_s,
            dead_peer_s=settings.db_dead_peer_s,
        )

    @property
    def sqlite_write_wait_s(self) -> float:
        """How long a SQLite writer may queue for the one write lock: the writers ahead of
        it are working, not stuck, so a queue may take longer than one lock wait."""
        return max(self.lock_s, self.statement_s)

    @property
    def client_deadline_s(self) -> float:
        """How long one store transaction may go on before the client cuts its connection."""
        return self.statement_s + CLIENT_GRACE_S

    def libpq_params(self, statement_s: float, url_query: Mapping[str, Any]) -> dict[str, Any]:
        """libpq connection parameters: connect timeout, server-side timeouts (appended to
        the URL's own ``options``) and TCP keepalives that end a connection to a vanished
        peer after about ``dead_peer_s``. A parameter the URL sets itself is left to it."""
        params = self._params(statement_s, _options(url_query))
        return {k: v for k, v in params.items() if k == "options" or k not in url_query}

    def _params(self, statement_s: float, existing_options: str | None) -> dict[str, Any]:
        idle = max(1, math.ceil(self.dead_peer_s / 2))
        interval = max(1, math.ceil(self.dead_peer_s / 6))
        server = (
            f"-c statement_timeout={_ms(statement_s)} -c lock_timeout={_ms(self.lock_s)} "
            f"-c idle_in_transaction_session_timeout={_ms(max(statement_s, 60.0))}"
        )
        return {
            # libpq counts whole seconds and treats 1 as 2.
            "connect_timeout": max(2, math.ceil(self.connect_s)),
            "keepalives": 1,
            "keepalives_idle": idle,
            "keepalives_interval": interval,
            "keepalives_count": 3,
            # Unacknowledged data (a query sent into a partition) ends the connection too.
            "tcp_user_timeout": _ms(self.dead_peer_s),
            "options": f"{existing_options} {server}" if existing_options else server,
        }


def _options(url_query: Mapping[str, Any]) -> str | None:
    raw = url_query.get("options")
    if isinstance(raw, tuple):
        return " ".join(raw)
    return raw


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
