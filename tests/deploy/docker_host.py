"""A private Docker daemon for the image test, and a Python 3.11 base image made without a registry.

No container registry is reachable here, so the base image is made from Debian's archive:
``debootstrap --variant=minbase --include=python3,python3-venv bookworm`` into a directory,
tarred and ``docker import``-ed. The tar is cached in ``~/.cache/bus-test/debian-base.tar``
(``BUS_TEST_CACHE`` moves it) so a run pays the ~50 s debootstrap once per machine.

The daemon is our own: its data and exec roots live in a temporary directory, it listens
on a unix socket there, and it touches neither the host's network nor its firewall
(``--bridge=none --iptables=false --ip6tables=false --ip-forward=false``): containers use
``--network host``. :meth:`PrivateDocker.stop` ends it by its pid, unmounts what it
mounted and removes the roots; the test then asserts the host is as it found it
(:func:`host_footprint`).

Example::

    ensure_tools()
    with PrivateDocker.start(tmp_path) as docker:
        docker.load_base(ensure_base_tar(), "bus-test-base:bookworm")
        docker("build", "-t", "bus:test", "-f", "deploy/Dockerfile", wheelhouse)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DockerUnavailableError",
    "PrivateDocker",
    "ensure_base_tar",
    "ensure_tools",
    "host_footprint",
]

SUITE = "bookworm"
PACKAGES = ("docker.io", "debootstrap")


class DockerUnavailableError(RuntimeError):
    """Docker or debootstrap could not be installed or started (the message says why)."""


def _run(cmd: list[str], *, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise DockerUnavailableError(
            f"{' '.join(cmd[:4])} ... exited {done.returncode}: {done.stderr[-1500:]}"
        )
    return done


def ensure_tools() -> None:
    """``dockerd``, Debian's ``docker`` client and ``debootstrap``, installed with apt if missing.

    The client next to ``dockerd`` is used, not whatever ``docker`` comes first on PATH: a
    newer static client may be installed elsewhere without a daemon.
    """
    if shutil.which("dockerd") and shutil.which("debootstrap") and Path("/usr/bin/docker").exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DockerUnavailableError(
            "not root on a Debian-like system: install docker.io debootstrap"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # a clean machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise DockerUnavailableError(f"apt-get install {' '.join(PACKAGES)}: {done.stderr[-800:]}")


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 ``URIs:`` or a one-line ``deb``)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def cache_dir() -> Path:
    return Path(os.environ.get("BUS_TEST_CACHE", Path.home() / ".cache" / "bus-test"))


def ensure_base_tar() -> Path:
    """The root filesystem of a minimal Debian with Python 3.11, as a tar (made once, cached)."""
    tar = cache_dir() / "debian-base.tar"
    if tar.exists():
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bus-debootstrap-") as tmp:
        root = Path(tmp) / "root"
        _run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
             SUITE, str(root), debian_mirror()],
            timeout=900,
        )  # fmt: skip
        # apt's lists and caches are dead weight in an image that installs no packages
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
        partial = tar.with_suffix(".tar.partial")
        _run(["tar", "-C", str(root), "-cf", str(partial), "."], timeout=300)
        partial.rename(tar)  # whole or absent: an interrupted run leaves no half cache
    return tar


#: Network links a Docker daemon makes: its bridge, user networks' bridges, container veths.
DOCKER_LINKS = ("docker", "br-", "veth")


@dataclass(frozen=True)
class Footprint:
    """What a daemon could leave behind on the host: links, firewall rules, mounts.

    Only Docker's kind of link and mounts under ``root`` count: other processes on the
    machine (other test runs) may add and remove their own meanwhile.
    """

    links: frozenset[str]
    iptables: str
    mounts: frozenset[str]


def host_footprint(root: Path) -> Footprint:
    links = _run(["ip", "-o", "link", "show"], timeout=30).stdout.splitlines()
    names = frozenset(line.split(":")[1].strip().split("@")[0] for line in links if ":" in line)
    rules = _run(["iptables", "-S"], timeout=30, check=False).stdout
    mounts = frozenset(
        mount
        for line in Path("/proc/mounts").read_text().splitlines()
        if (mount := line.split()[1]).startswith(str(root))
    )
    return Footprint(frozenset(n for n in names if n.startswith(DOCKER_LINKS)), rules, mounts)


@dataclass
class PrivateDocker:
    """A ``dockerd`` of our own under ``root``; call it like the ``docker`` client."""

    root: Path
    process: subprocess.Popen[bytes]
    client: str = "/usr/bin/docker"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @classmethod
    @contextlib.contextmanager
    def start(cls, parent: Path, *, timeout_s: float = 60.0) -> Iterator[PrivateDocker]:
        # a short path: unix socket paths are limited to 108 bytes
        root = Path(tempfile.mkdtemp(prefix="bus-dockerd-", dir=parent))
        log = (root / "dockerd.log").open("wb")
        cmd = [
            "dockerd",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host=unix://{root / 'docker.sock'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
        ]
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        docker = cls(root, process)
        try:
            docker._wait_ready(timeout_s)
            yield docker
        finally:
            docker.stop()
            log.close()

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerUnavailableError(f"dockerd exited: {self.log_tail()}")
            if self("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise DockerUnavailableError(f"dockerd not ready within {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-2000:]

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.client, f"--host=unix://{self.socket}", *args]
        full_env = {**os.environ, "DOCKER_BUILDKIT": "0", **(env or {})}
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=full_env
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")  # fmt: skip
        return done

    def load_base(self, tar: Path, name: str) -> None:
        """``docker import`` the cached root filesystem as image ``name``."""
        self("import", str(tar), name, timeout=600)

    def stop(self) -> None:
        """End the daemon by its pid, unmount what it left mounted, remove its roots."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        root = str(self.root)
        mounted = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(root)
        ]
        for mount in sorted(mounted, key=len, reverse=True):  # deepest first
            _run(["umount", "-l", mount], timeout=30, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
