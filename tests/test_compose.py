"""docker-compose.yml and the Dockerfile name only things that exist in the project.

There is no Docker engine on CI machines, so instead of starting the stack this
checks it: the file is valid against the Compose Specification JSON schema
(``tests/data/compose-spec.json``, vendored unchanged from
https://github.com/compose-spec/compose-spec, ``schema/compose-spec.json`` at commit
b2835e8acc1e42e7aecbc27a9bc4a1fc66ef21ba), every host path it mounts or builds from
exists, every command of the modelwatch image parses as a real CLI verb with real
options, every ``MODELWATCH_*`` variable it sets is a constant of
``modelwatch.settings``, and every ``service:port`` it or its mounted config files
name (Prometheus targets, the load balancer's upstream, health checks) is a port that
service listens on. Each check is shown to fail on a broken copy.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from modelwatch import settings
from modelwatch.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_]\w*)")
_LOOPBACK = re.compile(r"\b(?:127\.0\.0\.1|localhost):(\d+)")
_CONFIG_SUFFIXES = {".yml", ".yaml", ".conf", ".ini"}


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` substitution, with unset variables left unset."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group(2) in (":-", "-"):
            return m.group(3)
        return "unset"

    return _VAR.sub(sub, value)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield interpolate(node)
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


# --- the Dockerfile ------------------------------------------------------------


def dockerfile(path: Path) -> dict[str, Any]:
    """The final stage's ENTRYPOINT, CMD, HEALTHCHECK test, ENV names and COPY sources."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: dict[str, Any] = {"entrypoint": [], "cmd": [], "healthcheck": "", "env": [], "copy": []}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            out.update(entrypoint=[], cmd=[], healthcheck="", env=[])
        elif word in ("ENTRYPOINT", "CMD"):
            out[word.lower()] = json.loads(rest)
        elif word == "HEALTHCHECK":
            out["healthcheck"] = rest
        elif word == "ENV":
            out["env"] += re.findall(r"([A-Za-z_]\w*)=", rest)
        elif word == "COPY" and "--from" not in rest:
            out["copy"] += rest.split()[:-1]
    return out


# --- the modelwatch CLI --------------------------------------------------------


def parse_cli(args: list[str]) -> tuple[str, dict[str, Any]] | str:
    """``(verb path, option values)`` for a real command line, else what is wrong."""
    command: click.Command = cli
    path, rest = ["modelwatch"], list(args)
    while isinstance(command, click.Group):
        if not rest:
            return f"'{' '.join(path)}' needs a verb ({', '.join(sorted(command.commands))})"
        verb = rest.pop(0)
        sub = command.get_command(click.Context(command), verb)
        if sub is None:
            known = ", ".join(sorted(command.commands))
            return f"'{' '.join(path)}' has no verb {verb!r} (known: {known})"
        path.append(verb)
        command = sub
    try:
        ctx = command.make_context(" ".join(path), rest)
    except click.ClickException as exc:
        return f"{' '.join(path)}: {exc.format_message()}"
    return " ".join(path[1:]), dict(ctx.params)


# --- the compose file ----------------------------------------------------------


