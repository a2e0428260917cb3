"""Fault injection for the crash tests: a named point of the relay ends the process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bus import ConfigError, utc_now
from sagas.outbox import FAULT_EXIT_CODE, FAULT_POINTS, FaultInjector
from sagas.stores import SqliteSagaStore
from sagas.stores.base import SagaQuery

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_fault_point_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="after_commit_before_publish"):
        FaultInjector("after_lunch")
    FaultInjector(None)("after_commit_before_publish")  # unset: nothing happens


@pytest.mark.parametrize(
    "point", ["before_commit", "after_commit_before_publish", "after_publish_before_mark"]
)
def test_the_demo_dies_at_the_fault_point_named_in_the_environment(
    point: str, tmp_path: Path
) -> None:
    assert point in FAULT_POINTS
    done = subprocess.run(
        [sys.executable, "-m", "bus", "sagas", "demo", "--store", f"sqlite:{tmp_path}/s.db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BUS_FAULT_POINT": point},
        check=False,
    )
    assert done.returncode == FAULT_EXIT_CODE, done.stderr[-2000:]
    assert f"sagas: injected crash at {point}" in done.stderr


async def test_a_crash_before_commit_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bus", "sagas", "demo", "--store", f"sqlite:{tmp_path}/s.db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BUS_FAULT_POINT": "before_commit"},
        check=False,
    )
    assert done.returncode == FAULT_EXIT_CODE, done.stderr[-2000:]
    async with SqliteSagaStore(tmp_path / "s.db") as store:
        assert await store.list_sagas(SagaQuery()) == []
        assert await store.claim_outbox(now=utc_now(), limit=10, lease=timedelta(seconds=1)) == []
