"""The YAML config file: validated by pydantic, ``${ENV_VAR}`` for secrets.

Errors name the file, the key path and the bad value, e.g.
``modelwatch.yaml: models[0].task: Input should be 'binary', 'multiclass' or
'regression' (got 'binray')``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelwatch.archive import ArchiveSpec
from modelwatch.cloudevents_spec import CloudEventsSpec
from modelwatch.collectors import OtlpSpec, ScrapeTarget
from modelwatch.domain import ModelSpec
from modelwatch.errors import ConfigError
from modelwatch.label_sources import LabelSourceSpec
from modelwatch.mlflow_spec import MlflowSpec
from modelwatch.monitors import MonitorSpec
from modelwatch.pipelines import PipelineSpec, pipeline_refs
from modelwatch.policies import (
    DEFAULT_INHIBIT,
    DEFAULT_ROUTE,
    InhibitRule,
    PolicySpec,
    ReceiverSpec,
    RouteSpec,
)
from modelwatch.retention import RetentionSpec

__all__ = ["Config", "load_config"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Config(BaseModel):
    """Everything a deployment declares; later capabilities add their sections here."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(default_factory=list)
    monitors: list[MonitorSpec] = Field(default_factory=list)
    policies: list[PolicySpec] = Field(default_factory=list)
    receivers: list[ReceiverSpec] = Field(default_factory=list)
    route: RouteSpec = DEFAULT_ROUTE
    inhibit_rules: list[InhibitRule] = Field(default_factory=lambda: list(DEFAULT_INHIBIT))
    external_url: str = Field("http://127.0.0.1:8000", description="links in notifications")
    otlp: OtlpSpec = Field(default_factory=OtlpSpec, description="OTLP metrics -> usage")
    cloudevents: CloudEventsSpec = Field(
        default_factory=lambda: CloudEventsSpec.model_validate({}),
        description="request loggers' CloudEvents -> events",
    )
    scrape: list[ScrapeTarget] = Field(default_factory=list, description="Prometheus targets")
    pipelines: list[PipelineSpec] = Field(default_factory=list)
    retention: RetentionSpec = Field(
        default_factory=lambda: RetentionSpec.model_validate({}),
        description="how long data stays in the hot store",
    )
    archive: ArchiveSpec | None = Field(
        None, description="where closed days of raw data are archived as Parquet"
    )
    label_sources: list[LabelSourceSpec] = Field(
        default_factory=list, description="ground truth pulled on a schedule"
    )
    mlflow: MlflowSpec | None = Field(None, description="follow MLflow's model registry")

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [r.name for r in self.receivers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"receivers: duplicate names {dupes}")
        for path, receiver in _route_receivers(self.route, "route"):
            if receiver is not None and receiver not in names:
                raise ValueError(
                    f"{path}.receiver: no receiver named {receiver!r} (known: {names})"
                )
        self._check_pipelines()
        sources = [s.name for s in self.label_sources]
        dupes = sorted({n for n in sources if sources.count(n) > 1})
        if dupes:
            raise ValueError(f"label_sources: duplicate names {dupes}")
        policy_names = [p.name for p in self.policies]
        dupes = sorted({n for n in policy_names if policy_names.count(n) > 1})
        if dupes:
            raise ValueError(f"policies: duplicate names {dupes}")
        return self

    def _check_pipelines(self) -> None:
        names = [p.name for p in self.pipelines]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pipelines: duplicate names {dupes}")
        for i, policy in enumerate(self.policies):
            for loc, wanted in pipeline_refs(policy.actions):
                if wanted not in names:
                    path = _loc(("policies", i, *loc))
                    raise ValueError(f"{path}: no pipeline named {wanted!r} (known: {names})")


def _route_receivers(route: RouteSpec, path: str) -> list[tuple[str, str | None]]:
    out = [(path, route.receiver)]
    for i, child in enumerate(route.routes):
        out += _route_receivers(child, f"{path}.routes[{i}]")
    return out


def _expand(node: Any, env: Mapping[str, str], path: str, file: str) -> Any:
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{file}: {path}: environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(sub, node)
    if isinstance(node, list):
        return [_expand(v, env, f"{path}[{i}]", file) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {
            k: _expand(v, env, f"{path}.{k}" if path else str(k), file) for k, v in node.items()
        }
    return node


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections")
    expanded = _expand(raw, os.environ if env is None else env, "", file)
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"] and err["type"] == "value_error":
                # A whole-config check (cross references) names its own keys.
                lines.append(f"{file}: {err['ctx']['error']}")
                continue
            value = f" (got {err['input']!r})" if not isinstance(err["input"], dict | list) else ""
            lines.append(f"{file}: {_loc(err['loc'])}: {err['msg']}{value}")
        raise ConfigError("\n".join(lines)) from None
