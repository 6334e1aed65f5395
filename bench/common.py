"""Shared pieces of the benchmarks: the data shape, stores that clean up, tables.

Data shape everywhere: a binary model with 20 numeric and 5 categorical
features, a prediction and a score, no segments.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import psycopg

from modelwatch.domain import ModelSpec
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import ModelRecord, Registry, VersionRecord

N_NUMERIC = 20
N_CATEGORICAL = 5
CATEGORIES = [f"c{i:02d}" for i in range(12)]
START_US = 1_790_000_000_000_000  # 2026-09-21T14:13:20Z
PG_ADMIN_URL = os.environ.get(
    "MODELWATCH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# Created and dropped by each run; one name per process, so that concurrent runs
# (two people on one server) never drop each other's database.
PG_BENCH_DB = os.environ.get("MODELWATCH_BENCH_PG_DB", f"mw_bench_{os.getpid()}")

NUMERIC = [f"num_{i}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"cat_{i}" for i in range(N_CATEGORICAL)]


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that temporary files and databases are removed
    (SIGINT already raises KeyboardInterrupt, unless the shell ignores it)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def bench_spec(name: str = "bench") -> ModelSpec:
    features = [{"name": n, "type": "numeric"} for n in NUMERIC]
    features += [{"name": n, "type": "categorical"} for n in CATEGORICAL]
    return ModelSpec.model_validate({"name": name, "task": "binary", "features": features})


def feature_frame(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` rows of user-named columns: request_id, ts_us, prediction, score, features."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    cols: dict[str, Any] = {
        "request_id": [f"req-{seed}-{i}" for i in range(n)],
        "ts_us": START_US + np.arange(n, dtype=np.int64) * 1000,
        "prediction": np.where(score >= 0.5, "1", "0"),
        "score": score,
    }
    for name in NUMERIC:
        cols[name] = rng.normal(size=n)
    codes = rng.integers(0, len(CATEGORIES), size=(N_CATEGORICAL, n))
    cats = np.array(CATEGORIES)
    for j, name in enumerate(CATEGORICAL):
        cols[name] = cats[codes[j]]
    return pl.DataFrame(cols)


def storage_rows(frame: pl.DataFrame, version_id: int, received_us: int) -> list[tuple[Any, ...]]:
    """Rows in ``ModelLayout.event_columns`` order, as validation produces them."""
    ordered = frame.select(
        pl.lit(version_id).alias("version_id"),
        "request_id",
        "ts_us",
        pl.lit(received_us).alias("received_us"),
        "prediction",
        "score",
        *NUMERIC,
        *CATEGORICAL,
    )
    return ordered.rows()


def wire_events(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The same rows as the JSON events a model server posts."""
    out = []
    stamps = [
        datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")
        for us in frame["ts_us"]
    ]
    features = frame.select(*NUMERIC, *CATEGORICAL).to_dicts()
    for rid, ts, pred, score, feats in zip(
        frame["request_id"], stamps, frame["prediction"], frame["score"], features, strict=True
    ):
        out.append(
            {
                "request_id": rid,
                "timestamp": ts,
                "prediction": pred,
                "score": score,
                "features": feats,
            }
        )
    return out


@contextmanager
def sqlite_url() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="mw_bench_")
    try:
        yield f"sqlite:///{folder}/bench.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def pg_url(name: str = PG_BENCH_DB) -> Iterator[str]:
    """A fresh database on the benchmark server, dropped afterwards."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def open_store(url: str) -> Store:
    store = Store(url)
    upgrade(store)
    return store


def make_model(store: Store, name: str = "bench") -> tuple[ModelRecord, VersionRecord]:
    registry = Registry(store)
    model = registry.create_model(bench_spec(name), "bench")
    return model, registry.create_version(model, "v1", None, "bench")


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def cpu_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used so far (all cores, Linux)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float = 120.0, busy: float = 0.25) -> float:
    """Wait (up to ``max_wait`` s) for a second in which the machine is at most ``busy``
    loaded (share of all cores); returns the load of the last second measured. Other
    work on a shared 2-core machine distorts every figure here."""
    deadline = time.monotonic() + max_wait
    while True:
        before = cpu_busy_seconds()
        time.sleep(1.0)
        load = (cpu_busy_seconds() - before) / (os.cpu_count() or 1)
        if load <= busy or time.monotonic() > deadline:
            return load


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    python = platform.python_version()
    return f"{os.cpu_count()} cores, {cpu}, Python {python}, polars {pl.__version__}"
