"""Security and configuration faults say their cause in one line and exit 2 (issue 16 item 7).

- TLS: a real TLS listener on 127.0.0.1 (asyncio, a self-signed certificate made here with
  ``cryptography``) that the client cannot verify. aiokafka logs the verification error
  and reports "Unable to bootstrap"; bus said "cannot reach ... is the broker up?" after
  its whole connect timeout.
- SCRAM: real Tansu with ``--authentication`` and a user it does not know. Tansu answers
  the SCRAM exchange with an error message where aiokafka expects the server signature,
  and aiokafka raised ``KeyError: 'v'`` (a traceback, exit 1).
- DSN: a PostgreSQL DSN whose port is not a number gave asyncpg's ``ValueError`` traceback.
- The saga store's password from ``BUS_SAGA_STORE_PASSWORD(_FILE)`` or libpq's
  ``PGPASSWORD``, on a real PostgreSQL role that needs one, so the URL (argv) holds none.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bus.devbroker import DevBroker
from tests.conftest import IN_CI, unique
from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
#: Far below the connect timeout the commands are given (60 s): a security fault is not
#: retried as if the broker were down.
FAST_S = 20.0
INFO = re.compile(r"^\d\d:\d\d:\d\d\.\d+ INFO ")


async def bus(*args: str, env: dict[str, str]) -> tuple[int, str, float]:
    """``bus ARGS`` in a subprocess: exit code, stderr, seconds taken."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bus", *args,
        cwd=ROOT,
        env={**os.environ, "BUS_HTTP_PORT": "0", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode(), time.monotonic() - started


def one_line(stderr: str) -> str:
    """The one line stderr holds besides INFO logs (``bus run`` says where it serves HTTP)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not INFO.match(line)]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert lines[0].startswith("bus: error: "), lines[0]
    return lines[0]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bus-test-broker")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "broker.pem", tmp_path / "broker.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_listener(tmp_path: Path) -> AsyncIterator[str]:
    """``127.0.0.1:PORT`` of a TLS server with a certificate no CA the client knows signed."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.close()


@pytest.mark.parametrize("command", ["publish", "run"])
async def test_a_tls_verification_failure_is_one_line_naming_it_and_exit_2(
    tls_listener: str, command: str
) -> None:
    env = {
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": tls_listener,
        "BUS_KAFKA_SECURITY_PROTOCOL": "SSL",
        "BUS_KAFKA_CONNECT_TIMEOUT_S": "60",
    }
    args = {
        "publish": ["publish", "--file", "handlers/demo_hires.ndjson", "-m", "handlers.hr.contracts"],
        "run": ["run", "tests.integration.echo_app"],
    }[command]  # fmt: skip
    code, stderr, took_s = await bus(*args, env=env)
    line = one_line(stderr)
    assert code == 2
    assert "TLS verification failed" in line
    assert "BUS_KAFKA_SSL_CAFILE" in line
    assert "is the broker up" not in line
    assert took_s < FAST_S, f"took {took_s:.1f}s: retried as if unreachable"


class AuthenticatingBroker(DevBroker):
    """Tansu that requires SASL (SCRAM) logins."""

    def command(self) -> list[str]:
        return [*super().command(), "--authentication"]


@pytest.mark.kafka
@pytest.mark.parametrize("command", ["run", "sagas"])
async def test_a_refused_scram_login_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, command: str
) -> None:
    broker = AuthenticatingBroker(log_path=tmp_path / "tansu.log")
    await asyncio.to_thread(broker.start)
    env = {
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "BUS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "BUS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "BUS_KAFKA_SASL_USERNAME": "nobody",
        "BUS_KAFKA_SASL_PASSWORD": "s3cret-pw",
        "BUS_KAFKA_CONNECT_TIMEOUT_S": "60",
        "ECHO_RUN": unique("scram"),
    }
    args = {
        "run": ["run", "tests.integration.echo_app"],
        "sagas": ["sagas", "run", "--store", f"sqlite:{tmp_path / 'sagas.db'}"],
    }[command]
    try:
        code, stderr, took_s = await bus(*args, env=env)
    finally:
        broker.stop()
    line = one_line(stderr)
    assert code == 2
    assert "authentication failed" in line
    assert "'nobody'" in line
    assert "SCRAM-SHA-256" in line
    assert "s3cret-pw" not in stderr
    assert took_s < FAST_S


async def test_a_dsn_with_a_port_that_is_not_a_number_is_one_line_and_exit_2() -> None:
    code, stderr, _ = await bus(
        "sagas", "list", "--store", "postgresql://u:p@127.0.0.1:notaport/db", env={}
    )
    line = one_line(stderr)
    assert code == 2
    assert "bad DSN" in line
    assert "port is not a number" in line
    assert ":p@" not in line


@pytest.fixture
def password_role(postgres_server: PostgresServer) -> tuple[str, str]:
    """(DSN without a password, password) of a role the server makes log in with it.

    Our test server trusts every local login: a pg_hba.conf line for this role alone
    (first, so it wins) requires its password, leaving every other test's role alone.
    """
    if postgres_server.root is None:
        if IN_CI:
            pytest.fail("needs the session's own PostgreSQL server to require a password")
        pytest.skip("needs the session's own PostgreSQL server (not BUS_TEST_POSTGRES_DSN)")
    role, password = unique("pw_role").replace("-", "_"), "pw-" + unique("s").replace("-", "")
    dsn = postgres_server.create_database()
    database = dsn.rsplit("/", 1)[1]
    postgres_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    postgres_server.psql(f"ALTER DATABASE {database} OWNER TO {role}")
    hba = postgres_server.root / "data" / "pg_hba.conf"
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    postgres_server.psql("SELECT pg_reload_conf()")
    return f"postgresql://{role}@127.0.0.1:{postgres_server.port}/{database}", password


@pytest.mark.postgres
async def test_the_saga_store_password_comes_from_the_environment_or_a_file_not_argv(
    password_role: tuple[str, str], tmp_path: Path
) -> None:
    dsn, password = password_role
    secret = tmp_path / "pg-password"
    secret.write_text(password + "\n")
    # without it the role is refused: one line, exit 2 (the server reloads pg_hba async)
    deadline = time.monotonic() + 10
    while True:
        code, stderr, _ = await bus("sagas", "list", "--store", dsn, env={})
        if code != 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert code == 2, stderr
    assert "password authentication failed" in one_line(stderr)
    for env in (
        {"BUS_SAGA_STORE_PASSWORD": password},
        {"BUS_SAGA_STORE_PASSWORD_FILE": str(secret)},
        {"PGPASSWORD": password},  # libpq's convention: asyncpg reads it itself
    ):
        code, stderr, _ = await bus("sagas", "list", "--store", dsn, env=env)
        assert code == 0, f"{list(env)}: {stderr}"
        assert password not in stderr
