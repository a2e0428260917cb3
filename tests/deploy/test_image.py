"""The container image, for real: built offline, run against a broker, stopped mid-burst.

A private ``dockerd`` (tests/deploy/docker_host.py) builds deploy/Dockerfile on a Debian
base made with debootstrap (no registry is reachable), from a wheelhouse made here. A
handler container (``bus run handlers.identity.handler:commands_app``) runs with
``--network host`` against the session's Tansu broker. It must answer ``/healthz`` and
``/metrics`` from inside, handle commands, and on ``docker stop`` in the middle of a burst
drain, exit 0 as PID 1, and lose nothing: a second container finishes the rest, and every
command has its reply. Hires posted over HTTP to the ingress container (CloudEvents, a
token file mounted as deploy/compose.yaml does) complete their onboardings through
containers: the five handler apps in one, two coordinators on the test PostgreSQL; the
ingress's ``/metrics`` counts them, and the console container on the same store answers
``/healthz``, ``/readyz`` and ``/metrics`` from inside. The daemon leaves no process,
mount, link or firewall rule behind.

Docker and debootstrap are installed with apt when missing. Without them the tests skip,
except with CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus import Publisher, hash_token
from bus.codec import decode
from bus.devbroker import DevBroker, free_port
from bus.transports.kafka import KafkaTransport
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import CreateAccount
from tests.conftest import kafka_test_config
from tests.deploy.docker_host import (
    DockerUnavailableError,
    PrivateDocker,
    ensure_base_tar,
    ensure_tools,
    host_footprint,
)
from tests.waiting import wait_until, wait_until_blocking

pytestmark = [pytest.mark.docker, pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
BASE = "bus-test-base:bookworm"
IMAGE = "bus:test"
APP = "handlers.identity.handler:commands_app"
PROVISIONED = "identity.account.provisioned.v1"
DEADLINE_S = 10  # BUS_SHUTDOWN_DEADLINE_S of the containers
# Tansu's group joins are slow with Kafka's default timeouts (tests/conftest.py)
KAFKA_ENV = {
    "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "BUS_KAFKA_REQUEST_TIMEOUT_MS": "15000",
    "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
    "BUS_KAFKA_AUTO_ENSURE_TOPICS": "true",
}


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDocker]:
    try:
        ensure_tools()
    except DockerUnavailableError as exc:
        if IN_CI:
            pytest.fail(f"docker is not available: {exc}")
        pytest.skip(f"docker is not available: {exc}")
    parent = tmp_path_factory.mktemp("docker")
    before = host_footprint(parent)
    with PrivateDocker.start(parent) as daemon:
        assert host_footprint(parent).mounts, "the footprint sees no mount of a running daemon"
        yield daemon
    after = host_footprint(parent)
    assert daemon.process.poll() is not None, "dockerd still running"
    assert after.links == before.links, f"links left behind: {after.links ^ before.links}"
    assert after.iptables == before.iptables, "firewall rules changed"
    assert after.mounts == before.mounts, f"mounts left behind: {after.mounts ^ before.mounts}"


def build_wheelhouse(out: Path) -> None:
    """The bus wheel from this checkout and its dependencies as manylinux wheels for 3.11."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(out), str(ROOT)], check=True, timeout=600)
    (wheel,) = out.glob("bus-*.whl")
    subprocess.run(
        [*pip, "download", "--only-binary=:all:", "--platform", "manylinux_2_17_x86_64",
         "--python-version", "3.11", "--implementation", "cp", "-d", str(out), str(wheel)],
        check=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def image(docker: PrivateDocker, tmp_path_factory: pytest.TempPathFactory) -> str:
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(wheelhouse)
    docker.load_base(ensure_base_tar(), BASE)
    docker(
        "build", "--network", "none", "--build-arg", f"BASE={BASE}",
        "-f", str(ROOT / "deploy" / "Dockerfile"), "-t", IMAGE, str(wheelhouse),
        timeout=900,
    )  # fmt: skip
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    print(f"\nimage {IMAGE} on {BASE}: {size / 1e6:.0f} MB")
    return IMAGE


def run_handler(
    docker: PrivateDocker,
    image: str,
    broker: DevBroker,
    name: str,
    *command: str,
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
) -> int:
    """Start a container of ``image`` on the host network (default: the handler); its HTTP
    port (``BUS_HTTP_PORT``, where the image's HEALTHCHECK looks; ``--port=PORT`` in
    ``command`` becomes it too). ``mounts``: host file -> path inside, read-only."""
    port = free_port()
    env = {**KAFKA_ENV, "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "BUS_HTTP_PORT": str(port), "BUS_SHUTDOWN_DEADLINE_S": str(DEADLINE_S), **(env or {})}  # fmt: skip
    flags = [f"--env={k}={v}" for k, v in env.items()]
    flags += [f"--volume={host}:{inside}:ro" for host, inside in (mounts or {}).items()]
    command = tuple(f"--port={port}" if arg == "--port=PORT" else arg for arg in command)
    docker("run", "--detach", "--name", name, "--network", "host", "--health-interval", "1s",
           *flags, image, *(command or ("run", APP)))  # fmt: skip
    return port


def inside(docker: PrivateDocker, name: str, port: int, path: str) -> str:
    """GET ``path`` from inside the container, with the image's own Python."""
    code = (
        "import urllib.request as u; "
        f"print(u.urlopen('http://127.0.0.1:{port}{path}', timeout=5).read().decode())"
    )
    return docker("exec", name, "python3", "-c", code).stdout


def health(docker: PrivateDocker, name: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()


def wait_healthy(docker: PrivateDocker, name: str, *, timeout_s: float = 120) -> None:
    """Until the image's HEALTHCHECK passes in ``name``; a timeout shows its logs."""
    try:
        wait_until_blocking(lambda: health(docker, name), until=lambda s: s == "healthy",
                            timeout_s=timeout_s, what=f"{name} to be healthy")  # fmt: skip
    except AssertionError as exc:
        logs = docker("logs", "--tail", "40", name, check=False)
        raise AssertionError(f"{exc}\n{name}'s log:\n{logs.stdout}{logs.stderr}") from None


class Replies:
    """Employee ids of every ``identity.account.provisioned.v1`` read from the start."""

    def __init__(self, transport: KafkaTransport, prefix: str) -> None:
        self.transport = transport
        self.prefix = prefix
        self.ids: list[str] = []
        self.consumer = transport.consumer(["identity.events"], group=None)

    async def read(self) -> int:
        batches = await self.consumer.fetch(max_records=1000, timeout_s=0.2)
        for records in batches.values():
            for record in records:
                env = decode(record.headers, record.value)
                key = (record.key or b"").decode()
                if env.type == PROVISIONED and key.startswith(self.prefix):
                    self.ids.append(key)
        return len(set(self.ids))


@pytest.fixture
async def kafka(kafka_broker: DevBroker) -> AsyncIterator[KafkaTransport]:
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    yield transport
    await transport.stop()


def commands(prefix: str, n: int) -> list[CreateAccount]:
    """``n`` commands with distinct names: the simulated directory finds a free login by
    scanning every account per try, so thousands of equal names would make each command
    cost thousands of scans (a CPU-bound handler that starves the event loop)."""
    return [
        CreateAccount(employee_id=f"{prefix}{i:05d}", full_name=f"{prefix} {_letters(i)}")
        for i in range(n)
    ]


def _letters(i: int) -> str:
    return "".join(chr(ord("a") + int(d)) for d in f"{i:06d}")


async def test_a_handler_container_is_healthy_serves_metrics_and_handles_commands(
    docker: PrivateDocker, image: str, kafka_broker: DevBroker, kafka: KafkaTransport
) -> None:
    name = "bus-handler-smoke"
    port = run_handler(docker, image, kafka_broker, name)
    try:
        wait_until_blocking(lambda: health(docker, name), until=lambda s: s == "healthy",
                            timeout_s=90, what="the image's HEALTHCHECK to pass")  # fmt: skip
        assert '"healthy":true' in inside(docker, name, port, "/healthz")
        prefix = f"smoke-{uuid.uuid4().hex[:8]}-"
        await Publisher(kafka, source="bus://test").publish_many(commands(prefix, 5))
        replies = Replies(kafka, prefix)
        await replies.consumer.start()
        try:
            await wait_until(replies.read, until=lambda n: n == 5, timeout_s=60,
                             what="replies to the 5 commands")  # fmt: skip
        finally:
            await replies.consumer.stop()
        metrics = inside(docker, name, port, "/metrics")
        consumed = re.findall(r'^bus_messages_consumed_total\{[^}]*app="identity-commands"[^}]*\} (\S+)',
                              metrics, re.M)  # fmt: skip
        assert sum(float(v) for v in consumed) >= 5, metrics[-2000:]
    finally:
        docker("rm", "--force", name, check=False)


async def test_docker_stop_mid_burst_drains_exits_0_and_loses_nothing(
    docker: PrivateDocker, image: str, kafka_broker: DevBroker, kafka: KafkaTransport
) -> None:
    prefix = f"burst-{uuid.uuid4().hex[:8]}-"
    publisher = Publisher(kafka, source="bus://test")
    published: list[str] = []
    stopped = asyncio.Event()
    replies = Replies(kafka, prefix)
    await replies.consumer.start()
    first, second = "bus-handler-first", "bus-handler-second"
    run_handler(docker, image, kafka_broker, first)
    try:
        wait_until_blocking(lambda: health(docker, first), until=lambda s: s == "healthy",
                            timeout_s=90, what="the first container to be healthy")  # fmt: skip

        async def publish_until_stopped() -> None:
            # the burst goes on through the whole `docker stop`: it is stopped mid-burst
            while not stopped.is_set() and len(published) < 50_000:
                batch = commands(f"{prefix}{len(published):06d}-", 20)
                await publisher.publish_many(batch)
                published.extend(c.employee_id for c in batch)
                await asyncio.sleep(0.02)

        publishing = asyncio.create_task(publish_until_stopped())
        await wait_until(replies.read, until=lambda n: n >= 200, timeout_s=60,
                         what="the first container handling part of the burst")  # fmt: skip
        began, began_at = time.monotonic(), time.strftime("%H:%M:%S", time.gmtime())
        await asyncio.to_thread(docker, "stop", "--time", str(DEADLINE_S + 20), first)
        took = time.monotonic() - began
        stopped.set()
        await publishing
        state = docker("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", first).stdout
        logs = docker("logs", first)
        output = logs.stdout + logs.stderr
        notable = [line for line in output.splitlines() if '"INFO"' not in line or "stop" in line]
        assert state.split() == ["0", "false"], (
            f"exit {state}, stop sent {began_at}:\n" + "\n".join(notable[-40:])
        )
        assert "received SIGTERM" in output, output[-3000:]
        assert took < DEADLINE_S + 10, f"stop took {took:.1f}s"
        handled_by_first = await replies.read()
        assert handled_by_first < len(published), "the first container saw the whole burst"

        run_handler(docker, image, kafka_broker, second)
        await wait_until(replies.read, until=lambda n: n == len(published), timeout_s=180,
                         what=f"a reply to every one of the {len(published)} commands")  # fmt: skip
        docker("stop", "--time", str(DEADLINE_S + 20), second)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", second).stdout.strip() == "0"
        assert set(replies.ids) == set(published)
        print(f"\n{len(published)} commands, {handled_by_first} handled before the stop "
              f"({took:.1f}s), {len(replies.ids) - len(published)} handled twice")  # fmt: skip
    finally:
        await replies.consumer.stop()
        docker("rm", "--force", first, second, check=False)


ONBOARDING_APPS = (
    "handlers.identity.handler:commands_app",
    "handlers.licensing.handler:commands_app",
    "handlers.notifications.handler:commands_app",
    "handlers.payroll.handler:app",
    "handlers.repositories.handler:app",
)


INGRESS_TOKEN = "ingress-token-only-for-this-test"
CONSOLE_TOKEN = "console-token-only-for-this-test"
SECRETS = "/run/secrets"


def token_file(path: Path, *, name: str, token: str, extra: str) -> Path:
    """A token file (docs/ingress.md, "Tokens") readable by the image's user 10001."""
    path.write_text(f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(token)}"\n{extra}')
    path.chmod(0o644)
    return path


def hire_events(employees: list[str]) -> list[dict[str, object]]:
    """CloudEvents (structured JSON) of one hire each, as an HR system posts them."""
    return [
        {"specversion": "1.0", "id": f"hire-{e}", "source": "bus://hr-test",
         "type": "hr.employee.hired.v1", "datacontenttype": "application/json",
         "data": EmployeeHired(
             employee_id=e, full_name=f"Ada {_letters(i)}", department="engineering",
             manager_email="grace@example.com", start_date=date(2026, 1, 5),
         ).model_dump(mode="json")}
        for i, e in enumerate(employees)
    ]  # fmt: skip


async def post_hires(port: int, employees: list[str]) -> dict[str, object]:
    """POST the hires to the ingress's ``/events`` as one CloudEvents batch; its answer."""
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/events",
            data=orjson.dumps(hire_events(employees)),
            headers={"Authorization": f"Bearer {INGRESS_TOKEN}",
                     "Content-Type": "application/cloudevents-batch+json"},
        )  # fmt: skip
        body = await response.text()
        assert response.status == 202, body
        answer: dict[str, object] = orjson.loads(body)
        return answer


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


@pytest.mark.postgres
async def test_hires_posted_to_the_ingress_container_complete_with_two_coordinators_on_postgres(
    docker: PrivateDocker,
    image: str,
    kafka_broker: DevBroker,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    store = {"BUS_SAGA_STORE": postgres_dsn}
    ingress_tokens = token_file(tmp_path / "ingress-tokens.toml", name="hr-test",
                                token=INGRESS_TOKEN, extra='types = ["hr.*"]\n')  # fmt: skip
    console_tokens = token_file(tmp_path / "console-tokens.toml", name="operator",
                                token=CONSOLE_TOKEN, extra='role = "operator"\n')  # fmt: skip
    handlers, coordinators = "bus-onboarding-handlers", ["bus-coordinator-1", "bus-coordinator-2"]
    ingress, console = "bus-ingress", "bus-console"
    names = [handlers, *coordinators, ingress, console]
    try:
        run_handler(docker, image, kafka_broker, handlers, "run", *ONBOARDING_APPS)
        for name in coordinators:
            # onboarding v1: the shipped set (v2, deploy/compose.yaml's) waits on people (a
            # desk task, an IT task in the equipment child saga)
            run_handler(docker, image, kafka_broker, name, "sagas", "run", "--definitions",
                        "sagas.definitions.onboarding", env=store)  # fmt: skip
        # as deploy/compose.yaml runs it: the token file mounted, the webhook's secret set
        ingress_port = run_handler(
            docker, image, kafka_broker, ingress,
            "ingress", "handlers.hr.webhook", "--webhooks", "handlers.hr.webhook:ingress",
            env={"BUS_INGRESS_TOKENS_FILE": f"{SECRETS}/ingress_tokens.toml",
                 "HR_WEBHOOK_SECRET": "webhook-secret-only-for-this-test"},
            mounts={ingress_tokens: f"{SECRETS}/ingress_tokens.toml"},
        )  # fmt: skip
        for name in [handlers, *coordinators, ingress]:
            wait_healthy(docker, name)
        employees = [f"e-{uuid.uuid4().hex[:8]}" for _ in range(3)]
        answer = await post_hires(ingress_port, employees)
        assert answer["accepted"] == len(employees), answer

        def completed() -> str:
            listing = docker("exec", coordinators[0], "bus", "sagas", "list", "--state",
                             "completed")  # fmt: skip
            return listing.stdout

        wait_until_blocking(completed, until=lambda out: all(e in out for e in employees),
                            timeout_s=180, what=f"the onboardings of {employees} completed")  # fmt: skip
        exposed = inside(docker, ingress, ingress_port, "/metrics")
        published = metric(exposed, "bus_ingress_events_total", outcome="published")
        assert published == len(employees), exposed[-2000:]
        assert metric(exposed, "bus_ingress_requests_total", status="202") == 1

        # the console on the same store: its probes and metrics from inside its container
        console_port = run_handler(
            docker, image, kafka_broker, console,
            "console", *ONBOARDING_APPS, f"--tokens-file={SECRETS}/console_tokens.toml",
            "--host=0.0.0.0", "--port=PORT",
            env=store, mounts={console_tokens: f"{SECRETS}/console_tokens.toml"},
        )  # fmt: skip
        wait_healthy(docker, console)
        assert '"healthy":true' in inside(docker, console, console_port, "/healthz")
        assert '"ready":true' in inside(docker, console, console_port, "/readyz")
        exposed = inside(docker, console, console_port, "/metrics")
        assert metric(exposed, "bus_console_store_up") == 1, exposed[-2000:]
        assert metric(exposed, "bus_console_requests_total", route="/healthz", status="200") >= 1

        for name in names:
            docker("stop", "--time", str(DEADLINE_S + 20), name)
            state = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
            assert state == "0", f"{name}: " + docker("logs", name).stderr[-3000:]
    finally:
        docker("rm", "--force", *names, check=False)
