"""Benchmark: the HTTP ingress against a minimal aiohttp + aiokafka endpoint, on Tansu.

Run::

    python bench/ingress.py                         # ~7 minutes
    python bench/ingress.py --seconds 10 --latency-seconds 10 --rounds 5   # ~6 minutes
    python bench/ingress.py --dedup-store postgres  # idempotency on a throwaway PostgreSQL

It starts a Tansu broker (:class:`bus.devbroker.DevBroker`, memory storage), a 6-partition
topic, and two server processes (``bench/ingress_servers.py``), both up for the whole run:

baseline
    aiohttp + one AIOKafkaProducer at aiokafka's defaults: read the body, ``orjson.loads``
    it, ``send`` each event (keyed by its order id) and await every acknowledgement,
    answer 202. No auth, no validation, no idempotency, no CloudEvents headers.
ingress
    ``bus.ingress.serve_ingress``: bearer token (a token file, no rate limit), the HTTP
    binding, validation against the registry, idempotency on a SQLite dedup store (grouped
    writes; ``--dedup-store postgres``: on a PostgreSQL started for the run with
    tests/postgres.py, fsync off), binary-mode CloudEvents records through the Kafka
    transport, 202.

Load comes from a separate process: ``wrk`` (one thread) with a Lua script that gives each
event a new id (idempotency must see new events, not duplicates): single structured
events over 64 connections, then batches of 100 over 16 connections, ``--seconds`` each.
Only 202 answers count. Then a Python client (another process, ``rate_client.py``: raw
HTTP/1.1 on asyncio protocols, every request encoded before the clock starts) sends single
events at 1,000 per second for ``--latency-seconds`` over up to 64 keep-alive connections
and reports the latency percentiles, measured from each request's scheduled time (no
coordinated omission). An aiohttp client took half a core of the 2 at that rate; this one
takes about a fifth, so the servers under test get the rest. The load generators' and
the server's CPU are reported beside the rates: the machine is shared by broker, server
and load.

Each load runs on one server and right after on the other; ``--rounds`` (3) repeats the
three loads, alternating which server goes first. A ratio is taken between the two runs
of one load, seconds apart, so the shared machine's drift moves both (measured minutes
apart, the batch ratio ranged 0.32-0.56 over five rounds). Prints every round, then as
the LAST line one JSON object of medians over the rounds: single_per_s,
single_per_baseline, batch_per_s, batch_per_baseline, p99_ms_at_1000 (the ingress's),
the baseline's figures, and each round's ratios (``bench/ingress_report.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from ingress_report import report
from ingress_servers import LINGER_MS, TOKEN, TOPIC, TYPE, serve_baseline, serve_ingress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ["baseline", "ingress", "ingress_nodedup"]
LUA = r"""
local counter = 0
local prefix = "x"
local batch = 1
local headers = {}
function init(args)
  prefix = args[1] .. "-" .. tostring(math.random(1, 1000000000))
  batch = tonumber(args[2])
  headers["Authorization"] = "Bearer TOKEN"
  if batch > 1 then
    headers["Content-Type"] = "application/cloudevents-batch+json"
  else
    headers["Content-Type"] = "application/cloudevents+json"
  end
end
local function event()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  return '{"specversion":"1.0","id":"' .. id .. '","source":"bus://bench","type":"TYPE",' ..
    '"data":{"order_id":"o-' .. id .. '","customer":"c-' .. (counter % 1000) ..
    '","amount":42.5,"items":3,"note":"a bench order"}}'
end
function request()
  if batch == 1 then
    return wrk.format("POST", "/events", headers, event())
  end
  local events = {}
  for i = 1, batch do events[i] = event() end
  return wrk.format("POST", "/events", headers, "[" .. table.concat(events, ",") .. "]")
