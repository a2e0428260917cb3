"""Tansu on durable ``s3://`` storage, against a local S3 emulator (moto's server).

Tansu keeps data either in memory (a restart loses every topic and offset) or in S3. A
broker-restart test needs records, topics and committed offsets to survive a SIGKILL, so
it runs Tansu on a bucket of a moto server, a subprocess on a free 127.0.0.1 port.

Example::

    with S3Emulator() as s3:
        broker = s3_dev_broker(s3, bucket=s3.create_bucket("run-1"))
        broker.start()
        broker.kill()               # SIGKILL: what was acknowledged is in the bucket
        broker.start()              # same port, same storage
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from bus.devbroker import DevBroker, _die_with_parent, free_port
from tests.waiting import wait_until_blocking

__all__ = ["S3Emulator", "s3_dev_broker"]


class S3Emulator:
    """A moto S3 server on ``127.0.0.1:port``; :meth:`start` fails loudly if it cannot."""

    def __init__(self, *, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # the console script when on PATH beside this interpreter, else the module
        script = Path(sys.executable).with_name("moto_server")
        if script.exists():
            return [str(script), "-H", "127.0.0.1", "-p", str(self.port)]
        found = shutil.which("moto_server")
        if found:
            return [found, "-H", "127.0.0.1", "-p", str(self.port)]
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self, timeout_s: float = 30.0) -> None:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        process = self.process

        def answering() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the S3 emulator exited at start with code {process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=0.5):
                    return True
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until_blocking(
                answering, timeout_s=timeout_s, what="the S3 emulator to answer", interval_s=0.1
            )
        except AssertionError:
            self.stop()
            raise RuntimeError(
                f"the S3 emulator did not answer on {self.endpoint} in {timeout_s}s"
            ) from None

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (moto accepts unsigned requests); returns the name."""
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"creating bucket {name!r} answered {response.status}")
        return name

    def env(self) -> dict[str, str]:
        """What Tansu's S3 client (Rust object_store) needs to use this emulator."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> S3Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def s3_dev_broker(s3: S3Emulator, *, bucket: str, log_path: Path | None = None) -> DevBroker:
    """A (not yet started) Tansu on ``s3://bucket/`` of ``s3``, on a fixed free port.

    The port stays the same across :meth:`DevBroker.kill` and :meth:`DevBroker.start`,
    so clients reconnect to the restarted broker at the address they know.
    """
    return DevBroker(storage=f"s3://{bucket}/", env=s3.env(), log_path=log_path)