class ComposeCheck:
    """Everything wrong with a parsed compose file whose paths are relative to ``project``."""

    def __init__(self, doc: dict[str, Any], project: Path) -> None:
        self.doc = doc
        self.project = project
        self.services: dict[str, dict[str, Any]] = doc.get("services", {})
        self.problems: list[str] = []
        self.listens: dict[str, set[int]] = {}
        self.apis: set[str] = set()

    def run(self) -> list[str]:
        self.schema()
        for name, svc in self.services.items():
            self.paths(name, svc)
            self.environment(name, svc)
            self.depends_on(name, svc)
            self.listens[name] = self.listening_ports(name, svc)
        for name, svc in self.services.items():
            self.ports(name, svc)
            self.health(name, svc)
        self.references()
        return self.problems

    def schema(self) -> None:
        validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
        for err in validator.iter_errors(self.doc):
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            self.problems.append(f"schema: {where}: {err.message}")

    def _image(self, svc: dict[str, Any]) -> dict[str, Any] | None:
        build = svc.get("build")
        if build is None:
            return None
        spec = {"context": build} if isinstance(build, str) else build
        file = self.project / spec.get("context", ".") / spec.get("dockerfile", "Dockerfile")
        return dockerfile(file) if file.is_file() else None

    def _mounts(self, svc: dict[str, Any]) -> Iterator[tuple[str, str]]:
        """(host source, container target) of every bind mount."""
        for volume in svc.get("volumes", []):
            if isinstance(volume, str):
                source, _, target = interpolate(volume).partition(":")
                target = target.split(":")[0]
                if source.startswith((".", "/", "~")):
                    yield source, target
            elif volume.get("type") == "bind":
                yield volume["source"], volume["target"]

    def paths(self, name: str, svc: dict[str, Any]) -> None:
        build = svc.get("build")
        if build is not None:
            spec = {"context": build} if isinstance(build, str) else build
            context = self.project / spec.get("context", ".")
            if not (context / spec.get("dockerfile", "Dockerfile")).is_file():
                self.problems.append(f"{name}: build: no Dockerfile in {context}")
        for source, _ in self._mounts(svc):
            if not (self.project / source).exists():
                self.problems.append(f"{name}: mounts {source}, which does not exist")
        for volume in svc.get("volumes", []):
            named = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if volume_is_named(named) and named not in (self.doc.get("volumes") or {}):
                self.problems.append(f"{name}: volume {named!r} is not declared")

    def environment(self, name: str, svc: dict[str, Any]) -> None:
        env = svc.get("environment", {})
        names = [e.split("=")[0] for e in env] if isinstance(env, list) else list(env)
        image = self._image(svc)
        names += image["env"] if image else []
        documented = {getattr(settings, c) for c in settings.__all__ if c.startswith("ENV_")}
        for var in names:
            if var.startswith("MODELWATCH_") and var not in documented:
                self.problems.append(
                    f"{name}: sets {var}, which is not a constant in modelwatch/settings.py"
                )

    def depends_on(self, name: str, svc: dict[str, Any]) -> None:
        for other in svc.get("depends_on", []):
            if other not in self.services:
                self.problems.append(f"{name}: depends on {other!r}, which is not a service")

    def argv(self, svc: dict[str, Any]) -> list[str]:
        image = self._image(svc) or {"entrypoint": [], "cmd": []}
        entry = svc.get("entrypoint", image["entrypoint"])
        command = svc.get("command", image["cmd"])
        as_list = [*_as_args(entry), *_as_args(command)]
        return [interpolate(a) for a in as_list]

    def listening_ports(self, name: str, svc: dict[str, Any]) -> set[int]:
        listens = {int(str(p).split("/")[0]) for p in svc.get("expose", [])}
        if self._image(svc) is None:
            return listens
        argv = self.argv(svc)
        if argv[:1] != ["modelwatch"]:
            self.problems.append(f"{name}: runs {argv[:1]}, not the modelwatch CLI")
            return listens
        parsed = parse_cli(argv[1:])
        if isinstance(parsed, str):
            self.problems.append(f"{name}: command {argv[1:]}: {parsed}")
            return listens
        verb, params = parsed
        if verb == "serve":
            self.apis.add(name)
            for port in listens - {params["port"]}:
                self.problems.append(f"{name}: exposes {port} but serves on {params['port']}")
            listens = {params["port"]}
        return listens

    def ports(self, name: str, svc: dict[str, Any]) -> None:
        for entry in svc.get("ports", []):
            target = entry.get("target") if isinstance(entry, dict) else str(entry).split(":")[-1]
            port = int(str(target).split("/")[0])
            if port not in self.listens[name]:
                self.problems.append(f"{name}: publishes container port {port}, not listened on")

    def health(self, name: str, svc: dict[str, Any]) -> None:
        check = svc.get("healthcheck", {})
        if check.get("disable"):
            return
        image = self._image(svc)
        test = " ".join(_as_args(check.get("test", ""))) or (image or {}).get("healthcheck", "")
        for port in map(int, _LOOPBACK.findall(test)):
            if port not in self.listens[name]:
                where = "the image's HEALTHCHECK" if "test" not in check else "healthcheck"
                self.problems.append(f"{name}: {where} asks port {port}, not listened on")

    def _config_texts(self) -> Iterator[tuple[str, str, Any, set[str]]]:
        """(where, text, parsed YAML or None, the reading service's mount targets) of
        inline configs and mounted config files."""
        for key, config in (self.doc.get("configs") or {}).items():
            if "content" in config:
                yield f"configs.{key}", interpolate(config["content"]), None, set()
        for svc in self.services.values():
            targets = {target for _, target in self._mounts(svc)}
            for source, _ in self._mounts(svc):
                root = self.project / source
                for file in _files(root):
                    where = source if file == root else f"{source}/{file.relative_to(root)}"
                    text = file.read_text()
                    parsed = yaml.safe_load(text) if file.suffix in (".yml", ".yaml") else None
                    yield where, text, parsed, targets

    def references(self) -> None:
        """Every ``service:port`` named anywhere is a port that service listens on."""
        names = "|".join(re.escape(s) for s in self.services)
        pattern = re.compile(rf"(?<![\w.-])({names}):(\d+)\b")
        texts = [
            (f"services.{n}", text, None, set[str]())
            for n, svc in self.services.items()
            for text in _strings({k: v for k, v in svc.items() if k != "image"})
        ]
        for where, text, parsed, mounted in [*texts, *self._config_texts()]:
            for service, port in pattern.findall(text):
                if int(port) not in self.listens[service]:
                    listens = sorted(self.listens[service]) or "nothing"
                    self.problems.append(
                        f"{where}: names {service}:{port}, but {service} listens on {listens}"
                    )
            if isinstance(parsed, dict) and "scrape_configs" in parsed:
                self.prometheus(where, parsed, mounted)
            for provider in parsed.get("providers") or [] if isinstance(parsed, dict) else []:
                path = (provider.get("options") or {}).get("path")
                if path and not _covered(path, mounted):
                    self.problems.append(f"{where}: loads {path}, which is not mounted")

    def prometheus(self, where: str, config: dict[str, Any], mounted: set[str]) -> None:
        for rules in config.get("rule_files") or []:
            if not _covered(rules, mounted):
                self.problems.append(f"{where}: loads {rules}, which is not mounted")
        scraped = set()
        for job in config.get("scrape_configs") or []:
            for static in job.get("static_configs") or []:
                scraped |= {t.rsplit(":", 1)[0] for t in static.get("targets", [])}
            for dns in job.get("dns_sd_configs") or []:
                for host in dns.get("names", []):
                    scraped.add(host)
                    if host in self.services and dns.get("port") not in self.listens[host]:
                        self.problems.append(
                            f"{where}: discovers {host} on port {dns.get('port')}, "
                            f"but {host} listens on {sorted(self.listens[host])}"
                        )
        if self.apis and not scraped & self.apis:
            self.problems.append(f"{where}: scrapes none of the API services")