end
""".replace("TOKEN", TOKEN).replace("TYPE", TYPE)


# -- load --------------------------------------------------------------------------------
def wait_listening(port: int, timeout_s: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not answer within {timeout_s}s")


def children_cpu_s() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, script: Path, conns: int, seconds: float, label: str, batch: int
) -> dict[str, float]:
    before = children_cpu_s()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency", "-s", str(script), url + "/events", "--", label, str(batch)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = children_cpu_s() - before
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    duration = float(re.search(r"requests in ([\d.]+)s", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    ok = requests - (int(bad[1]) if bad else 0)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "events_per_s": ok * batch / duration,
        "requests": requests,
        "refused": requests - ok,
        "p99_ms": float(p99[1]) * scale[p99[2]] if p99 else float("nan"),
        "load_cpu_pct": 100 * cpu / duration,
        "socket_errors": 0 if errors is None else 1,
    }


async def constant_rate(url: str, rate: float, seconds: float) -> dict[str, float]:
    from rate_client import constant_rate as run

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents+json"}
    prefix = f"lat-{os.getpid()}-{time.time_ns()}"

    def body(n: int) -> bytes:
        return orjson.dumps({
            "specversion": "1.0", "id": f"{prefix}-{n}", "source": "bus://bench", "type": TYPE,
            "data": {"order_id": f"o-{n}", "customer": "c-1", "amount": 1.5, "items": 1},
        })  # fmt: skip

    return await run(url + "/events", headers, body, rate=rate, seconds=seconds)


def run_latency(url: str, rate: float, seconds: float) -> dict[str, float]:
    before = children_cpu_s()
    out = subprocess.run(
        [sys.executable, __file__, "--latency-client", url, "--rate", str(rate), "--latency-seconds", str(seconds)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = orjson.loads(out.strip().splitlines()[-1])
    result["load_cpu_pct"] = 100 * (children_cpu_s() - before) / seconds
    return result


# -- the run -----------------------------------------------------------------------------
#: wrk's connections and events per request of each throughput mode.
MODES = {"single": (64, 1), "batch": (16, 100)}


@dataclass(frozen=True)
class Server:
    kind: str
    url: str
    pid: int


@contextlib.contextmanager
def running(
    kind: str, port: int, args: argparse.Namespace, script: Path, workdir: Path
) -> Iterator[Server]:
    """A server process of ``kind``, listening and warmed up, until the block ends."""
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--bootstrap", args.bootstrap, "--workdir", str(workdir), "--dedup-store", args.dedup_store, "--linger-ms", str(args.linger_ms)]  # fmt: skip
    if args.dedup_linger_ms is not None:
        command += ["--dedup-linger-ms", str(args.dedup_linger_ms)]
    process = subprocess.Popen(command)
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}"
        run_wrk(url, script, 16, 2, f"{kind}-warm", 1)  # warm-up: connections, caches
        yield Server(kind, url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def load(
    server: Server, mode: str, broker_pid: int, args: argparse.Namespace, script: Path
) -> dict[str, Any]:
    """One load of ``mode`` (single, batch, latency) on ``server``, with its and the
    broker's CPU while it ran."""
    cpu0, broker0, t0 = process_cpu_s(server.pid), process_cpu_s(broker_pid), time.monotonic()
    if mode == "latency":
        found = run_latency(server.url, args.rate, args.latency_seconds)
    else:
        conns, batch = MODES[mode]
        # a new id prefix per load (wrk's Lua random is not seeded): every event is new to
        # the ingress's dedup store, which lives as long as the server
        label = f"{server.kind}-{mode}-{time.time_ns()}"
        found = run_wrk(server.url, script, conns, args.seconds, label, batch)
    elapsed = time.monotonic() - t0
    found["server_cpu_pct"] = 100 * (process_cpu_s(server.pid) - cpu0) / elapsed
    found["broker_cpu_pct"] = 100 * (process_cpu_s(broker_pid) - broker0) / elapsed
    return found


