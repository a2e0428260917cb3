"""Fixtures for crash tests: a local S3 emulator and Tansu brokers on ``s3://`` storage."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from bus.devbroker import DevBroker
from tests.conftest import IN_CI, unique
from tests.crash.s3broker import S3Emulator, s3_dev_broker


@pytest.fixture(scope="session")
def s3_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    """A moto S3 server for the whole run. Under CI=true a missing or broken one fails."""
    if importlib.util.find_spec("moto") is None and not IN_CI:
        pytest.skip("the S3 emulator needs moto[server]: pip install -e '.[test]'")
    emulator = S3Emulator(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def s3_broker(
    s3_emulator: S3Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevBroker]:
    """A started Tansu on a fresh bucket; ``kill()`` then ``start()`` restarts it in place."""
    bucket = s3_emulator.create_bucket(unique("tansu").replace("_", "-"))
    broker = s3_dev_broker(
        s3_emulator, bucket=bucket, log_path=tmp_path_factory.mktemp("tansu-s3") / "tansu.log"
    )
    broker.start()
    yield broker
    broker.stop()
