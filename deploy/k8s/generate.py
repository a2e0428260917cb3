"""Writes the Kubernetes base (deploy/k8s/base/*.yaml) from the table of roles below.

Every bus process is the same image; its role is its command. Each role gets a
Deployment (probes on /healthz and /readyz of bus's HTTP server, which every role serves,
the console included; requests and limits; a grace period longer
than the drain deadline), a PodDisruptionBudget and, for a consumer group, a KEDA
ScaledObject on its Kafka lag whose ceiling is the partition count (a replica beyond it
would own no partition). The files are committed; ``tests/deploy/test_static.py`` checks
they equal this script's output and validates them.

    python deploy/k8s/generate.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BASE = Path(__file__).resolve().parent / "base"
PARTITIONS = 6  # BUS_KAFKA_DEFAULT_PARTITIONS / BUS_PARTITIONS in config.yaml
DRAIN_DEADLINE_S = 10  # BUS_SHUTDOWN_DEADLINE_S in config.yaml
CLOSE_BUDGET_S = 5  # bus.runner.CLOSE_BUDGET_S: closing stores and the transport
GRACE_S = DRAIN_DEADLINE_S + CLOSE_BUDGET_S + 15
PORT = 9400
PASSWORD_DIR = "/var/run/secrets/bus"
SECRET_DIR = "/var/run/secrets/bus-files"
CONSOLE_PORT = 8081
HANDLER_APPS = [
    "handlers.identity.handler:commands_app",
    "handlers.licensing.handler:commands_app",
    "handlers.notifications.handler:commands_app",
    "handlers.payroll.handler:app",
    "handlers.repositories.handler:app",
]


@dataclass(frozen=True)
class Role:
    """One Deployment: a handler app, the coordinator or the ingress."""

    name: str
    command: list[str]
    #: The consumer group KEDA watches (None: not a consumer, no ScaledObject).
    group: str | None
    #: The topic whose lag scales it (None: every topic the group consumes).
    topic: str | None = None
    min_replicas: int = 1
    component: str = "handler"
    saga_store: bool = False
    #: Secret name -> mount directory, e.g. a token file.
    secret_files: dict[str, str] = field(default_factory=dict)
    #: The container port of its HTTP server (/metrics, /healthz, /readyz and whatever the
    #: role adds: the ingress's /events, the console's pages) and that port's name.
    port: int = PORT
    port_name: str = "metrics"


ROLES = [
    Role("identity-commands", ["run", "handlers.identity.handler:commands_app"],
         "identity-commands", "identity.commands"),
    Role("licensing-commands", ["run", "handlers.licensing.handler:commands_app"],
         "licensing-commands", "licensing.commands"),
    Role("notifications-commands", ["run", "handlers.notifications.handler:commands_app"],
         "notifications-commands", "notifications.commands"),
    Role("payroll", ["run", "handlers.payroll.handler:app"], "payroll", "payroll.commands"),
    Role("repositories", ["run", "handlers.repositories.handler:app"],
         "repositories", "repositories.commands"),
    # the coordinator consumes the triggers and every reply topic: lag over all of them
    # the shipped definitions (`bus sagas run`'s default): onboarding v2 and v1, the
    # offboarding and their equipment child sagas
    Role("coordinator", ["sagas", "run"],
         "sagas", None, min_replicas=2, component="coordinator", saga_store=True),
    # /events and /hooks/hr on the one HTTP server (port `metrics`, 9400) beside /metrics
    Role("ingress", ["ingress", "handlers.hr.webhook", "--webhooks", "handlers.hr.webhook:ingress"],
         None, min_replicas=2, component="ingress",
         secret_files={"bus-ingress-tokens": f"{SECRET_DIR}/ingress"}),
    # its pages, /metrics, /healthz and /readyz (the saga store answers) on port `http`
    Role("console", ["console", *HANDLER_APPS, f"--tokens-file={SECRET_DIR}/console/tokens.toml",
                     "--host=0.0.0.0", f"--port={CONSOLE_PORT}"],
         None, component="console", saga_store=True,
         secret_files={"bus-console-tokens": f"{SECRET_DIR}/console"},
         port=CONSOLE_PORT, port_name="http"),
]  # fmt: skip


def labels(role: Role) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": role.name,
        "app.kubernetes.io/component": role.component,
        "app.kubernetes.io/part-of": "bus",
    }


def container(role: Role) -> dict[str, Any]:
    port = role.port_name
    probe = {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10,
             "timeoutSeconds": 3, "failureThreshold": 3}  # fmt: skip
    env: list[dict[str, Any]] = [
        # only read when BUS_KAFKA_SECURITY_PROTOCOL is SASL_*; absent in the plain overlay
        {"name": "BUS_KAFKA_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": "bus-kafka", "key": "sasl-password", "optional": True}}},
    ]  # fmt: skip
    mounts: list[dict[str, Any]] = []
    if role.saga_store:
        env.append({"name": "BUS_SAGA_STORE_PASSWORD_FILE", "value": f"{PASSWORD_DIR}/password"})
        mounts.append({"name": "saga-store-password", "mountPath": PASSWORD_DIR, "readOnly": True})
    if "bus-ingress-tokens" in role.secret_files:
        path = f"{role.secret_files['bus-ingress-tokens']}/tokens.toml"
        env.append({"name": "BUS_INGRESS_TOKENS_FILE", "value": path})
        # the HR system's signing secret (handlers/hr/webhook.py reads this variable)
        env.append({"name": "HR_WEBHOOK_SECRET", "valueFrom": {"secretKeyRef": {
            "name": "bus-ingress-tokens", "key": "hr-webhook-secret"}}})  # fmt: skip
    for secret, directory in role.secret_files.items():
        mounts.append({"name": secret, "mountPath": directory, "readOnly": True})
    ports = [{"name": role.port_name, "containerPort": role.port}]
    return {
        "name": "bus",
        "image": "bus",  # the overlay's `images:` sets repository and tag
        "args": role.command,
        "ports": ports,
        "envFrom": [{"configMapRef": {"name": "bus-config"}}],
        "env": env,
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": probe,
        "readinessProbe": {
            **probe,
            "httpGet": {"path": "/readyz", "port": port},
            "failureThreshold": 2,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def deployment(role: Role) -> dict[str, Any]:
    volumes = (
        [{"name": "saga-store-password", "secret": {"secretName": "bus-saga-store",
          "items": [{"key": "password", "path": "password"}]}}]
        if role.saga_store else []
    )  # fmt: skip
    # .toml: a token file's suffix says its format (anything else is read as JSON)
    files = {"bus-ingress-tokens": "tokens.toml", "bus-console-tokens": "tokens.toml"}
    volumes += [{"name": secret, "secret": {"secretName": secret,
                 "items": [{"key": files[secret], "path": files[secret]}]}}
                for secret in role.secret_files]  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": role.name, "labels": labels(role)},
        "spec": {
            "replicas": role.min_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": role.name}},
            "template": {
                "metadata": {
                    "labels": labels(role),
                    # for a Prometheus that discovers pods by annotation; the PodMonitor
                    # (podmonitor.yaml) serves the Prometheus Operator
                    "annotations": scrape_annotations(role),
                },
                "spec": {
                    # drain (BUS_SHUTDOWN_DEADLINE_S) + closing the transport, with room
                    "terminationGracePeriodSeconds": GRACE_S,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container(role)],
                    "volumes": volumes,
                },
            },
        },
    }


def scrape_annotations(role: Role) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(role.port),
        "prometheus.io/path": "/metrics",
    }


def disruption_budget(role: Role) -> dict[str, Any]:
    # one pod at a time: its partitions move to the others while it drains
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": role.name, "labels": labels(role)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": role.name}},
        },
    }


def scaled_object(role: Role) -> dict[str, Any]:
    metadata: dict[str, str] = {
        "bootstrapServers": "kafka:9092",  # the overlay patches it with the real brokers
        "consumerGroup": str(role.group),
        "lagThreshold": "100",
        "offsetResetPolicy": "earliest",
    }
    if role.topic:
        metadata["topic"] = role.topic
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": role.name, "labels": labels(role)},
        "spec": {
            "scaleTargetRef": {"name": role.name},
            "minReplicaCount": role.min_replicas,
            # a replica beyond the partition count would own no partition
            "maxReplicaCount": PARTITIONS,
            "cooldownPeriod": 300,
            "triggers": [{"type": "kafka", "metadata": metadata}],
        },
    }


def documents(role: Role) -> list[dict[str, Any]]:
    docs = [deployment(role), disruption_budget(role)]
    if role.group:
        docs.append(scaled_object(role))
    return docs


def render(docs: list[dict[str, Any]]) -> str:
    header = "# Written by deploy/k8s/generate.py: edit the script, not this file.\n"
    return header + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def files() -> dict[str, str]:
    """File name under base/ -> content, for every role."""
    return {f"{role.name}.yaml": render(documents(role)) for role in ROLES}


def main() -> None:
    for name, text in files().items():
        (BASE / name).write_text(text)


if __name__ == "__main__":
    main()
