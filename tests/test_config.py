"""The YAML config: pydantic validation, ${ENV} secrets, errors naming file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelwatch.config import load_config
from modelwatch.errors import ConfigError
from modelwatch.webhooks import generate_secret

GOOD = """
models:
  - name: churn
    task: binary
    description: ${TEAM}
    features:
      - {name: age, type: numeric}
"""


def test_loads_models_and_expands_env(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(GOOD)
    config = load_config(path, env={"TEAM": "growth"})
    assert config.models[0].name == "churn"
    assert config.models[0].description == "growth"


def test_missing_env_var_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match=r"mw\.yaml: models\[0\]\.description: .*TEAM is not set"):
        load_config(path, env={})


def test_bad_value_names_file_key_and_value(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(GOOD.replace("binary", "binray"))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"TEAM": "x"})
    assert "mw.yaml: models[0].task:" in str(err.value)
    assert "'binray'" in str(err.value)


def test_unknown_section_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text("modles: []\n")
    with pytest.raises(ConfigError, match=r"mw\.yaml: modles: Extra inputs"):
        load_config(path, env={})
    path.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})


PIPELINES = """
pipelines:
  - {name: trainer, url: "http://127.0.0.1:9/train", secret: SECRET}
policies:
  - name: drift
    condition: {status: {metric: ks}}
    actions:
      - notify
      - {retrain: {pipeline: trainer}}
      - {promote: {deploy: deployer}}
"""


def test_a_policy_calling_an_unknown_pipeline_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "mw.yaml"
    path.write_text(PIPELINES.replace("SECRET", generate_secret()))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "mw.yaml: policies[0].actions[2].promote.deploy:" in str(err.value)
    assert "no pipeline named 'deployer' (known: ['trainer'])" in str(err.value)
    assert "top level" not in str(err.value) and "Value error" not in str(err.value)
