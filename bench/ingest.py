"""Ingest: HTTP batches end to end through the real service, next to the store's raw write limit.

The service runs in a subprocess (``modelwatch serve``, or uvicorn with chosen
``--http``/``--loop``); client processes POST pre-serialised 1,000-event
bodies with httpx and an ingest API key. The raw limit writes the same
validated rows into a fresh table of the same layout: SQLite executemany in
one transaction, PostgreSQL binary COPY. CPU seconds of the server (its
process, threads included), of the clients and of the database server
(PostgreSQL backends) are reported so the client's share of the 2 cores shows.

    .venv/bin/python -m bench.ingest [--events 200000] [--clients 2] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from bench.common import (
    CATEGORICAL,
    NUMERIC,
    cpu_busy_seconds,
    exit_cleanly_on_sigterm,
    feature_frame,
    machine,
    make_model,
    markdown_table,
    pg_url,
    sqlite_url,
    storage_rows,
    wait_quiet,
    wire_events,
)
from collector.validation import validate_events
from modelwatch.auth import KeyStore
from modelwatch.domain import Scope
from modelwatch.store.engine import Store
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its descendants (uvicorn workers), alive ones only."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for member in tree:
        with suppress(OSError, IndexError):
            total += cpu_seconds(member)
    return total


def auto_server() -> str:
    """What uvicorn's defaults (as ``modelwatch serve`` uses them) pick in this environment."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http}/{loop}"


@contextmanager
def service(url: str, args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = dict(os.environ, MODELWATCH_DATABASE_URL=url, MODELWATCH_LOG_LEVEL="WARNING")
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([args.pythonpath, env.get("PYTHONPATH", "")])
    if args.server == "serve":
        cmd = [sys.executable, "-m", "modelwatch.cli", "serve", "--port", str(port),
               "--workers", str(args.workers)]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "uvicorn", "modelwatch.app:create_app", "--factory",
               "--port", str(port), "--http", args.http, "--loop", args.loop,
               "--workers", str(args.workers), "--log-level", "warning",
               "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=args.root, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start: {cmd}")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def client(base: str, token: str, bodies: list[bytes], start: Any, out: Any) -> None:
    """Post ``bodies`` one after another; puts (accepted, CPU seconds) or an error text."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    accepted = 0
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            start.wait()
            before = resource.getrusage(resource.RUSAGE_SELF)
            for body in bodies:
                r = http.post("/v1/predictions", content=body)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:500]}")
                accepted += r.json()["accepted"]
            after = resource.getrusage(resource.RUSAGE_SELF)
    except Exception as exc:
        out.put(f"client failed: {exc!r}")
        return
    out.put((accepted, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))


def collect(out: Any, count: int) -> list[tuple[int, float]]:
    """The clients' results; a failed client stops the benchmark with its error."""
    results = []
    for _ in range(count):
        result = out.get(timeout=600)
        if isinstance(result, str):
            raise RuntimeError(result)
        results.append(result)
    return results


def postgres_cpu(url: str) -> float:
    """CPU seconds of the server processes serving ``url``'s database (Linux, same host)."""
    with psycopg.connect(url) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() OR backend_type <> 'client backend'"
            )
        ]
    total = 0.0
    for pid in pids:
        with suppress(OSError, IndexError):
            total += cpu_seconds(pid)
    return total


def end_to_end(url: str, bodies: list[bytes], args: argparse.Namespace) -> dict[str, float]:
    with service(url, args) as (base, pid):
        store = Store(url)
        token = KeyStore(store).create("bench", Scope.INGEST)
        store.dispose()
        ctx = mp.get_context("fork")
        start, out = ctx.Event(), ctx.Queue()
        warm = [orjson.dumps(body_of(feature_frame(args.batch, seed=10**9 + i))) for i in range(2)]
        procs = [
            ctx.Process(target=client, args=(base, token, part, start, out))
            for part in [warm, *[bodies[i :: args.clients] for i in range(args.clients)]]
        ]
        procs[0].start()
        start.set()
        procs[0].join()
        collect(out, 1)
        start.clear()
        for p in procs[1:]:
            p.start()
        time.sleep(0.5)  # let the clients connect and wait on the start event
        server_before = tree_cpu_seconds(pid)
        db_before = postgres_cpu(url) if url.startswith("postgresql") else 0.0
        busy_before = cpu_busy_seconds()
        t0 = time.perf_counter()
        start.set()
        results = collect(out, len(procs) - 1)
        wall = time.perf_counter() - t0
        busy = cpu_busy_seconds() - busy_before
        server_cpu = tree_cpu_seconds(pid) - server_before
        db_cpu = postgres_cpu(url) - db_before if url.startswith("postgresql") else 0.0
        for p in procs[1:]:
            p.join()
    accepted = sum(r[0] for r in results)
    client_cpu = sum(r[1] for r in results)
    return {
        "wall": wall,
        "accepted": accepted,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "db_cpu": db_cpu,
        "others_cpu": max(0.0, busy - server_cpu - client_cpu - db_cpu),
    }


def body_of(frame: Any) -> dict[str, Any]:
    return {"model": "bench", "version": "v1", "events": wire_events(frame)}


