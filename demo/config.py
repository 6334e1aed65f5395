"""The demo's configuration, as a deployment would declare it in YAML: the models, their
monitors, the policies, the Slack receiver and its route, and the training pipeline.

Alerts go to the local Slack sink (:mod:`demo.slack_sink`), which prints them; with
:data:`SLACK_TOKEN_ENV` and :data:`SLACK_CHANNEL_ENV` set they go to that Slack
channel as well. Windows are one minute long and evaluated every 10s, so an
injected drift shows within a couple of minutes:

* ``feature-drift`` (warning, every model): at least 40% of a version's features
  drifted in a window (the default drift check: a test per feature, corrected
  across the features, with an effect-size floor, quiet on windows of ~120 events).
* ``fraud-accuracy`` (critical, the fraud champion): accuracy below 0.8. Labels
  arrive 30 s after the predictions, so this one follows the drift a little later.

With a pipeline (the local :class:`demo.pipeline.DemoPipeline`, ``demo-training``,
its secret made per run) the loop closes:

* ``fraud-drift-retrain`` (info, the fraud champion): the drift condition above,
  with a ``retrain`` action: a signed ``retrain.requested`` webhook to the
  pipeline, which calls back with a new version, registered as ``challenger``.
* ``fraud-challenger-wins`` (info, fraud challengers): the challenger's log loss is
  lower than the champion's by more than :data:`WIN_MARGIN` on the sequential test
  (the always-valid interval over every window since the challenger arrived, so
  looking every 10 seconds does not promote a challenger that is merely lucky), with
  a ``promote`` action: the challenger becomes champion and a ``model.promoted``
  webhook goes to the same pipeline. Log loss rather than accuracy: during the wave
  the retrained model's log loss is ~0.2 lower per request, which the sequence
  (tightest at :data:`PLANNED_PAIRS`) resolves in about three one-minute windows
  (~330 labelled pairs); accuracy moves by ~0.06 and takes about twice as long.

All of them land in one grouped message per model (``group_by: [model]``),
threaded: later changes and the resolution are replies to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from demo.models import ETA, FRAUD
from evaluators.checks import DEFAULT_CHECKS
from modelwatch.config import Config
from modelwatch.domain import Task
from modelwatch.settings import ENV_DEMO_SLACK_CHANNEL

__all__ = [
    "MONITORS",
    "PIPELINE",
    "PLANNED_PAIRS",
    "POLICIES",
    "SINK_CHANNEL",
    "SINK_RECEIVER",
    "SINK_TOKEN",
    "SLACK_CHANNEL_ENV",
    "SLACK_RECEIVER",
    "SLACK_TOKEN_ENV",
    "WIN_MARGIN",
    "demo_config",
    "describe",
    "real_slack",
]

SLACK_TOKEN_ENV = "SLACK_BOT_TOKEN"
"""A Slack bot token (``xoxb-...``, scope ``chat:write``); with the channel, alerts go to Slack."""
SLACK_CHANNEL_ENV = ENV_DEMO_SLACK_CHANNEL
"""The Slack channel (``#name`` or id, the bot a member) for the demo's alerts."""

SINK_RECEIVER, SINK_TOKEN, SINK_CHANNEL = "demo-slack", "xoxb-demo", "#ml-oncall"
SLACK_RECEIVER = "slack"
PRICES = {"cpu_hour": 0.048, "gpu_hour": 0.0, "gb_hour": 0.006}
DRIFT_SHARE = 0.4
MIN_ACCURACY = 0.8
ROUTE_TIMINGS = {"group_wait": "10s", "group_interval": "30s", "repeat_interval": "1h"}
PIPELINE = "demo-training"
WIN_MARGIN = 0.02  # log loss per request
PLANNED_PAIRS = 1_000  # the demo's windows are small: ~110 pairs a minute


def _checks(spec: Mapping[str, Any]) -> list[str | dict[str, Any]]:
    """The task's default checks; the drifted share that counts as dataset drift is the
    policy's, and the sequential comparison is tightest at the demo's sample sizes."""
    own: dict[str, dict[str, Any]] = {
        "data_drift": {"metric": "data_drift", "options": {"drift_share": DRIFT_SHARE}},
        "champion_challenger_sequential": {
            "metric": "champion_challenger_sequential",
            "options": {"planned_n": PLANNED_PAIRS},
        },
    }
    return [own.get(key, key) for key in DEFAULT_CHECKS[Task(spec["task"])]]


def _monitor(name: str, spec: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": spec["name"],
        "window": "1m",
        "schedule": "10s",
        "label_delay": "5m",
        "backfill": "30m",  # catching up at start takes seconds (a run takes ~0.05-0.1s)
        "prices": PRICES,
        "checks": _checks(spec),
        **extra,
    }


MONITORS = [
    # 60 labelled predictions before accuracy counts: a window holds ~120 at 2 requests/s.
    _monitor("fraud-1m", FRAUD, segments=["country"], min_samples=60),
    _monitor("eta-1m", ETA),
]
DRIFTED = {"drifted_share": {"op": ">=", "value": DRIFT_SHARE}}
POLICIES: list[dict[str, Any]] = [
    {
        "name": "feature-drift",
        "condition": DRIFTED,
        "severity": "warning",
        "annotations": {
            "summary": "{model} {version}: {value} of its features drifted (alert at {threshold})"
        },
    },
    {
        "name": "fraud-accuracy",
        "model": FRAUD["name"],
        "aliases": ["champion"],
        "condition": {"threshold": {"metric": "accuracy", "op": "<", "value": MIN_ACCURACY}},
        "severity": "critical",
        "annotations": {
            "summary": "{model} {version} (champion): accuracy {value} (alert below {threshold})"
        },
    },
]


LOOP_POLICIES: list[dict[str, Any]] = [
    {
        "name": "fraud-drift-retrain",
        "model": FRAUD["name"],
        "aliases": ["champion"],
        "condition": DRIFTED,
        "severity": "info",
        "annotations": {
            "summary": f"{{model}} {{version}} (champion): {{value}} of its features drifted; "
            f"pipeline {PIPELINE} is asked to retrain (at most every 5 minutes)"
        },
        "actions": [
            "notify",  # on-call sees the loop at work, not only the pipeline
            {
                "retrain": {
                    "pipeline": PIPELINE,
                    "cooldown": "5m",  # short: a rerun of the demo retrains again
                    "training_data": {"window": "1h", "include": "the drifted traffic"},
                }
            },
        ],
    },
    {
        "name": "fraud-challenger-wins",
        "model": FRAUD["name"],
        "aliases": ["challenger"],
        "condition": {
            "challenger_beats_champion": {
                "metric": "log_loss",
                "test": "sequential",
                "margin": WIN_MARGIN,
            }
        },
        "severity": "info",
        "annotations": {
            "summary": "{model} {version} (challenger) beats the champion: log loss {value} "
            "lower since it arrived (always-valid, margin {threshold}); promoting it"
        },
        "actions": ["notify", {"promote": {"deploy": PIPELINE}}],
    },
]


def pipeline_spec(url: str, secret: str) -> dict[str, Any]:
    """The demo's training pipeline: the local receiver at ``url``, signed with ``secret``."""
    return {
        "name": PIPELINE,
        "url": url,
        "secret": secret,
        "max_age": "10m",
        "timeout": "5s",
        "training_data": {"source": "fraud predictions and labels", "format": "parquet"},
    }


def real_slack(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(token, channel) when both environment variables are set, else None."""
    env = os.environ if env is None else env
    token, channel = env.get(SLACK_TOKEN_ENV, ""), env.get(SLACK_CHANNEL_ENV, "")
    return (token, channel) if token and channel else None


def demo_config(
    sink_url: str,
    *,
    external_url: str = "http://127.0.0.1:8000",
    env: Mapping[str, str] | None = None,
    pipeline: tuple[str, str] | None = None,
) -> Config:
    """The demo's config: alerts to the sink at ``sink_url``, and to Slack if configured;
    with ``pipeline`` (its url and secret) the retrain and promotion policies too."""
    sink = {"token": SINK_TOKEN, "channel": SINK_CHANNEL, "base_url": sink_url}
    receivers: list[dict[str, Any]] = [{"name": SINK_RECEIVER, "slack": sink}]
    route: dict[str, Any] = {"receiver": SINK_RECEIVER, "group_by": ["model"], **ROUTE_TIMINGS}
    slack = real_slack(env)
    if slack is not None:
        token, channel = slack
        receivers.append({"name": SLACK_RECEIVER, "slack": {"token": token, "channel": channel}})
        route["routes"] = [
            {"receiver": SINK_RECEIVER, "continue": True},
            {"receiver": SLACK_RECEIVER},
        ]
    return Config.model_validate(
        {
            "models": [FRAUD, ETA],
            "monitors": MONITORS,
            "policies": POLICIES + (LOOP_POLICIES if pipeline else []),
            "pipelines": [pipeline_spec(*pipeline)] if pipeline else [],
            "receivers": receivers,
            "route": route,
            # Show every alert of a group: by default a critical alert mutes the same
            # model's warnings, which would hide the drift behind the accuracy alert.
            "inhibit_rules": [],
            "external_url": external_url,
        }
    )


def describe(config: Config) -> list[str]:
    """What the demo watches and where alerts go, for the console."""
    where = " and ".join(
        f"{r.slack.channel} ({'local sink, printed below' if r.name == SINK_RECEIVER else 'Slack'})"
        for r in config.receivers
        if r.slack is not None
    )
    lines = [
        "monitors: 1-minute windows evaluated every 10s (fraud also per country)",
        f"policies: feature-drift (warning: >= {DRIFT_SHARE:.0%} of a version's features "
        f"drifted), fraud-accuracy (critical: champion accuracy < {MIN_ACCURACY})",
    ]
    for p in config.pipelines:
        lines.append(
            f"retraining: fraud-drift-retrain (the champion drifted: signed webhook to "
            f"pipeline {p.name} at {p.url}), fraud-challenger-wins (a challenger's log loss is "
            f"lower than the champion's by > {WIN_MARGIN} on the sequential test: promote it, "
            f"webhook to {p.name})"
        )
    return [*lines, f"alerts: one threaded message per model in {where}"]
