"""Against a real Prometheus: the alert rules, and the numbers of a running ``bus run``.

Prometheus and promtool come from the Debian package ``prometheus``; run as root, the
fixture installs it when missing (CI starts from a clean machine). Without it these tests
skip, except with CI=true, where a missing Prometheus fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.promql import RULES, dashboard_queries, executable
from tests.waiting import wait_until_blocking

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
PINGS = 20  # n = 1..20; every fifth fails both tries and is dead-lettered


@dataclass(frozen=True)
class Tools:
    prometheus: str
    promtool: str


def _find() -> Tools | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return Tools(prometheus, promtool) if prometheus and promtool else None


def _install() -> str:
    """Install the Debian package as root; what went wrong otherwise."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root on a Debian-like system: install the 'prometheus' package"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "prometheus"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # a clean machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    return (
        "" if done.returncode == 0 else f"apt-get install prometheus failed: {done.stderr[-500:]}"
    )


@pytest.fixture(scope="module")
def tools() -> Tools:
    found = _find()
    if found is None:
        problem = _install()
        found = _find()
        if found is None:
            message = f"Prometheus is not available ({problem or 'not on PATH after install'})"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrapes_of_bus(prometheus: Prometheus) -> float:
    """How many scrapes of the bus target Prometheus stored in the last five minutes."""
    return prometheus.value('count_over_time(up{job="bus"}[5m])') or 0.0


def wait_for_more_scrapes(prometheus: Prometheus, more: int) -> None:
    """Until ``more`` scrapes after now are stored (so rates have points after the work)."""
    before = scrapes_of_bus(prometheus)
    wait_until_blocking(
        lambda: scrapes_of_bus(prometheus),
        until=lambda n: n >= before + more,
        timeout_s=30,
        what=f"{more} more scrapes (after {before})",
        interval_s=0.2,
    )


def wait_for_value(prometheus: Prometheus, expr: str, value: float, what: str) -> None:
    """Until ``expr`` has the single value ``value`` (the last one seen if not in 60 s)."""
    wait_until_blocking(
        lambda: prometheus.value(expr),
        until=lambda got: got == value,
        timeout_s=60,
        what=f"{what} ({expr} == {value})",
        interval_s=0.2,
    )


