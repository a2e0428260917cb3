"""Profile the ingress server's CPU under load: Tansu, the bench's ingress server under
cProfile (per-thread CPU time, so a busy shared machine does not count against it), wrk.

Run::

    python bench/ingress_profile.py single 10      # or: batch 10; then read the table
    python bench/ingress_profile.py batch 10 /tmp/batch.prof
    python bench/ingress_profile.py rate:600 10    # the constant-rate client at 600/s

Prints wrk's figures, the server's CPU per event, then the functions by own time and by
cumulative time (start-up included: read past the imports).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingress as bench


def serve_profiled(out: str, port: int, bootstrap: str, workdir: Path) -> None:
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        bench.serve_ingress(port, bootstrap, workdir)  # until SIGTERM
    finally:
        profile.disable()
        profile.dump_stats(out)


def main(mode: str, seconds: float, out: str) -> None:
    from bus import TopicSpec
    from bus.config import KafkaConfig
    from bus.devbroker import DevBroker, free_port
    from bus.transports.kafka import KafkaTransport

    with tempfile.TemporaryDirectory(prefix="ingress-profile-") as tmp:
        workdir = Path(tmp)
        script = workdir / "events.lua"
        script.write_text(bench.LUA)
        broker = DevBroker(log_path=workdir / "tansu.log")
        bootstrap = broker.start()
        try:

            async def topic() -> None:
                config = KafkaConfig.from_env({}, bootstrap_servers=bootstrap)
                transport = KafkaTransport(config)
                await transport.start()
                await transport.ensure_topics(
                    [TopicSpec(bench.TOPIC, partitions=6, replication_factor=1)]
                )
                await transport.stop()

            asyncio.run(topic())
            port = free_port()
            command = [sys.executable, __file__, "--serve", out, str(port), bootstrap, tmp]
            server = subprocess.Popen(command)
            bench.wait_listening(port)
            cpu0, t0 = bench.process_cpu_s(server.pid), time.monotonic()
            url = f"http://127.0.0.1:{port}"
            found = load(url, script, mode, seconds)
            cpu = bench.process_cpu_s(server.pid) - cpu0
            events = found.get("sent") or found["events_per_s"] * (time.monotonic() - t0)
            found["us_cpu_per_event"] = 1e6 * cpu / events
            print(found)
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        finally:
            broker.stop()
    stats = pstats.Stats(out)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(80)


def load(url: str, script: Path, mode: str, seconds: float) -> dict[str, float]:
    """wrk's single or batch load, or ``rate:N``: the bench's constant-rate client."""
    if mode.startswith("rate:"):
        return bench.run_latency(url, float(mode.split(":", 1)[1]), seconds)
    conns, batch = (64, 1) if mode == "single" else (16, 100)
    return bench.run_wrk(url, script, conns, seconds, f"profile-{mode}", batch)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve_profiled(sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))
    else:
        seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
        main(sys.argv[1], seconds, sys.argv[3] if len(sys.argv) > 3 else "/tmp/ingress.prof")
