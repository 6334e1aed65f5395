"""API keys: created by ``modelwatch keys create``, stored hashed, sent as ``Bearer``.

A key looks like ``mw_<prefix>_<secret>``; the prefix finds the row and the
SHA-256 of the secret is compared in constant time. Keys are 256-bit random
tokens, so a fast hash is enough (there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from modelwatch.domain import Scope
from modelwatch.errors import AuthError, ConflictError, NotFoundError
from modelwatch.store import audit
from modelwatch.store import tables as t
from modelwatch.store.engine import Store
from modelwatch.timeutil import utcnow

__all__ = ["ANONYMOUS", "ApiKey", "KeyStore", "Principal", "silence_author"]

_TOKEN_PREFIX = "mw_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and scope, or ``anonymous`` when no keys exist."""

    name: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        if self.scope is Scope.ADMIN:
            return True
        if needed is Scope.READ:
            return self.scope is Scope.READ
        return self.scope is needed


ANONYMOUS = Principal("anonymous", Scope.ADMIN)
"""The caller while no active key exists: the service is open and allows everything."""


def silence_author(created_by: str, who: Principal) -> str:
    """How a silence records its author: the name given, plus the key's name unless anonymous."""
    return created_by if who == ANONYMOUS else f"{created_by} ({who.name})"


@dataclass(frozen=True)
class ApiKey:
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str, scope: Scope, actor: str = audit.SYSTEM) -> str:
        """Store a new key and return its token; the token is shown once and never stored."""
        prefix = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with self.store.write() as conn:
            if conn.execute(select(t.api_keys.c.id).where(t.api_keys.c.name == name)).first():
                raise ConflictError(f"an API key named {name!r} already exists")
            conn.execute(
                t.api_keys.insert().values(
                    name=name,
                    scope=scope.value,
                    prefix=prefix,
                    secret_hash=_hash(secret),
                    created_at=utcnow(),
                )
            )
            details = {"scope": scope.value, "prefix": prefix}
            audit.record(conn, actor, "api_key.created", subject=name, details=details)
        return f"{_TOKEN_PREFIX}{prefix}_{secret}"

    def list(self) -> list[ApiKey]:
        with self.store.read() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.id)).all()
        return [ApiKey(r.name, Scope(r.scope), r.prefix, r.created_at, r.revoked_at) for r in rows]

    def revoke(self, name: str, actor: str = audit.SYSTEM) -> None:
        with self.store.write() as conn:
            done = conn.execute(
                update(t.api_keys)
                .where(t.api_keys.c.name == name, t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if done.rowcount:
                audit.record(conn, actor, "api_key.revoked", subject=name)
        if done.rowcount == 0:
            raise NotFoundError(f"no active API key named {name!r}")

    def any_active(self) -> bool:
        with self.store.read() as conn:
            found = conn.execute(
                select(t.api_keys.c.id).where(t.api_keys.c.revoked_at.is_(None)).limit(1)
            ).first()
        return found is not None

    def principal(self, token: str | None, missing: str = "missing API key") -> Principal:
        """Who sends ``token``: anonymous while no key is active, else the token's key.

        Without a token, once a key exists, this raises ``AuthError(missing)``.
        """
        if token is None:
            if not self.any_active():
                return ANONYMOUS
            raise AuthError(missing)
        return self.authenticate(token)

    def authenticate(self, token: str) -> Principal:
        parts = token.split("_", 2) if token.startswith(_TOKEN_PREFIX) else []
        if len(parts) != 3:
            raise AuthError("malformed API key")
        _, prefix, secret = parts
        with self.store.read() as conn:
            row = conn.execute(
                select(t.api_keys).where(
                    t.api_keys.c.prefix == prefix, t.api_keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
            raise AuthError("invalid or revoked API key")
        return Principal(row.name, Scope(row.scope))