def measure(
    kinds: list[str], broker_pid: int, args: argparse.Namespace, script: Path, workdir: Path
) -> dict[str, list[dict[str, Any]]]:
    """Every round's figures per server. Both servers stay up, and each load runs on one
    then at once on the other (which goes first alternates by round): the two figures a
    ratio is taken from are seconds apart, so a shared machine's drift moves both."""
    from bus.devbroker import free_port

    with contextlib.ExitStack() as stack:
        servers = {
            kind: stack.enter_context(running(kind, free_port(), args, script, workdir))
            for kind in kinds
        }
        results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for round_ in range(args.rounds):
            order = kinds if round_ % 2 == 0 else kinds[::-1]
            for kind in kinds:
                results[kind].append({})
            for mode in ("single", "batch", "latency"):
                for kind in order:
                    results[kind][-1][mode] = load(servers[kind], mode, broker_pid, args, script)
        for kind, server in servers.items():
            if kind != "baseline":
                duplicates = duplicates_counted(server.url)
                if duplicates:  # every event was new: a duplicate means a broken measurement
                    raise RuntimeError(f"{kind} counted {duplicates:g} duplicate events")
        return results


def duplicates_counted(url: str) -> float:
    """The ingress's ``bus_ingress_events_total{outcome="duplicate"}``."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(r'^bus_ingress_events_total\{outcome="duplicate"\} (\S+)$', text, re.M)
    if found is None:
        raise RuntimeError(f"no duplicate count in {url}/metrics")
    return float(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure each server this many times, alternating; the figures are medians",
    )
    parser.add_argument("--serve", choices=VARIANTS)
    parser.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="run only these (default: baseline and ingress; ingress_nodedup: without the "
        "dedup store, to see what idempotency costs)",
    )
    parser.add_argument(
        "--dedup-store",
        default="sqlite",
        help="the ingress's idempotency store: sqlite (default) or postgres (a throwaway "
        "server from tests/postgres.py; needs the PostgreSQL binaries)",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=LINGER_MS,
        help=f"the ingress's BUS_KAFKA_LINGER_MS (default {LINGER_MS})",
    )
    parser.add_argument(
        "--dedup-linger-ms",
        type=float,
        help="the ingress's BUS_INGRESS_DEDUP_LINGER_MS (default: bus's own, 2)",
    )
    parser.add_argument("--latency-client")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bootstrap")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.serve == "baseline":
        return serve_baseline(args.port, args.bootstrap)
    if args.serve in ("ingress", "ingress_nodedup"):
        dedup = args.dedup_store if args.serve == "ingress" else ""
        return serve_ingress(
            args.port,
            args.bootstrap,
            args.workdir,
            dedup=dedup,
            linger_ms=args.linger_ms,
            dedup_linger_ms=args.dedup_linger_ms,
        )
    if args.latency_client:
        print(
            orjson.dumps(
                asyncio.run(constant_rate(args.latency_client, args.rate, args.latency_seconds))
            ).decode()
        )
        return None
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    from bus import TopicSpec
    from bus.config import KafkaConfig
    from bus.devbroker import DevBroker
    from bus.transports.kafka import KafkaTransport

    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp, postgres_if(args) as dsn:
        args.dedup_store = dsn or args.dedup_store
        workdir = Path(tmp)
        script = workdir / "events.lua"
        script.write_text(LUA)
        broker = DevBroker(log_path=workdir / "tansu.log")
        bootstrap = broker.start()
        try:

            async def topic() -> None:
                transport = KafkaTransport(KafkaConfig.from_env({}, bootstrap_servers=bootstrap))
                await transport.start()
                await transport.ensure_topics(
                    [TopicSpec(TOPIC, partitions=6, replication_factor=1)]
                )
                await transport.stop()

            asyncio.run(topic())
            args.bootstrap = bootstrap
            assert broker.process is not None
            pid = broker.process.pid
            results = measure(args.variant or ["baseline", "ingress"], pid, args, script, workdir)
        finally:
            broker.stop()
    report(results, rate=args.rate, seconds=args.latency_seconds, store=args.dedup_store)


@contextlib.contextmanager
def postgres_if(args: argparse.Namespace) -> Iterator[str | None]:
    """A throwaway PostgreSQL's DSN when ``--dedup-store postgres``, else None."""
    if args.dedup_store != "postgres":
        yield None
        return
    from tests.postgres import PostgresServer

    server = PostgresServer.create()
    try:
        server.start()
        yield server.create_database("bench_ingress")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
