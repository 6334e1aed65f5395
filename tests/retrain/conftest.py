"""Fixtures for retraining tests: a pipeline receiver and the API wired to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from modelwatch.app import create_app
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from tests.alerts.helpers import Results
from tests.retrain.helpers import PipelineReceiver, World, retrain_config


@pytest.fixture
def receiver() -> Iterator[PipelineReceiver]:
    with PipelineReceiver() as hook:
        yield hook


@dataclass
class Loop:
    """The API with a ``trainer`` pipeline at ``receiver``; ``world`` drives its services."""

    api: TestClient
    world: World
    receiver: PipelineReceiver

    def request_retrain(self) -> str:
        """Drift fires the policy; the webhook reaches the pipeline; returns its retrain_id."""
        self.world.drift()
        self.world.service.cycle()
        retrain_id: str = self.receiver.requests[-1].json()["data"]["retrain_id"]
        return retrain_id


@pytest.fixture
def loop(store: Store, settings: Settings, receiver: PipelineReceiver) -> Iterator[Loop]:
    results = Results(store)  # churn: v1 champion, v2 challenger
    with TestClient(create_app(settings, store, retrain_config(receiver.url))) as api:
        state = api.app.state  # type: ignore[attr-defined]
        yield Loop(api, World(store, results, state.alerting, state.retrain), receiver)
