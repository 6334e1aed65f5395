"""Grafana provisioning and dashboards hang together: one datasource uid, fixed dashboard uids,
the provider's path, the model/version/alias variables on every dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
UIDS = {
    "fleet.json": "modelwatch-fleet",
    "model.json": "modelwatch-model",
    "service.json": "modelwatch-service",
}


def _boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    panels = list(board["panels"])
    for row in board["panels"]:
        panels += row.get("panels", [])
    return panels


def test_datasource_and_dashboard_provider() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "modelwatch.yaml").read_text()
    )
    [source] = datasources["datasources"]
    assert (source["uid"], source["type"]) == ("modelwatch-prometheus", "prometheus")
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "modelwatch.yaml").read_text()
    )
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_have_fixed_uids_variables_and_one_datasource() -> None:
    boards = _boards()
    assert {name: board["uid"] for name, board in boards.items()} == UIDS
    for name, board in boards.items():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["model", "version", "alias"], name
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == "modelwatch-prometheus", name
        panels = [p for p in _panels(board) if p["type"] != "row"]
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in panels:
            assert panel["datasource"]["uid"] == "modelwatch-prometheus", panel["title"]
            assert panel["targets"], f"{name} / {panel['title']}: no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), f"{name} / {panel['title']}"
