"""The code rules CI holds the repository to: ruff (lint and format) and mypy --strict.

They run as tests so that the README's one test command checks them on every clean clone,
with the linters pinned by the project's own ``[test]`` extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_to_lint() -> None:
    done = _run(str(BIN / "ruff"), "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_finds_nothing_to_reformat() -> None:
    done = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean_on_bus_handlers_and_sagas() -> None:
    done = _run(str(BIN / "mypy"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("package", ["bus", "handlers", "sagas"])
def test_ruff_bans_asyncio_wait_for_in_the_packages(package: str) -> None:
    """On 3.11 ``asyncio.wait_for`` can lose a cancellation (a loop that outlives its
    shutdown); pyproject.toml bans it (ruff TID251) in favour of ``bus.wait_for_event`` or
    ``asyncio.timeout``. This checks that the ban is still configured and covers ``package``."""
    code = "import asyncio\n\n\nasync def f(e: asyncio.Event) -> None:\n"
    code += "    await asyncio.wait_for(e.wait(), 1)\n"
    done = subprocess.run(
        [str(BIN / "ruff"), "check", "--stdin-filename", f"{package}/probe.py", "-"],
        cwd=ROOT, input=code, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "TID251" in done.stdout, done.stdout
    assert "wait_for_event" in done.stdout, done.stdout  # the message names the helper
