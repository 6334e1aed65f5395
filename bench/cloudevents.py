"""CloudEvents from request loggers through ``POST /v1/cloudevents`` (in-process TestClient).

Each inference is two binary-mode events as KServe's logger sends them: the request
(KServe v1 ``instances``, arrays in schema order) and the response (``predictions``),
sharing a ``ce-id``. Measures CloudEvents/s and prediction events/s stored, for one and
for many instances per inference. The client runs in the same process (no sockets), so
the figures are the route's own cost: SDK parsing, mapping, pairing and the write.

    .venv/bin/python -m bench.cloudevents [--inferences 2000] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from fastapi.testclient import TestClient

from bench.common import (
    CATEGORICAL,
    CATEGORIES,
    NUMERIC,
    exit_cleanly_on_sigterm,
    machine,
    make_model,
    markdown_table,
    open_store,
    pg_url,
    sqlite_url,
)
from modelwatch.app import create_app
from modelwatch.config import Config
from modelwatch.settings import Settings

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


def _headers(kind: str, ce_id: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-source": "http://localhost:9081/",
        "ce-type": kind,
        "ce-time": "2026-09-21T14:13:20.123456789Z",
        "ce-inferenceservicename": "bench-isvc",
        "ce-namespace": "default",
        "ce-component": "predictor",
        "ce-endpoint": "",
        "content-type": "application/json",
    }


def _bodies(instances: int, seed: int) -> tuple[bytes, bytes]:
    rows = [
        [float(seed + i + j) for j in range(len(NUMERIC))]
        + [CATEGORIES[(seed + i + j) % len(CATEGORIES)] for j in range(len(CATEGORICAL))]
        for i in range(instances)
    ]
    predictions = [(seed + i) % 2 for i in range(instances)]
    return orjson.dumps({"instances": rows}), orjson.dumps({"predictions": predictions})


@contextmanager
def _url(kind: str) -> Iterator[str]:
    with sqlite_url() if kind == "sqlite" else pg_url() as url:
        yield url


def run(kind: str, inferences: int, instances: int) -> list[object]:
    with _url(kind) as url:
        store = open_store(url)
        try:
            make_model(store)
            config = Config.model_validate(
                {"cloudevents": {"services": {"bench-isvc": {"model": "bench", "version": "v1"}}}}
            )
            app = create_app(Settings(database_url=url), store, config)
            payloads = [_bodies(instances, i) for i in range(inferences)]
            with TestClient(app) as client:
                started = time.perf_counter()
                for i, (request, response) in enumerate(payloads):
                    ce_id = f"inference-{i}"
                    r = client.post(
                        "/v1/cloudevents", content=request, headers=_headers(REQUEST, ce_id)
                    )
                    assert r.status_code == 200, r.text
                    r = client.post(
                        "/v1/cloudevents", content=response, headers=_headers(RESPONSE, ce_id)
                    )
                    assert r.json()["accepted"] == instances, r.text
                elapsed = time.perf_counter() - started
        finally:
            store.dispose()
    events = inferences * instances
    return [
        kind,
        instances,
        inferences * 2,
        f"{elapsed:.2f}",
        f"{inferences * 2 / elapsed:,.0f}",
        f"{events / elapsed:,.0f}",
    ]


def main() -> None:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inferences", type=int, default=2000)
    parser.add_argument("--stores", default="sqlite")
    args = parser.parse_args()
    rows = []
    for kind in args.stores.split(","):
        for instances, inferences in ((1, args.inferences), (100, max(1, args.inferences // 10))):
            rows.append(run(kind, inferences, instances))
    print(machine())
    headers = ["store", "instances/inference", "CloudEvents", "s", "CloudEvents/s", "events/s"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
