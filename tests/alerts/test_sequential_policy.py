"""A bad challenger_beats_champion is refused by name: a 422 with the field path from
/v1/policies on both stores, and config load naming the file, the key and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from modelwatch.cli import cli


def _policy(condition: dict[str, Any]) -> dict[str, Any]:
    return {"name": "wins", "condition": {"challenger_beats_champion": condition}}


@pytest.mark.parametrize(
    ("condition", "field", "said"),
    [
        ({"test": "weekly"}, "test", "'sequential' or 'window'"),
        ({"alpha": 1.5}, "alpha", "less than 1"),
        ({"alpha": 0}, "alpha", "greater than 0"),
        ({"metric": "f1"}, None, "metric 'f1' has no sequential test"),
    ],
)
def test_a_bad_condition_is_a_422_naming_the_field(
    client: TestClient, condition: dict[str, Any], field: str | None, said: str
) -> None:
    r = client.post("/v1/policies", json=_policy(condition))
    assert r.status_code == 422, r.text
    errors = {tuple(e["loc"]): e["msg"] for e in r.json()["errors"]}
    where = ("body", "condition", "challenger_beats_champion", *((field,) if field else ()))
    assert where in errors and said in errors[where], errors
    assert client.get("/v1/policies").json()["policies"] == []


def test_good_conditions_are_stored(client: TestClient) -> None:
    sequential = _policy({"metric": "log_loss", "alpha": 0.01, "margin": 0.02})
    assert client.post("/v1/policies", json=sequential).status_code == 201
    window = {**_policy({"metric": "f1", "test": "window"}), "name": "f1-wins"}
    assert client.post("/v1/policies", json=window).status_code == 201


def test_config_load_names_the_file_key_and_value(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(
        "policies:\n  - name: p\n"
        "    condition: {challenger_beats_champion: {metric: accuracy, test: hourly}}\n"
    )
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code != 0
    assert f"{path}: policies[0].condition.challenger_beats_champion.test:" in result.output
    assert "'hourly'" in result.output
