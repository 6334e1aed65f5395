"""``modelwatch demo``: the pieces put together, in process or against a remote API.

In process (the default): the service on the configured store (embedded SQLite
unless ``MODELWATCH_DATABASE_URL`` says otherwise) with its scheduler, the local
Slack sink, the local training pipeline, and the simulator. The whole loop runs:
drift, alert, retrain webhook, callback with a new version, the challenger
compared with the champion, promotion.

Remote (``api_url``): only the simulator, against a running modelwatch (the
compose stack's load balancer, say). It registers the models, versions,
reference data, monitors and alerting policies through the API and sends the
traffic; the retrain loop needs the pipeline in the service's own config, so it
is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from demo.config import SINK_TOKEN, demo_config, describe
from demo.pipeline import DemoPipeline
from demo.simulator import Simulator, SimulatorStats
from demo.slack_sink import SlackSink
from modelwatch.app import check_config, create_app
from modelwatch.errors import ModelwatchError
from modelwatch.serving import BackgroundServer
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.webhooks import generate_secret

__all__ = ["DemoFailed", "DemoOptions", "run_local", "run_remote"]

Say = Callable[[str], None]


class DemoFailed(Exception):
    """The demo cannot start; the message says why and what to try."""


@dataclass(frozen=True)
class DemoOptions:
    port: int = 8000
    history_s: float = 3600.0
    speed: float = 0.0
    seed: int = 7
    rate: float = 2.0
    duration: float = 0.0
    drift_at: float = 15.0
    drift_for: float = 300.0
    label_delay: float = 30.0
    train_s: float = 2.0
    api_url: str | None = None
    api_key: str | None = None


def _simulator(url: str, o: DemoOptions, say: Say) -> Simulator:
    return Simulator(
        url,
        o.api_key,
        seed=o.seed,
        speed=o.speed,
        rate=o.rate,
        history_s=o.history_s,
        drift_at=o.drift_at if o.drift_for > 0 else None,
        drift_for=o.drift_for,
        label_delay=o.label_delay,
        say=say,
    )


def _live(sim: Simulator, o: DemoOptions, say: Say, loop: bool) -> SimulatorStats:
    """Backfill, then live traffic until the duration ends or Ctrl-C."""
    try:
        sim.backfill()
        drift = (
            f"in {o.drift_at:.0f}s a drift hits the fraud traffic for {o.drift_for:.0f}s"
            if o.drift_for > 0
            else "no drift (--drift-for 0)"
        )
        then = (
            "; once it is detected the local pipeline retrains fraud, and its new version is "
            "compared with the champion and promoted if it wins"
            if loop and o.drift_for > 0
            else ""
        )
        say(
            "live: fraud v1 (champion) and v2 (shadow: same requests, 3x the CPU), "
            f"delivery-eta v1; labels arrive {o.label_delay:.0f}s after their predictions; "
            f"{drift}{then}. Ctrl-C stops."
        )
        sim.run(o.duration or None)
    except KeyboardInterrupt:
        say("stopping ...")
    finally:
        sim.close()
    return sim.stats


def run_local(o: DemoOptions, settings: Settings, store: Store, say: Say) -> SimulatorStats:
    upgrade(store)
    with (
        SlackSink(token=SINK_TOKEN, say=say) as sink,
        DemoPipeline(generate_secret(), say=say, train_s=o.train_s) as pipeline,
    ):
        config = demo_config(
            sink.base_url,
            external_url=f"http://127.0.0.1:{o.port}",
            pipeline=(pipeline.url, pipeline.secret),
        )
        try:
            check_config(config, "demo config")
            app = create_app(settings, store, config, scheduler=True)
        except ModelwatchError as exc:
            raise DemoFailed(
                f"{exc} (an older demo's store? try another MODELWATCH_DATABASE_URL)"
            ) from None
        server = BackgroundServer(app, "127.0.0.1", o.port)
        try:
            server.start()
        except RuntimeError as exc:
            raise DemoFailed(f"{exc} (is the port taken? try --port)") from None
        try:
            say(f"modelwatch demo on {store.dialect} ({settings.database_url})")
            for name, path in (
                ("dashboards", "/dash/"),
                ("API docs", "/docs"),
                ("models", "/v1/models/fraud"),
                ("results", "/v1/models/fraud/results?metric=champion_challenger"),
                ("alerts", "/v1/alerts"),
                ("retrains", "/v1/retrain"),
                ("audit", "/v1/audit"),
                ("metrics", "/metrics"),
                ("health", "/readyz"),
            ):
                say(f"  {name:<10} {server.url}{path}")
            sim = _simulator(server.url, o, say)
            pipeline.on_trained = lambda _model, version: sim.serve_challenger(version)
            pipeline.on_promoted = lambda _model, version, old: sim.promoted(version, old)
            sim.register()
            for line in describe(config):
                say(line)
            return _live(sim, o, say, loop=True)
        finally:
            server.stop()


def run_remote(o: DemoOptions, say: Say) -> SimulatorStats:
    assert o.api_url is not None
    url = o.api_url.rstrip("/")
    sim = _simulator(url, o, say)
    try:
        sim.register(monitoring=True)
    except httpx.HTTPError as exc:
        sim.close()
        raise DemoFailed(f"cannot register the demo's models at {url}: {exc}") from None
    say(
        "registered monitors fraud-1m and eta-1m and policies feature-drift and fraud-accuracy "
        "(the retrain loop needs a pipeline in the service's config: not part of this mode)"
    )
    say(f"simulating traffic for modelwatch at {url} (results: {url}/v1/models/fraud/results)")
    return _live(sim, o, say, loop=False)
