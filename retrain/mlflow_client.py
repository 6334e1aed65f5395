"""MLflow's model registry through its REST API, with the project's HTTP client.

The sync needs five calls (search a model's versions, read one, read and move its
aliases, fetch a run artifact); MLflow's own Python client would pull in MLflow and 36
more packages for them, with pins of pyarrow and graphql-core below ours. Credentials
come from the environment variables MLflow's own client reads:
``MLFLOW_TRACKING_TOKEN`` (a bearer token) or ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` (basic auth). ``transport`` lets tests answer without a
network.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from modelwatch.settings import (
    ENV_MLFLOW_TRACKING_PASSWORD,
    ENV_MLFLOW_TRACKING_TOKEN,
    ENV_MLFLOW_TRACKING_USERNAME,
)

__all__ = ["MlflowError", "MlflowNotFound", "MlflowRegistry", "MlflowVersion"]

API = "/api/2.0/mlflow"
PAGE = 200
TIMEOUT_S = 10.0


class MlflowError(RuntimeError):
    """MLflow answered with an error or could not be reached."""


class MlflowNotFound(MlflowError):
    """MLflow has no such registered model or version."""


@dataclass(frozen=True)
class MlflowVersion:
    """One version of a registered model, as MLflow lists it."""

    name: str
    version: str
    run_id: str
    source: str
    description: str


class MlflowRegistry:
    """The calls the sync makes to one MLflow tracking server."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        env: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        page_size: int = PAGE,
    ) -> None:
        env = os.environ if env is None else env
        self.page_size = page_size
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        if token := env.get(ENV_MLFLOW_TRACKING_TOKEN):
            headers["Authorization"] = f"Bearer {token}"
        elif user := env.get(ENV_MLFLOW_TRACKING_USERNAME):
            auth = httpx.BasicAuth(user, env.get(ENV_MLFLOW_TRACKING_PASSWORD, ""))
        self._http = httpx.Client(
            base_url=tracking_uri.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=TIMEOUT_S,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def versions(self, name: str, known: Collection[str] = ()) -> list[MlflowVersion]:
        """The versions of registered model ``name`` not in ``known``, oldest first.

        Pages newest first and stops at the first page holding a known version: the
        newest version modelwatch has is the cursor, so a sync of a registry with
        thousands of versions reads one page."""
        out: list[MlflowVersion] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "filter": f"name='{_quoted(name)}'",
                "max_results": self.page_size,
                "order_by": ["version_number DESC"],
            }
            if token:
                params["page_token"] = token
            page = self._call("GET", "/model-versions/search", params=params)
            found = [_version(v) for v in page.get("model_versions", [])]
            out.extend(v for v in found if v.version not in known)
            token = page.get("next_page_token")
            if not token or any(v.version in known for v in found):
                return sorted(out, key=lambda v: int(v.version))

    def version(self, name: str, version: str) -> MlflowVersion | None:
        """Version ``version`` of ``name``, or None when MLflow has no such version."""
        try:
            found = self._call(
                "GET", "/model-versions/get", params={"name": name, "version": version}
            )
        except MlflowNotFound:
            return None
        return _version(found["model_version"])

    def aliases(self, name: str) -> dict[str, str]:
        """Alias to version of registered model ``name``."""
        model = self._call("GET", "/registered-models/get", params={"name": name})
        aliases = model.get("registered_model", {}).get("aliases", [])
        return {str(a["alias"]): str(a["version"]) for a in aliases}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call(
            "POST",
            "/registered-models/alias",
            json={"name": name, "alias": alias, "version": version},
        )

    def artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of artifact ``path`` of run ``run_id``."""
        try:
            r = self._http.get("/get-artifact", params={"path": path, "run_uuid": run_id})
        except httpx.HTTPError as exc:
            raise MlflowError(f"MLflow unreachable: {exc}") from None
        if r.status_code != 200:
            raise MlflowError(
                f"artifact {path!r} of run {run_id}: MLflow answered {r.status_code}: "
                f"{r.text[:200]}"
            )
        return r.content

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            r = self._http.request(method, API + path, **kwargs)
        except httpx.HTTPError as exc:
            raise MlflowError(f"MLflow unreachable: {exc}") from None
        if r.status_code != 200:
            try:
                detail = r.json().get("message") or r.text
            except ValueError:
                detail = r.text
            error = MlflowNotFound if r.status_code == 404 else MlflowError
            raise error(f"{method} {path}: MLflow answered {r.status_code}: {detail[:300]}")
        body: dict[str, Any] = r.json() if r.content else {}
        return body


def _version(v: dict[str, Any]) -> MlflowVersion:
    return MlflowVersion(
        name=str(v["name"]),
        version=str(v["version"]),
        run_id=str(v.get("run_id") or ""),
        source=str(v.get("source") or ""),
        description=str(v.get("description") or ""),
    )


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")
