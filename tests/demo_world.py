"""The demo in simulated time, for tests: the pieces of ``modelwatch demo`` in-process.

The API (for the simulator's SDK and the pipeline's callbacks), the local Slack sink
and, with ``pipeline``, the local demo pipeline run with the demo's config; the
background services (evaluation, alerting, retraining) are the service's own
(:func:`modelwatch.background.build_background`) on a simulated clock, and run one
step at a time instead of on their scheduler.

Simulated time starts three hours ago on the minute, so every window is closed when
its traffic has been sent; each :meth:`DemoWorld.step` sends :data:`STEP_S`
simulated seconds of traffic, then plans and drains evaluations and runs one
alerting cycle "now" (and, with the pipeline, a retrain cycle and the pipeline's
work)::

    with demo_world(tmp_path) as world:
        sim = world.simulator(drift_at_min=10, drift_minutes=3)
        while world.minutes() < 18:
            world.step(sim)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from collector.ingest import Ingestor
from demo.config import SINK_TOKEN, demo_config
from demo.pipeline import DemoPipeline
from demo.simulator import Simulator
from demo.slack_sink import SinkMessage, SlackSink
from modelwatch.app import check_config, create_app
from modelwatch.background import build_background
from modelwatch.serving import BackgroundServer
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from modelwatch.store.registry import Registry
from modelwatch.webhooks import generate_secret
from tests.conftest import free_port

__all__ = ["PIPELINE_TRAIN_S", "STEP_S", "DemoWorld", "check_threads", "demo_world"]

STEP_S = 30.0
PIPELINE_TRAIN_S = 0.05  # the demo pipeline's "training", short for tests


class DemoWorld:
    """The demo's store, config, API server and background services, on a simulated clock."""

    def __init__(self, tmp_path: Path, sink: SlackSink, pipeline: DemoPipeline | None) -> None:
        url = f"sqlite:///{tmp_path}/demo.db"
        self.sink = sink
        self.pipeline = pipeline
        self.store = Store(url)
        upgrade(self.store)
        self.start = 60.0 * ((time.time() - 3 * 3600) // 60)
        self.now = self.start
        port = free_port()
        self.config = demo_config(
            sink.base_url,
            external_url=f"http://127.0.0.1:{port}",
            env={},  # never real Slack, whatever is set
            pipeline=None if pipeline is None else (pipeline.url, pipeline.secret),
        )
        check_config(self.config, "demo config")
        app = create_app(Settings(database_url=url), self.store, self.config)
        self.server = BackgroundServer(app, "127.0.0.1", port)
        self.narration: list[str] = []
        self.registry = Registry(self.store)
        self.background = build_background(
            self.store,
            self.registry,
            self.config,
            Ingestor(self.store, self.registry),
            clock=lambda: self.now,
        )

    def simulator(self, drift_at_min: float, drift_minutes: float) -> Simulator:
        """The demo's simulator from the start, its models registered, a drift scheduled
        ``drift_at_min`` simulated minutes in for ``drift_minutes``; with the pipeline, it
        serves the versions the pipeline trains and promotes."""
        sim = Simulator(self.server.url, seed=7, start=self.start, say=self.narration.append)
        sim.register()
        sim.inject_drift(self.start + drift_at_min * 60, drift_minutes * 60)
        if self.pipeline is not None:
            self.pipeline.on_trained = lambda _model, version: sim.serve_challenger(version)
            self.pipeline.on_promoted = lambda _model, version, old: sim.promoted(version, old)
        return sim

    def step(self, sim: Simulator) -> None:
        """The next :data:`STEP_S` simulated seconds: traffic, then evaluation and alerting
        at 'now' (and with the pipeline, a retrain cycle and the pipeline's work)."""
        self.now += STEP_S
        sim.advance(self.now)
        assert sim.client.flush(30)
        evaluation = self.background.evaluation
        for monitor in evaluation.monitors.list():
            evaluation.plan(monitor)
        evaluation.drain(120)
        self.background.alerting.cycle()
        if self.pipeline is not None:
            self.background.retraining.cycle()
            assert self.pipeline.wait_idle(30)

    def minutes(self) -> float:
        return (self.now - self.start) / 60

    def alias(self, version: str) -> str | None:
        """The fraud ``version``'s alias; ``"gone"`` if there is no such version."""
        fraud = self.registry.get_model("fraud")
        return next(
            (v.alias for v in self.registry.list_versions(fraud) if v.version == version), "gone"
        )


@contextmanager
def demo_world(tmp_path: Path, pipeline: bool = False) -> Iterator[DemoWorld]:
    """A started :class:`DemoWorld` (with the local demo pipeline if ``pipeline``)."""
    with ExitStack() as stack:
        sink = stack.enter_context(SlackSink(token=SINK_TOKEN))
        trainer = (
            stack.enter_context(DemoPipeline(generate_secret(), train_s=PIPELINE_TRAIN_S))
            if pipeline
            else None
        )
        world = DemoWorld(tmp_path, sink, trainer)
        if trainer is not None:
            trainer.say = world.narration.append
        world.server.start()
        try:
            yield world
        finally:
            world.server.stop()
            world.background.shutdown()
            world.store.dispose()


FIRING_ICONS = ("🔴", "🟠", "🔵", "🔥")
DRIFT_WORDS = "share of features drifted"
_HEADER = re.compile(r"🔥 FIRING \((\d+)\+?\) · (.+?) · fraud$")
_RECOVERED = re.compile(r"^✅ (.+?) recovered: (.+?) (\S+), back (above|below) (\S+)$")
_POLICY = re.compile(r"alertname=`([^`]+)`")


def _sections(message: SinkMessage) -> list[str]:
    """The text of each alert's section (sections with text, not the group's fields)."""
    return [
        str(b["text"]["text"]) for b in message.blocks if b.get("type") == "section" and "text" in b
    ]


def _policy_of(message: SinkMessage, section: str) -> str:
    own = _POLICY.search(section)
    if own:
        return own[1]
    fields = next(b["fields"] for b in message.blocks if "fields" in b)
    return next(f["text"].split("\n")[1] for f in fields if f["text"].startswith("*Policy*"))


def check_threads(sink: SlackSink, served: str) -> str:
    """Assert what every fraud message says: each drift once (as the ``served`` stream's),
    a header counting and naming what fires in it, and a tick only beside a figure back
    within its line. Returns the threads' headers and lines, for further checks."""
    said = []
    for parent in sink.top_level():
        for message in [parent, *sink.replies(parent.ts)]:
            lines = [line.split("  Trend ")[0] for line in message.alert_lines()]
            said.append("\n".join([message.header, *lines]))
            _check_message(message, lines, served, "\n\n".join(said))
    return "\n\n".join(said)


def _check_message(message: SinkMessage, lines: list[str], served: str, said: str) -> None:
    drifts = [line for line in lines if DRIFT_WORDS in line]
    assert len(drifts) <= 1, f"a drift listed more than once:\n{said}"
    assert all(served in line for line in drifts), said
    sections = _sections(message)
    firing = [_policy_of(message, s) for s in sections if s.startswith(FIRING_ICONS)]
    ended = {_policy_of(message, s) for s in sections if not s.startswith(FIRING_ICONS)}
    header = _HEADER.match(message.header)
    if header is None:
        assert not firing and "RESOLVED" in message.header, said
    else:
        assert int(header[1]) == len(firing), f"the header counts what fires now:\n{said}"
        named = set(re.sub(r" \+\d+$", "", header[2]).split(", "))
        if "+" not in header[2]:
            assert set(firing) <= named, f"the header names what fires:\n{said}"
        assert not (ended - set(firing)) & named, f"the header names a resolved one:\n{said}"
    for line in lines:
        if line.startswith("✅"):
            recovered = _RECOVERED.match(line)
            assert recovered, f"a tick without a recovery: {line}"
            back = "above" if "accuracy" in recovered[2] else "below"
            assert recovered[4] == back, f"a tick beside a figure past its line: {line}"