def _covered(path: str, mounted: set[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounted)


def volume_is_named(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~", "$"))


def _as_args(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix in _CONFIG_SUFFIXES else []
    if path.is_dir():
        return [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in _CONFIG_SUFFIXES]
    return []


def dockerignore_problems(patterns: list[str]) -> list[str]:
    """What the image build would miss: pyproject.toml, its readme or a package it installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", project["project"]["readme"]]
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed += sorted(
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and any(fnmatch.fnmatch(p.name, i) for i in includes)
    )
    active = [p.strip() for p in patterns if p.strip() and not p.startswith("#")]
    return [
        f".dockerignore leaves {name} out of the image's build context"
        for name in needed
        if any(fnmatch.fnmatch(name, pat.strip("/")) for pat in active)
    ]


# --- the tests -----------------------------------------------------------------


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def _problems(doc: dict[str, Any]) -> list[str]:
    return ComposeCheck(doc, ROOT).run()


def test_compose_file_names_only_real_paths_commands_variables_and_ports() -> None:
    assert _problems(_compose()) == []


def _verb(command: list[str]) -> tuple[str, dict[str, Any]]:
    parsed = parse_cli(command)
    assert not isinstance(parsed, str), parsed
    return parsed


def test_compose_file_runs_the_production_topology() -> None:
    services = _compose()["services"]
    verb, api = _verb(services["api"]["command"])
    # Replicas serve HTTP only: no scheduler, no migrations racing each other.
    assert verb == "serve" and not api["scheduler"] and not api["migrate"]
    assert _verb(services["worker"]["command"])[0] == "worker"
    assert _verb(services["migrate"]["command"])[0] == "db upgrade"
    assert _verb(services["demo"]["command"])[1]["api_url"]  # traffic to the stack's API
    for name in ("api", "worker"):
        assert services[name]["deploy"]["replicas"] >= 2
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"]
    assert services["demo"]["profiles"] == ["demo"]


def test_image_build_context_holds_every_installed_package() -> None:
    assert dockerignore_problems((ROOT / ".dockerignore").read_text().splitlines()) == []
    image = dockerfile(ROOT / "Dockerfile")
    assert image["entrypoint"] == ["modelwatch"]
    assert all((ROOT / src).exists() for src in image["copy"])
    assert not isinstance(parse_cli(image["cmd"]), str)


def test_dockerignore_check_reports_a_package_left_out() -> None:
    problems = dockerignore_problems(["collector", "tests"])
    assert problems == [".dockerignore leaves collector out of the image's build context"]


def _set(path: str, value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return mutate


API_CMD = ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate", "--no-scheduler"]
BROKEN = {
    "schema": (_set("services.api.deploy.replicas", [2]), "schema: services/api/deploy/replicas"),
    "unknown key": (_set("services.api.replica", 2), "schema: services/api: 'replica'"),
    "verb": (_set("services.worker.command", ["wokrer"]), "has no verb 'wokrer'"),
    "option": (
        _set("services.api.command", [*API_CMD, "--threads", "4"]),
        "No such option '--threads'",
    ),
    "option value": (
        _set("services.api.command", ["serve", "--port", "eighty"]),
        "Invalid value for '--port'",
    ),
    "variable": (
        _set("services.api.environment", {"MODELWATCH_DB_URL": "postgresql://x"}),
        "api: sets MODELWATCH_DB_URL, which is not a constant",
    ),
    "mount": (
        _set("services.prometheus.volumes", ["./prometheus/nope.yml:/etc/prometheus/x.yml"]),
        "prometheus: mounts ./prometheus/nope.yml, which does not exist",
    ),
    "build": (_set("services.migrate.build", "./nowhere"), "migrate: build: no Dockerfile"),
    "volume": (_set("volumes", {"pgdata": None}), "prometheus: volume 'promdata' is not declared"),
    "port": (
        _set("services.api.command", ["serve", "--host", "0.0.0.0", "--port", "9000"]),
        "configs.lb: names api:8000, but api listens on [9000]",
    ),
    "published": (_set("services.grafana.ports", ["3000:3001"]), "publishes container port 3001"),
    "healthcheck": (
        _set("services.worker.healthcheck", None),
        "worker: the image's HEALTHCHECK asks port 8000, not listened on",
    ),
    "depends_on": (_set("services.lb.depends_on", ["apl"]), "lb: depends on 'apl'"),
    "dashboards": (
        _set(
            "services.grafana.volumes",
            ["./grafana/provisioning:/etc/grafana/provisioning", "./grafana/dashboards:/dash"],
        ),
        "loads /var/lib/grafana/dashboards, which is not mounted",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checker_reports_a_broken_copy(case: str) -> None:
    mutate, expected = BROKEN[case]
    doc = copy.deepcopy(_compose())
    assert not [p for p in _problems(doc) if expected in p]
    mutate(doc)
    assert [p for p in _problems(doc) if expected in p], _problems(doc)


def test_checker_reports_a_scrape_target_on_the_wrong_port(tmp_path: Path) -> None:
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["/etc/prometheus/rules.yml"],
                "scrape_configs": [
                    {"job_name": "modelwatch", "static_configs": [{"targets": ["api:9100"]}]},
                    {"job_name": "sd", "dns_sd_configs": [{"names": ["api"], "port": 9200}]},
                ],
            }
        )
    )
    doc = copy.deepcopy(_compose())
    doc["services"]["prometheus"]["volumes"] = [f"{tmp_path}/prometheus.yml:/etc/prometheus/p.yml"]
    problems = _problems(doc)
    assert any("names api:9100, but api listens on [8000]" in p for p in problems), problems
    assert any("discovers api on port 9200" in p for p in problems), problems
    assert any("loads /etc/prometheus/rules.yml, which is not mounted" in p for p in problems)
