"""A real MLflow tracking server on loopback (SQLite backend store, local artifact root),
from the separate ``.venv-mlflow`` that ``scripts/mlflow-env`` installs, driven over
its REST API as a training pipeline would drive it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, free_port

__all__ = ["MlflowServer", "mlflow_server"]

ROOT = Path(__file__).resolve().parents[2]
BINARY_ENV = "MODELWATCH_TEST_MLFLOW"
START_TIMEOUT_S = 120.0


def mlflow_binary() -> str | None:
    configured = os.environ.get(BINARY_ENV)
    candidate = Path(configured) if configured else ROOT / ".venv-mlflow" / "bin" / "mlflow"
    return str(candidate) if candidate.exists() else None


class MlflowServer:
    """REST calls a pipeline makes: register models and versions, log artifacts, move
    aliases."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30.0)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/api/2.0/mlflow{path}", json=body)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def create_model(self, name: str) -> None:
        self._post("/registered-models/create", {"name": name})

    def create_version(self, name: str, artifacts: dict[str, bytes] | None = None) -> str:
        """A run holding ``artifacts``, registered as the next version of ``name``."""
        run = self._post("/runs/create", {"experiment_id": "0"})["run"]["info"]
        for path, data in (artifacts or {}).items():
            r = self.http.put(
                f"/api/2.0/mlflow-artifacts/artifacts/0/{run['run_id']}/artifacts/{path}",
                content=data,
            )
            assert r.status_code == 200, r.text
        body = {"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]}
        return str(self._post("/model-versions/create", body)["model_version"]["version"])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._post("/registered-models/alias", {"name": name, "alias": alias, "version": version})

    def aliases(self, name: str) -> dict[str, str]:
        r = self.http.get("/api/2.0/mlflow/registered-models/get", params={"name": name})
        assert r.status_code == 200, r.text
        found = r.json()["registered_model"].get("aliases", [])
        return {a["alias"]: a["version"] for a in found}


@contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    binary = mlflow_binary()
    if binary is None:
        message = "MLflow's server is not installed: run scripts/mlflow-env"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    log = (root / "mlflow.log").open("wb")
    args = [binary, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db"]
    args += ["--artifacts-destination", str(root / "artifacts")]
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, root)
        server = MlflowServer(url)
        yield server
        server.http.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'mlflow.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not start: {(root / 'mlflow.log').read_text()[-2000:]}")
