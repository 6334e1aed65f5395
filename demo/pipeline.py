"""A local stand-in for a training pipeline: it receives modelwatch's signed webhooks,
"trains", and calls back with the new version.

What a real pipeline (Airflow, Argo, GitHub Actions, ...) does, in a few lines:

* verify every webhook's Standard Webhooks signature with the pipeline's secret
  (:func:`modelwatch.webhooks.verify`) and refuse a bad one with 401;
* answer 202 at once and do the work in the background; a repeated
  ``webhook-id`` (a retry of a delivery already accepted) is answered 200 and
  not acted on again;
* for ``retrain.requested``: "train" for ``train_s`` seconds, post a signed
  ``running`` callback, then a ``succeeded`` one with the new version and its
  reference data (the retrained model's training data, scored by it) to the
  payload's ``callback_url``; then tell the demo (``on_trained``) to serve it;
* for ``model.promoted`` (the deploy webhook after a promotion): tell the demo
  (``on_promoted``) that the new champion is live.

Every step is told through ``say``::

    with DemoPipeline(generate_secret(), say=print) as pipeline:
        config = {"pipelines": [{"name": "training", "url": pipeline.url,
                                 "secret": pipeline.secret}]}
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import httpx

from demo.models import FRAUD, fraud_reference
from demo.serving import ServedInBackground
from modelwatch.webhooks import WebhookVerificationError, signed_headers, verify

__all__ = ["RETRAINED_DESCRIPTION", "DemoPipeline", "Webhook"]

log = logging.getLogger(__name__)

RETRAINED_DESCRIPTION = "retrained on the drifted traffic (demo pipeline)"
_CALLBACK_PATH = "/v1/retrain/callback"
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class Webhook:
    """A verified webhook: its id, type and data."""

    webhook_id: str
    type: str
    data: dict[str, Any]


class DemoPipeline(ServedInBackground):
    """A threaded local HTTP server; use as a context manager or ``start``/``stop``."""

    def __init__(
        self,
        secret: str,
        *,
        say: Callable[[str], None] | None = None,
        train_s: float = 2.0,
        on_trained: Callable[[str, str], None] | None = None,
        on_promoted: Callable[[str, str, str | None], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.secret = secret
        self.say = say
        self.train_s = train_s
        self.on_trained = on_trained
        self.on_promoted = on_promoted
        self.received: list[Webhook] = []
        self.rejected: list[str] = []
        self.callbacks: list[tuple[str, int]] = []  # (status sent, HTTP status answered)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._jobs: list[threading.Thread] = []
        self._versions = 0
        server = _Server((host, port), _Handler)
        server.pipeline = self
        self._serve(server, "demo-pipeline")

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/modelwatch"

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait for every training job to finish (tests); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))
        return not any(job.is_alive() for job in jobs)

    # --- receiving -----------------------------------------------------------
    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one webhook: (HTTP status, JSON body)."""
        try:
            webhook_id = verify(self.secret, headers, body)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected.append(str(exc))
            self._say(f"refused a webhook: {exc}")
            return 401, {"error": str(exc)}
        try:
            payload = json.loads(body)
            kind, data = str(payload["type"]), dict(payload.get("data") or {})
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": f"not a webhook payload: {exc}"}
        with self._lock:
            if webhook_id in self._seen:
                duplicate = True
            else:
                duplicate = False
                self._seen.add(webhook_id)
                self.received.append(Webhook(webhook_id, kind, data))
        if duplicate:
            self._say(f"{kind} {webhook_id} again: a retry of work already accepted, ignored")
            return 200, {"duplicate": True}
        if kind == "retrain.requested":
            job = threading.Thread(
                target=self._train, args=(webhook_id, data), name="demo-train", daemon=True
            )
            with self._lock:
                self._jobs.append(job)
            job.start()
        elif kind == "model.promoted":
            self._promoted(data)
        else:
            self._say(f"{kind} {webhook_id}: nothing to do for it")
        return 202, {"accepted": webhook_id}

    # --- working -------------------------------------------------------------
    def _train(self, webhook_id: str, data: dict[str, Any]) -> None:
        """The background job: never raises; a failure is logged and told."""
        try:
            self._train_once(data)
        except Exception as exc:
            log.exception("demo training for webhook %s failed", webhook_id)
            self._say(f"training failed: {type(exc).__name__}: {exc}")

    def _train_once(self, data: dict[str, Any]) -> None:
        model, retrain_id = str(data["model"]), str(data["retrain_id"])
        callback_url = str(data["callback_url"])
        window = data.get("window") or {}
        results = data.get("results") or []
        breaches = sorted({str(r.get("column") or r.get("metric")) for r in results})
        self._say(
            f"retrain.requested for {model} {data.get('version')} (policy {data.get('policy')}, "
            f"window from {str(window.get('start'))[:19]}; breaching: "
            f"{', '.join(breaches) or 'n/a'}): signature verified, training ..."
        )
        if model != FRAUD["name"]:
            self._callback(callback_url, retrain_id, "failed", message=f"cannot train {model!r}")
            return
        self._callback(
            callback_url, retrain_id, "running", progress=0.5, message="training on the last hour"
        )
        time.sleep(self.train_s)
        version = self._next_version(callback_url, model)
        buf = io.BytesIO()
        reference = fraud_reference(seed=2000 + self._versions)
        reference.write_parquet(buf)
        new = {
            "version": version,
            "description": RETRAINED_DESCRIPTION,
            "reference": {"format": "parquet", "base64": base64.b64encode(buf.getvalue()).decode()},
        }
        code = self._callback(
            callback_url,
            retrain_id,
            "succeeded",
            progress=1.0,
            message=f"trained {version} on {reference.height} rows, the fraud wave included",
            version=new,
        )
        if code == 200 and self.on_trained is not None:
            self.on_trained(model, version)

    def _promoted(self, data: dict[str, Any]) -> None:
        model, version = str(data.get("model")), str(data.get("version"))
        previous = data.get("previous_champion")
        self._say(
            f"model.promoted: {model} {version} replaces {previous} as champion "
            f"(approved by {data.get('approved_by')}): deploying it"
        )
        if self.on_promoted is not None:
            try:
                self.on_promoted(model, version, str(previous) if previous else None)
            except Exception:
                log.exception("telling the demo about the promotion failed")

    def _next_version(self, callback_url: str, model: str) -> str:
        """The next ``vN`` after every version the model has (a reused store may hold v3)."""
        with self._lock:
            self._versions += 1
            fallback = 2 + self._versions
        try:
            with httpx.Client(timeout=10) as http:
                r = http.get(f"{_api_base(callback_url)}/v1/models/{model}")
                r.raise_for_status()
                numbers = [
                    int(m.group(1))
                    for v in r.json()["versions"]
                    if (m := _VERSION.match(str(v["version"])))
                ]
        except (httpx.HTTPError, KeyError, ValueError):
            return f"v{fallback}"
        return f"v{max([*numbers, fallback - 1]) + 1}"

    def _callback(
        self,
        url: str,
        retrain_id: str,
        status: str,
        *,
        progress: float | None = None,
        message: str = "",
        version: dict[str, Any] | None = None,
    ) -> int:
        body: dict[str, Any] = {"retrain_id": retrain_id, "status": status, "message": message}
        if progress is not None:
            body["progress"] = progress
        if version is not None:
            body["version"] = version
        raw = json.dumps(body).encode()
        headers = {
            **signed_headers([self.secret], f"msg_{uuid.uuid4().hex}", raw),
            "content-type": "application/json",
        }
        try:
            with httpx.Client(timeout=60) as http:
                r = http.post(url, content=raw, headers=headers)
            code, text = r.status_code, r.text[:300]
        except httpx.HTTPError as exc:
            code, text = 0, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.callbacks.append((status, code))
        what = f"{status} ({message})" if message else status
        if version is not None:
            what = f"{status}: new version {version['version']} ({message})"
        answer = f"HTTP {code}" if code else "no answer"
        self._say(f"callback {what}: {answer}" + ("" if code == 200 else f" {text}"))
        return code

    def _say(self, line: str) -> None:
        if self.say is not None:
            self.say(f"[pipeline] {line}")


def _api_base(callback_url: str) -> str:
    return callback_url.removesuffix(_CALLBACK_PATH).rstrip("/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    pipeline: DemoPipeline


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            code, answer = cast(_Server, self.server).pipeline.handle(headers, raw)
        except Exception as exc:  # never let a bug kill the server thread
            log.exception("demo pipeline failed on a webhook")
            code, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
        body = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the pipeline tells what it received through ``say``."""
