"""A broker that fails deliveries after they were queued ends nothing: the coordinator's
run logs and retries, the handlers' worker sends again, and the saga completes once the
broker is back (memory transport, ``MemoryBroker.fail_deliveries``; the Kafka side is in
tests/crash/test_delivery_failure.py and test_broker_restart.py)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from bus import MemoryBroker, MemoryTransport, Publisher, TransportError
from handlers.identity.contracts import CreateAccount
from sagas import Catalog, SagaStatus
from sagas.coordinator import Coordinator
from sagas.definitions.onboarding import onboarding
from sagas.stores import MemorySagaStore
from sagas.testing import SagaTestKit
from tests.integration.test_onboarding_handlers import World, hire
from tests.waiting import wait_until


async def test_the_saga_completes_once_the_broker_is_back_after_late_delivery_failures() -> None:
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(hire("e-1"))
        kit.broker.fail_deliveries()  # the broker goes away: the relay's sends fail late
        with pytest.raises(TransportError) as failed:
            await kit.drain()
        assert failed.value.retryable
        assert kit.commands() == []
        kit.broker.deliver_again()
        await kit.advance(kit.coordinator.relay.lease)  # the failed batch's claim runs out
        assert await kit.status("onboarding:e-1") == SagaStatus.COMPLETED
    assert list(w.payroll.records) == ["e-1"]


async def test_a_handler_output_whose_delivery_fails_late_is_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "bus")
    w = World()
    async with SagaTestKit(onboarding, apps=w.apps) as kit:
        await kit.publish(hire("e-2"))
        await wait_until(
            lambda: kit.store.load("onboarding:e-2"), timeout_s=10, what="the saga started"
        )
        await kit.coordinator.tick()  # CreateAccount published (the kit runs no relay task)
        assert len(kit.commands(CreateAccount)) == 1
        kit.broker.fail_deliveries(count=1)  # the identity handler's reply fails late
        await kit.drain()
        assert await kit.status("onboarding:e-2") == SagaStatus.COMPLETED
    assert list(w.payroll.records) == ["e-2"]
    # the worker read the failure as the bus error the transport made, and sent again
    assert "1 send(s) failed" in caplog.text
    assert "TransportError('memory broker: delivery failed (injected)')" in caplog.text


async def test_coordinator_run_logs_a_failed_relay_and_goes_on_once_the_broker_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "sagas")
    broker = MemoryBroker(default_partitions=3)
    transport = MemoryTransport(broker)
    await transport.start()
    await Publisher(transport, source="bus://hr").publish(hire("e-3"))
    coordinator = Coordinator(Catalog([onboarding]), MemorySagaStore(), transport)
    coordinator.relay.lease = timedelta(seconds=0.2)
    broker.fail_deliveries()
    stop = asyncio.Event()
    run = asyncio.create_task(coordinator.run(stop))
    try:
        async with asyncio.timeout(20):
            while "retrying in 1s" not in caplog.text:
                assert not run.done(), run.exception()
                await asyncio.sleep(0.02)
        broker.deliver_again()
        async with asyncio.timeout(20):
            while not broker.records(CreateAccount.bus_topic):
                assert not run.done(), run.exception()
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(run, 20)
        await transport.stop()
    assert "injected" in caplog.text  # the bus error was logged, not raised out of run