def raw_limit(store: Store, n: int) -> float:
    """Seconds to write the same ``n`` validated rows at the store's raw speed into a
    fresh table of the same layout (as the service's table was): SQLite ``executemany``
    in one transaction, PostgreSQL binary COPY (psycopg ``set_types``)."""
    frame = feature_frame(n)
    model, version = make_model(store, "bench_raw")
    layout = model.layout
    rows = validate_events(layout, version.id, wire_events(frame)).rows
    assert rows == storage_rows(frame, version.id, rows[0][3])
    columns = ", ".join(layout.event_columns)
    t0 = time.perf_counter()
    with store.write() as conn:
        raw: Any = conn.connection.driver_connection
        if store.is_sqlite:
            marks = ", ".join("?" for _ in layout.event_columns)
            sql = f'INSERT INTO "{layout.events.name}" ({columns}) VALUES ({marks})'
            raw.executemany(sql, rows)
        else:
            types = ["int4", "text", "int8", "int8", "text", "float8"]
            types += ["float8"] * len(NUMERIC) + ["text"] * len(CATEGORICAL)
            sql = f'COPY "{layout.events.name}" ({columns}) FROM STDIN (FORMAT BINARY)'
            with raw.cursor() as cur, cur.copy(sql) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
    return time.perf_counter() - t0


def one_round(kind: str, n: int, bodies: list[bytes], args: argparse.Namespace) -> list[float]:
    """A fresh store: the service end to end, then the raw limit; the figures of the row."""
    with sqlite_url() if kind == "sqlite" else pg_url() as url:
        # The catalog as the service's tree migrates it (--root may be another tree).
        env = dict(os.environ, MODELWATCH_DATABASE_URL=url, MODELWATCH_LOG_LEVEL="WARNING")
        upgrade = [sys.executable, "-m", "modelwatch.cli", "db", "upgrade"]
        subprocess.run(upgrade, cwd=args.root, env=env, check=True, stdout=subprocess.DEVNULL)
        store = Store(url)
        make_model(store)
        store.dispose()
        wait_quiet()
        e2e = end_to_end(url, bodies, args)
        assert e2e["accepted"] == n, e2e
        store = Store(url)
        wait_quiet()
        raw = raw_limit(store, n)
        store.dispose()
    return [e2e["wall"], raw, e2e["server_cpu"], e2e["client_cpu"], e2e["db_cpu"],
            e2e["others_cpu"]]  # fmt: skip


def table_row(kind: str, n: int, figures: list[float]) -> list[object]:
    wall, raw, server, client, db, others = figures
    rate, raw_rate = n / wall, n / raw
    return [
        kind, f"{wall:.2f}", f"{rate / 1000:,.1f}k", f"{raw:.2f}", f"{raw_rate / 1000:,.1f}k",
        f"{rate / raw_rate:.0%}", f"{server:.1f}", f"{server / n * 1e6:.1f}", f"{client:.2f}",
        f"{client / (client + server + db):.0%}", f"{db:.1f}", f"{others:.1f}",
    ]  # fmt: skip


HEADERS = ["store", "e2e s", "e2e events/s", "raw s", "raw events/s", "e2e/raw", "server CPU s",
           "server µs/event", "client CPU s", "client share", "PG backends CPU s",
           "others' CPU s"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=3, help="fresh stores; best round shown")
    parser.add_argument("--server", choices=["serve", "uvicorn"], default="serve")
    parser.add_argument("--http", default="h11", help="with --server uvicorn: h11 or httptools")
    parser.add_argument("--loop", default="asyncio", help="with --server uvicorn: asyncio, uvloop")
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    parser.add_argument("--pythonpath", default="", help="extra path for the service (packages)")
    parser.add_argument("--root", default=str(ROOT), help="source tree the service runs from")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    n = args.events - args.events % args.batch
    frame = feature_frame(n)
    bodies = [orjson.dumps(body_of(frame.slice(i, args.batch))) for i in range(0, n, args.batch)]
    server = (
        f"modelwatch serve --workers {args.workers} ({auto_server()})"
        if args.server == "serve"
        else f"uvicorn {args.http}/{args.loop} x{args.workers}"
    )
    size = len(bodies[0]) / 2**10
    print(f"ingest of {n:,} events in {len(bodies)} bodies of {args.batch} ({size:.0f} KiB each), "
          f"{args.clients} clients, {server} from {args.root}, best of {args.rounds} rounds; "
          f"{machine()}")  # fmt: skip
    best: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        for kind in args.stores.split(","):
            figures = one_round(kind, n, bodies, args)
            print(f"round {round_no + 1}: " + " | ".join(map(str, table_row(kind, n, figures))))
            if kind in best:
                wall, raw = min(best[kind][0], figures[0]), min(best[kind][1], figures[1])
                keep = figures if figures[0] <= best[kind][0] else best[kind]
                figures = [wall, raw, *keep[2:]]
            best[kind] = figures
    print()
    print(markdown_table(HEADERS, [table_row(kind, n, f) for kind, f in best.items()]))


if __name__ == "__main__":
    main()
