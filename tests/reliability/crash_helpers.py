"""Processes for crash tests: ``modelwatch serve`` / ``worker`` started on a store,
SIGKILLed, restarted; and the store queries the tests count with."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwatch.store.engine import Store
from tests.conftest import free_port

# A worker whose evaluations take this long, so that a kill lands inside one.
SLOW_EVALUATION = """
import sys, time
import evaluators.runner as runner
_evaluate = runner.Runner.evaluate
_seconds = float(sys.argv.pop(1))
def _slow(self, run):
    time.sleep(_seconds)
    return _evaluate(self, run)
runner.Runner.evaluate = _slow
from modelwatch.cli import cli
sys.argv[0] = "modelwatch"
cli()
"""


@dataclass
class Proc:
    """One ``modelwatch`` process; its output goes to ``log`` (appended across restarts)."""

    args: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    kills: int = 0
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> None:
        assert not self.alive(), f"{self.args[3:5]} started while it still runs"
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1
        if wait and self.port is not None:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.popen is not None
            if self.popen.poll() is not None:
                pytest.fail(f"{self.args[3:5]} exited at start:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"not healthy in {timeout}s:\n{self.tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no rollback but the store's own."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self.kills += 1

    def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL after 20 s)."""
        if self.popen is None or self.popen.poll() is not None:
            return 0 if self.popen is None else self.popen.returncode
        self.popen.terminate()
        try:
            return self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _env(url: str, extra: dict[str, str] | None) -> dict[str, str]:
    return {
        **os.environ,
        "MODELWATCH_DATABASE_URL": url,
        "MODELWATCH_LOG_LEVEL": "WARNING",
        **(extra or {}),
    }


def server(url: str, logs: Path, *args: str, env: dict[str, str] | None = None) -> Proc:
    """``modelwatch serve`` on a free loopback port, the same port at every restart."""
    port = free_port()
    cmd = [sys.executable, "-m", "modelwatch.cli", "serve", "--port", str(port), *args]
    return Proc(cmd, _env(url, env), logs / f"serve-{port}.log", port=port)


def worker(
    url: str, logs: Path, config: Path, *, slow_s: float = 0.0, env: dict[str, str] | None = None
) -> Proc:
    """``modelwatch worker``; with ``slow_s`` each evaluation first sleeps that long."""
    cmd = [sys.executable, "-c", SLOW_EVALUATION, str(slow_s), "worker", "--config", str(config)]
    return Proc(cmd, _env(url, env), logs / "worker.log")


def query(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with store.read() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]