def test_promtool_checks_the_alert_rules_and_passes_their_unit_tests(tools: Tools) -> None:
    cwd = RULES.parent
    check = subprocess.run(
        [tools.promtool, "check", "rules", "rules.yml"], cwd=cwd, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [tools.promtool, "test", "rules", "rules_test.yml"], cwd=cwd, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


class Prometheus:
    """A Prometheus server on loopback scraping one target every second."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> dict[str, object]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            doc: dict[str, object] = json.loads(response.read())
        return doc

    def query(self, expr: str) -> list[dict[str, object]]:
        doc = self.get("/api/v1/query", query=expr)
        assert doc["status"] == "success", doc
        data = doc["data"]
        assert isinstance(data, dict)
        result: list[dict[str, object]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` (None when empty)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        sample = result[0]["value"]
        assert isinstance(sample, list)
        return float(sample[1])


@pytest.fixture
def bus_process(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """``bus run`` of tests/integration/metrics_app.py, its pings waiting behind a gate."""
    run = f"{os.getpid()}-{time.monotonic_ns()}"
    pings = tmp_path / "pings.ndjson"
    pings.write_text(
        "".join(
            json.dumps({"type": "it.prom.ping.v1", "data": {"key": f"k{n % 4}", "n": n}}) + "\n"
            for n in range(1, PINGS + 1)
        )
    )
    log = tmp_path / "bus.log"
    env = {**os.environ, "METRICS_RUN": run, "METRICS_GATE": str(tmp_path / "gate")}
    command = [sys.executable, "-m", "bus", "run", "tests.integration.metrics_app"]
    command += ["--publish", str(pings), "--http-port", "0", "--partitions", "3"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=out)
    try:
        port: list[int] = []

        def serving() -> bool:
            assert proc.poll() is None, log.read_text()
            found = re.search(
                r"serving /metrics /healthz /readyz on http://[\d.]+:(\d+)", log.read_text()
            )
            if found:
                port.append(int(found.group(1)))
            return bool(found)

        wait_until_blocking(serving, timeout_s=30, what="bus run to serve HTTP", interval_s=0.2)
        yield port[0], tmp_path / "gate", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_prometheus(tools: Tools, tmp_path: Path, port: int) -> Iterator[Prometheus]:
    """Prometheus scraping ``127.0.0.1:port`` every second, with the alert rules loaded."""
    config = tmp_path / "prometheus.yml"
    shutil.copy(RULES, tmp_path / "rules.yml")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n  - job_name: bus\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    listen = f"127.0.0.1:{free_port()}"
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                tools.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={listen}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://{listen}")

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until_blocking(ready, timeout_s=60, what="Prometheus to be ready", interval_s=0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus(
    tools: Tools, tmp_path: Path, bus_process: tuple[int, Path, subprocess.Popen[bytes]]
) -> Iterator[Prometheus]:
    with running_prometheus(tools, tmp_path, bus_process[0]) as server:
        yield server


def test_prometheus_scrapes_exactly_what_a_bus_process_did(
    prometheus: Prometheus, bus_process: tuple[int, Path, subprocess.Popen[bytes]]
) -> None:
    _, gate, _ = bus_process
    wait_for_value(prometheus, 'up{job="bus"}', 1, "a first scrape of the idle process")
    assert prometheus.value('sum(bus_messages_consumed_total{app="it-prom"})') == 0
    gate.touch()  # now the handlers run: every count rises from a scraped zero

    consumed = 'sum(bus_messages_consumed_total{app="it-prom"})'
    wait_for_value(prometheus, consumed, PINGS, f"{PINGS} records counted")
    wait_for_value(prometheus, 'sum(bus_consumer_lag{app="it-prom"})', 0, "lag 0 after the commit")

    app = 'app="it-prom"'
    expected = {
        f'sum(bus_messages_consumed_total{{{app},outcome="handled"}})': 16,
        f'sum(bus_messages_consumed_total{{{app},outcome="dead_lettered"}})': 4,
        f'sum(bus_messages_produced_total{{{app},type="it.prom.pong.v1"}})': 16,
        f'sum(bus_handler_errors_total{{{app},handler="pong",error_type="ValueError"}})': 8,
        f'sum(bus_handler_retries_total{{{app},handler="pong"}})': 4,
        f'sum(bus_messages_dead_lettered_total{{{app},reason="handler_failed"}})': 4,
        f'sum(bus_handler_duration_seconds_count{{{app},handler="pong"}})': 16,
        f"sum(bus_publish_duration_seconds_count{{{app}}})": 16,
        f"sum(bus_messages_in_flight{{{app}}})": 0,
        f"count(bus_consumer_lag{{{app}}})": 3,  # one series per partition
    }
    got = {expr: prometheus.value(expr) for expr in expected}
    assert got == expected

    def firing() -> bool:
        alerts = prometheus.get("/api/v1/alerts")["data"]
        assert isinstance(alerts, dict)
        return any(
            a["labels"]["alertname"] == "BusDeadLettersAppearing"
            and a["labels"]["app"] == "it-prom"
            and a["state"] == "firing"
            for a in alerts["alerts"]
        )

    wait_until_blocking(firing, timeout_s=30, what="the dead-letter alert to fire", interval_s=0.2)
    groups = prometheus.get("/api/v1/rules")["data"]
    assert isinstance(groups, dict)
    health = {r["name"]: r["health"] for g in groups["groups"] for r in g["rules"]}
    assert set(health.values()) == {"ok"}, health


def test_every_dashboard_query_runs_on_prometheus_and_handler_panels_have_data(
    prometheus: Prometheus, bus_process: tuple[int, Path, subprocess.Popen[bytes]]
) -> None:
    _, gate, _ = bus_process
    wait_for_value(prometheus, 'up{job="bus"}', 1, "a first scrape")
    gate.touch()
    consumed = 'sum(bus_messages_consumed_total{app="it-prom"})'
    wait_for_value(prometheus, consumed, PINGS, "the records handled")
    wait_for_more_scrapes(prometheus, 2)  # so rates have two points after the work
    empty = []
    for query in dashboard_queries():
        expr = executable(query.expr, rate_interval="1m")
        if query.expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL: its inner selector is checked offline
        result = prometheus.query(expr)  # asserts Prometheus accepted it
        if "sagas" not in query.where and not result:
            empty.append(query.where)
    assert empty == [], "panels with no data from a process that handled records"


@pytest.fixture
def saga_process(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """tests/integration/saga_metrics_app.py: the onboarding handlers and the coordinator in
    one process (memory transport, SQLite store), its hires waiting behind a gate."""
    log = tmp_path / "sagas.log"
    gate = tmp_path / "saga-gate"
    command = [sys.executable, "-m", "tests.integration.saga_metrics_app"]
    command += ["--store", f"sqlite:{tmp_path / 'sagas.db'}", "--gate", str(gate)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stderr=out)
    try:
        port: list[int] = []

        def serving() -> bool:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"serving /metrics on http://[\d.]+:(\d+)", log.read_text())
            if found:
                port.append(int(found.group(1)))
            return bool(found)

        wait_until_blocking(
            serving, timeout_s=30, what="the saga process to serve HTTP", interval_s=0.2
        )
        yield port[0], gate
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, log.read_text()


def test_prometheus_scrapes_exactly_what_the_saga_coordinator_did(
    tools: Tools, tmp_path: Path, saga_process: tuple[int, Path]
) -> None:
    """8 hires (saga_metrics_app.HIRES): 4 complete (one after an approval), 2 compensate
    (payroll refuses), 1 fails (no account), 1 waits for an approval that never comes."""
    port, gate = saga_process
    with running_prometheus(tools, tmp_path, port) as prometheus:
        wait_for_value(prometheus, 'up{job="bus"}', 1, "a first scrape of the idle process")
        assert prometheus.value('sum(bus_sagas_started_total{saga="onboarding"})') is None
        gate.touch()

        s = 'saga="onboarding"'
        finished = f"sum(bus_sagas_finished_total{{{s}}})"
        wait_for_value(prometheus, finished, 7, "7 sagas finished")
        running = f'bus_sagas_active{{{s},state="running"}}'
        wait_for_value(prometheus, running, 1, "the waiting saga counted")
        steps = "bus_saga_step_duration_seconds_count"
        expected = {
            f"sum(bus_sagas_started_total{{{s}}})": 8,
            f'sum(bus_sagas_finished_total{{{s},status="completed"}})': 4,
            f'sum(bus_sagas_finished_total{{{s},status="compensated"}})': 2,
            f'sum(bus_sagas_finished_total{{{s},status="failed"}})': 1,
            f"sum(bus_saga_duration_seconds_count{{{s}}})": 7,
            f"sum(bus_sagas_active{{{s}}})": 1,  # only the one awaiting approval
            f"sum(bus_sagas_needs_attention_total{{{s}}})": None,  # never happened
            f"sum(bus_saga_timeouts_total{{{s}}})": None,
            'sum(bus_outbox_backlog{store="sqlite"})': 0,  # every command published
            # forward steps: account 7 (e-7 refused: failed), licenses 6, repositories 3
            # (engineers e-1 e-4 e-6), note 6, payroll 3 of 5 (e-3 is a contractor), the
            # approval of e-4; compensations of e-5 and e-6: account, licenses, note, and
            # e-6's repositories
            f'sum({steps}{{{s},step="create_account",outcome="succeeded"}})': 7,
            f'sum({steps}{{{s},step="create_account",outcome="failed"}})': 1,
            f'sum({steps}{{{s},step="assign_licenses",outcome="succeeded"}})': 6,
            f'sum({steps}{{{s},step="grant_repository_access",outcome="succeeded"}})': 3,
            f'sum({steps}{{{s},step="notify_manager",outcome="succeeded"}})': 6,
            f'sum({steps}{{{s},step="create_payroll_record",outcome="succeeded"}})': 3,
            f'sum({steps}{{{s},step="create_payroll_record",outcome="failed"}})': 2,
            f'sum({steps}{{{s},step="manager_approval",outcome="succeeded"}})': 1,
            f'sum({steps}{{{s},outcome="compensated"}})': 7,
            f'sum({steps}{{{s},outcome="timed_out"}})': None,
        }
        got = {expr: prometheus.value(expr) for expr in expected}
        assert got == expected
        oldest = prometheus.value(f"bus_saga_oldest_active_age_seconds{{{s}}}")
        assert oldest is not None  # the saga awaiting approval ages
        assert oldest > 0

        wait_for_more_scrapes(prometheus, 2)  # so rates have two points after the work
        empty = set()
        for query in dashboard_queries():
            if "sagas" not in query.where or query.expr.startswith("label_values("):
                continue
            if not prometheus.query(executable(query.expr, rate_interval="1m")):
                empty.add(query.where)
        # nothing needed attention and no deadline fired: only those panels are empty
        assert empty == {
            "bus-sagas.json: Stuck: sagas needing attention",
            "bus-sagas.json: Timeouts fired by step",
        }
