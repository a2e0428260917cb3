"""A publish that gave up waiting logs, once, what became of its records later."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NodeNotReadyError

from bus.config import KafkaConfig
from bus.record import OutgoingRecord
from bus.transports.kafka_delivery import KafkaDelivery, report_late_outcome
from tests.waiting import wait_until


def _pending(n: int) -> tuple[list[asyncio.Future[Any]], list[KafkaDelivery]]:
    config = KafkaConfig.from_env({}, bootstrap_servers="127.0.0.1:1")
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(n)]
    record = OutgoingRecord("orders", b"k", b"v")
    return futures, [KafkaDelivery(f, record, config) for f in futures]


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "publish gave up on" in r.getMessage()]


async def test_records_that_fail_after_publish_gave_up_are_logged_as_never_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bus.kafka")
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    futures, deliveries = _pending(3)
    report_late_outcome(deliveries)
    futures[0].set_result(object())
    futures[1].set_exception(NodeNotReadyError("node 111 is not ready"))
    futures[2].set_exception(KafkaTimeoutError())

    (line,) = await wait_until(lambda: _lines(caplog), timeout_s=5, what="the late outcome")
    assert line.levelno == logging.WARNING
    assert "2 of 3 record(s) to 'orders'" in line.getMessage()
    assert "failed for good (never delivered" in line.getMessage()
    assert "1 were delivered late" in line.getMessage()
    # every outcome was read: no "Future exception was never retrieved" when they go
    del futures, deliveries
    gc.collect()
    assert errors == []


async def test_records_delivered_after_publish_gave_up_are_logged_as_delivered_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bus.kafka")
    futures, deliveries = _pending(2)
    report_late_outcome(deliveries)
    for future in futures:
        future.set_result(object())
    (line,) = await wait_until(lambda: _lines(caplog), timeout_s=5, what="the late outcome")
    assert line.levelno == logging.INFO
    assert "2 record(s) to 'orders' that publish gave up on were delivered late" in (
        line.getMessage()
    )
