"""A throwaway PostgreSQL server for the test session (or the one ``BUS_TEST_POSTGRES_DSN`` names).

The server binaries (``initdb``, ``postgres``, ``pg_isready``) come from the machine's
PostgreSQL package (Debian's ``postgresql-15``); no server needs to run beforehand. The
session starts its own:

- data directory in a fresh temp directory owned by the ``postgres`` OS user when the tests
  run as root (``initdb`` and ``postgres`` refuse root), so the processes are started with
  ``user="postgres"`` (what ``runuser -u postgres --`` would do, but keeping the server a
  direct child so Linux can stop it when the test process dies);
- listening on a free port of 127.0.0.1 only, its unix socket inside the temp directory,
  trust authentication, ``fsync=off`` (a test server: speed over surviving an OS crash;
  commits stay synchronous, so a crash of PostgreSQL itself loses no committed transaction);
- stopped and deleted when the session ends.

``restart()`` stops and starts the same data directory on the same port, as a crash test
needs; ``stop(mode="immediate")`` is PostgreSQL's crash-like shutdown (recovery at the next
start). With CI=true a server that cannot start fails the tests; elsewhere they are skipped
with the reason.

Example::

    server = PostgresServer.create()
    server.start()
    dsn = server.create_database("t1")   # postgresql://postgres@127.0.0.1:PORT/t1
    server.restart()
    server.destroy()
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest

from tests.waiting import wait_until_blocking

DSN_VARIABLE = "BUS_TEST_POSTGRES_DSN"
_PR_SET_PDEATHSIG = 1
_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="bus-test-postgres-spawner")
_databases = itertools.count()

#: ``pg_ctl``-style shutdown modes mapped to the signal the postmaster understands.
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class PostgresUnavailableError(RuntimeError):
    """The test server could not be found or started (the message says why)."""


def find_binary(name: str) -> str:
    """``name`` on PATH, else in the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (bindir / name).exists():
            return str(bindir / name)
    raise PostgresUnavailableError(
        f"PostgreSQL's {name!r} is not installed (apt-get install postgresql, or set "
        f"{DSN_VARIABLE} to a server to use)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child (after it became the postgres user): stop when the test process dies.

    SIGQUIT is PostgreSQL's immediate shutdown, so a killed test run leaks no server.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


@dataclass
class PostgresServer:
    """One PostgreSQL server: ours to start, stop and restart, or an external DSN."""

    #: The temp directory holding ``data/``, the unix socket and ``server.log``.
    root: Path | None
    port: int
    #: ``postgresql://...`` of an external server (BUS_TEST_POSTGRES_DSN), else None.
    external_dsn: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _as_user: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls) -> PostgresServer:
        """A new data directory (``initdb``); the server is not started yet."""
        initdb = find_binary("initdb")
        as_user: dict[str, Any] = {}
        root = Path(tempfile.mkdtemp(prefix="bus-pg-"))
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailableError(
                    "running as root and there is no 'postgres' OS user to run the server as"
                ) from exc
            os.chown(root, pw.pw_uid, pw.pw_gid)
            as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        command = [initdb, "-D", str(root / "data"), "-A", "trust", "-U", "postgres"]
        command += ["-E", "UTF8", "--no-sync", "--no-instructions"]
        done = subprocess.run(command, capture_output=True, text=True, check=False, **as_user)
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailableError(
                f"initdb failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        return cls(root=root, port=_free_port(), _as_user=as_user)

    @classmethod
    def external(cls, dsn: str) -> PostgresServer:
        return cls(root=None, port=0, external_dsn=dsn)

    @property
    def dsn(self) -> str:
        """The server's maintenance database (``postgres``)."""
        return self.external_dsn or self.dsn_for("postgres")

    @property
    def can_restart(self) -> bool:
        return self.external_dsn is None

    def dsn_for(self, database: str) -> str:
        if self.external_dsn is not None:
            base, _, _ = self.external_dsn.rpartition("/")
            return f"{base}/{database}"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server on its port and wait until it accepts connections."""
        if not self.can_restart or self.process is not None:
            return
        assert self.root is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            # No fsync: the OS keeps what was written, and only an OS crash would lose it.
            # Commits stay synchronous (written to the OS before COMMIT returns), or a
            # crash-like stop would lose acknowledged transactions, as a crash test must not.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        command = [find_binary("postgres"), "-D", str(self.root / "data")]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            # Linux sends the parent-death signal when the *thread* that forked the child
            # exits: fork from one thread that lives as long as the process, never from a
            # caller's thread (``asyncio.to_thread(server.restart)`` would kill the server
            # when the loop's executor shuts down at the end of the test).
            self.process = _SPAWNER.submit(
                subprocess.Popen,
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                **self._as_user,
            ).result()
        finally:
            log.close()
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        assert self.root is not None
        isready = find_binary("pg_isready")
        probe = [isready, "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

        def accepting() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise PostgresUnavailableError(
                    f"postgres exited at start with code {code}: {self.log_tail()}"
                )
            return subprocess.run(probe, check=False).returncode == 0

        try:
            wait_until_blocking(accepting, timeout_s=timeout_s, what="postgres to accept")
        except AssertionError:
            self.stop(mode="immediate")
            raise PostgresUnavailableError(
                f"postgres did not accept connections on 127.0.0.1:{self.port} within "
                f"{timeout_s}s: {self.log_tail()}"
            ) from None

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server (``fast``: abort sessions, clean shutdown; ``immediate``: crash-like)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(_STOP_SIGNALS[mode])
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop then start the same data directory on the same port."""
        if not self.can_restart:
            raise PostgresUnavailableError(
                f"an external server ({DSN_VARIABLE}) cannot be restarted"
            )
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        if self.root is None:
            return ""
        try:
            return (self.root / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server.log)"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its DSN. Each test gets its own, so none sees another's rows."""
        name = f"{prefix}_{os.getpid()}_{next(_databases)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    async def create_schema(self, prefix: str = "s") -> str:
        """A new empty schema in the maintenance database; a DSN whose search_path is it.

        Much cheaper than a database (CREATE DATABASE copies and WAL-logs a template), for
        tests that need isolation but not a database of their own. The DSN carries
        ``options=-c search_path=...``, which asyncpg and libpq both understand.
        """
        name = f"{prefix}_{os.getpid()}_{next(_databases)}"
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'CREATE SCHEMA "{name}"')
        finally:
            await conn.close()
        return f"{self.dsn}?options=-c%20search_path%3D{name}"

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[-1]
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(self, sql: str) -> str:
        """Run one statement with ``psql`` against the maintenance database; its output."""
        done = subprocess.run(
            [find_binary("psql"), "-X", "-q", "-t", "-v", "ON_ERROR_STOP=1", self.dsn, "-c", sql],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresUnavailableError(f"psql {sql!r} failed: {done.stderr.strip()}")
        return done.stdout.strip()


def session_server() -> Iterator[PostgresServer]:
    """The session's server; skip (or, with CI=true, fail) when none can be had."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    external = os.environ.get(DSN_VARIABLE)
    try:
        server = PostgresServer.external(external) if external else PostgresServer.create()
        server.start()
        server.psql("SELECT 1")  # reachable, and this user may connect
    except PostgresUnavailableError as exc:
        if in_ci:
            pytest.fail(f"PostgreSQL is required with CI=true: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.destroy()
