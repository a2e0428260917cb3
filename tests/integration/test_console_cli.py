"""``bus console`` and ``bus asyncapi`` as a user runs them: subprocesses of the CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import jsonschema

from bus import hash_token
from tests.integration.test_coordinator_cli import _prepare

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "asyncapi" / "asyncapi-3.0.0.schema.json"


def _console_token(name: str, role: str, token: str) -> str:
    return f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(token)}"\nrole = "{role}"\n'


def _bus(*args: str) -> list[str]:
    return [sys.executable, "-m", "bus", *args]


def test_bus_console_serves_a_store_until_sigterm_and_prints_its_url(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(_prepare(tmp_path / "sagas.db"))
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(_console_token("alice", "operator", "4f0d9c0e8b6a47d1a3b2"))
    console = subprocess.Popen(
        _bus(
            "console",
            "--store",
            f"sqlite:{tmp_path / 'sagas.db'}",
            "--tokens-file",
            str(tokens),
            "--port",
            "0",
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert console.stdout is not None
        line = console.stdout.readline()  # blocks until it listens (or exits: "")
        found = re.search(r"console on (http://\S+/)", line)
        assert found, (
            f"start-up line {line!r}; stderr: {console.stderr.read() if console.stderr else ''}"
        )
        with urllib.request.urlopen(found.group(1) + "login", timeout=10) as page:
            assert page.status == 200
            assert "token" in page.read().decode().lower()
        # the probes and Prometheus need no login (bus's HTTP server, as for `bus run`)
        with urllib.request.urlopen(found.group(1) + "healthz", timeout=10) as health:
            assert health.status == 200
        with urllib.request.urlopen(found.group(1) + "readyz", timeout=10) as ready:
            assert b"sagas.db ok" in ready.read()
        with urllib.request.urlopen(found.group(1) + "metrics", timeout=10) as metrics:
            assert b"bus_console_store_up 1.0" in metrics.read()
    finally:
        console.send_signal(signal.SIGTERM)
        rc = console.wait(timeout=30)
    assert rc == 0


def test_bus_console_refuses_a_store_that_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "tokens.toml").write_text(_console_token("bob", "viewer", "9a8b7c6d5e4f3a2b1c0d"))
    done = subprocess.run(
        _bus(
            "console",
            "--store",
            f"sqlite:{tmp_path / 'typo.db'}",
            "--tokens-file",
            str(tmp_path / "tokens.toml"),
            "--port",
            "0",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no saga store at" in done.stderr
    assert not (tmp_path / "typo.db").exists()


def test_bus_asyncapi_writes_a_document_the_official_schema_accepts(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    done = subprocess.run(
        _bus("asyncapi", "handlers.demo:apps", "--out", str(out)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(document)
    assert document["channels"], "one channel per topic of the demo's apps"
