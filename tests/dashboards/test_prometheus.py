"""A real Prometheus scrapes a running modelwatch holding demo data; every Grafana panel query
and every recording rule must parse and return data. promtool checks the rules and config.

Needs the Debian ``prometheus`` package (``scripts/system-deps``): skipped where it is
missing, failed under ``CI=true``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerts.service import AlertingService
from demo.config import SINK_RECEIVER, demo_config
from demo.simulator import Simulator
from evaluators.checks import ESTIMATION_CHECKS, LOSS_ESTIMATION_CHECKS
from modelwatch.app import create_app
from modelwatch.config import Config
from modelwatch.domain import Alias
from modelwatch.monitors import CheckSpec
from modelwatch.serving import BackgroundServer
from modelwatch.settings import Settings
from modelwatch.store.engine import Store
from modelwatch.store.migrate import upgrade
from tests.alerts.helpers import RecordingNotifier
from tests.conftest import IN_CI
from tests.conftest import free_port as _free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules.yml"
COMPOSE_CONFIG = ROOT / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
JOB = "modelwatch"  # the job name the dashboards and rules select on
VARIABLES = {"model": "fraud", "version": "v1", "alias": "champion"}
INTERVALS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/system-deps installs it)"
        if IN_CI:
            pytest.fail(f"{message}; it is required in CI")
        pytest.skip(message)
    return path


def test_rules_pass_promtool() -> None:
    done = subprocess.run(
        [_binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_config_passes_promtool(tmp_path: Path) -> None:
    config = yaml.safe_load(COMPOSE_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert config["scrape_configs"][0]["job_name"] == JOB
    config["rule_files"] = [str(RULES)]  # where the container mounts it, here
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [_binary("promtool"), "check", "config", str(copy)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


class _EtaChallenger:
    """The demo's SDK client, also answering every delivery-eta request as v2 (challenger)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def log_prediction(self, model: str, version: str, *args: Any, **kwargs: Any) -> bool:
        ok: bool = self._client.log_prediction(model, version, *args, **kwargs)
        if model == "delivery-eta":
            request_id, features, prediction = args
            self._client.log_prediction(
                model, "v2", request_id, features, prediction * 1.1, **kwargs
            )
        return ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _with_estimates(config: Config) -> Config:
    """The demo's monitors list their checks, so the label-free estimates the defaults would
    add are not among them: added here, for the model dashboard's estimate panel."""
    extra = {"fraud": ESTIMATION_CHECKS, "delivery-eta": LOSS_ESTIMATION_CHECKS}
    monitors = [
        m.model_copy(
            update={"checks": [*m.checks, *(CheckSpec(metric=k) for k in extra.get(m.model, []))]}
        )
        for m in config.monitors
    ]
    return config.model_copy(update={"monitors": monitors})


def _demo_service(tmp_path: Path) -> Iterator[str]:
    """modelwatch on SQLite with 15 minutes of demo traffic (a drift in its last 6), evaluated
    and alerted on; yields the API's host:port."""
    store = Store(f"sqlite:///{tmp_path}/demo.db")
    upgrade(store)
    config = _with_estimates(demo_config("http://127.0.0.1:9"))
    app = create_app(Settings(database_url=store.url), store, config)
    server = BackgroundServer(app, "127.0.0.1", _free_port())
    server.start()
    try:
        sim = Simulator(server.url, history_s=900, say=lambda _: None)
        sim.register()
        registry = app.state.registry
        registry.set_alias(registry.get_model("fraud"), Alias.CHALLENGER, "v2", "test")
        r = httpx.post(
            f"{server.url}/v1/models/delivery-eta/versions",
            json={"version": "v2", "alias": "challenger"},
        )
        assert r.status_code == 201, r.text
        sim.client = _EtaChallenger(sim.client)  # type: ignore[assignment]
        sim.inject_drift(sim.clock + 540, 3600)
        sim.backfill()
        sim.close()
        evaluation = app.state.evaluation
        for monitor in evaluation.monitors.list():
            evaluation.plan(monitor)
        while evaluation.run_one() is not None:
            pass
        # The demo's alerting, delivering to a recorder; its second cycle is a minute later,
        # past the route's group_wait, so the grouped notification is written and sent.
        now = [datetime.now(UTC)]
        alerting = AlertingService(
            store,
            registry,
            config,
            "test",
            notifiers={SINK_RECEIVER: RecordingNotifier()},
            clock=lambda: now[0],
        )
        alerting.cycle()
        now[0] += timedelta(minutes=1)
        alerting.cycle()
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop()
        store.dispose()


def _start_prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    binary = _binary("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A Prometheus that has scraped the demo service at least three times."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    service = _demo_service(tmp_path)
    target = next(service)
    prom = _start_prometheus(tmp_path, target)
    url = next(prom)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            _wait_for_scrapes(client, tmp_path / "prometheus.log")
            yield client
    finally:
        prom.close()
        service.close()


def _wait_for_scrapes(client: httpx.Client, log: Path, timeout: float = 25.0) -> None:
    query = f'count_over_time(up{{job="{JOB}"}}[1m]) >= 3 and up{{job="{JOB}"}} == 1'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = client.get("/api/v1/query", params={"query": query})
            # Until its storage is open Prometheus answers 503 in plain text.
            if response.status_code == 200:
                body = response.json()
                if body["status"] == "success" and body["data"]["result"]:
                    return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.3)
    pytest.fail(f"Prometheus did not scrape modelwatch in {timeout}s: {log.read_text()[-2000:]}")


def substitute(expr: str) -> str:
    for name, value in {**INTERVALS, **VARIABLES}.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def _panel_targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) of every panel query, rows' panels included."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = list(board["panels"])
        for row in board["panels"]:
            panels += row.get("panels", [])
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def _query(client: httpx.Client, expr: str) -> dict[str, Any]:
    r = client.get("/api/v1/query", params={"query": expr})
    body: dict[str, Any] = r.json()
    return body


def test_every_dashboard_panel_query_returns_data(prometheus: httpx.Client) -> None:
    targets = _panel_targets()
    assert len(targets) > 40 and {d for d, _, _ in targets} == {p.name for p in DASHBOARDS}
    problems = []
    for board, title, expr in targets:
        query = substitute(expr)
        assert "$" not in query, f"{board} / {title}: unknown variable in {expr!r}"
        body = _query(prometheus, query)
        if body["status"] != "success":
            problems.append(f"{board} / {title}: {body.get('error')} in {query!r}")
        elif not body["data"]["result"]:
            problems.append(f"{board} / {title}: no data for {query!r}")
    assert not problems, "\n".join(problems)


def test_template_variables_list_the_demo_values(prometheus: httpx.Client) -> None:
    pattern = re.compile(r"^label_values\((?P<selector>.+), *(?P<label>\w+)\)$")
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert set(variables) == set(VARIABLES), path.name
        for name, variable in variables.items():
            query = variable["query"]["query"]
            match = pattern.match(query)
            assert match and match["label"] == name, f"{path.name}: {query}"
            r = prometheus.get(
                f"/api/v1/label/{name}/values", params={"match[]": substitute(match["selector"])}
            )
            assert VARIABLES[name] in r.json()["data"], f"{path.name}: {query}"


def test_every_recording_rule_returns_data(prometheus: httpx.Client) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    recorded = [rule for rule in rules if "record" in rule]
    assert len(recorded) >= 5
    problems = []
    for rule in recorded:
        body = _query(prometheus, rule["expr"])
        if body["status"] != "success" or not body["data"]["result"]:
            problems.append(f"{rule['record']}: {body.get('error') or 'no data'}")
    for rule in rules:
        if "alert" in rule:  # alerting rules need not fire, but must parse against the data
            body = _query(prometheus, rule["expr"])
            if body["status"] != "success":
                problems.append(f"{rule['alert']}: {body.get('error')}")
    assert not problems, "\n".join(problems)
    # Prometheus evaluates the rules file itself too: the recordings become series.
    body = _query(prometheus, "modelwatch:breaching_figures:sum")
    assert body["data"]["result"]
