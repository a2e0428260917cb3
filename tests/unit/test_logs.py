"""Which aiokafka lines are dropped while a broker is unreachable, and which stay."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.logs import configure_logging, is_connection_noise

# lines aiokafka 0.14 logged about a hundred times a second while Tansu was down
SEEN_WHILE_DOWN = [
    ("aiokafka", logging.ERROR, "Unable connect to node with id 111: [Errno 111] Connect call failed ('127.0.0.1', 5)"),
    ("aiokafka.cluster", logging.ERROR, "Unable to update metadata from [111]"),
    ("aiokafka.producer.sender", logging.WARNING, "Got error produce response: NodeNotReadyError: Attempt to send a request to node which is not ready (node id 111)."),
    ("aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch messages from 111: KafkaConnectionError: Connection at 127.0.0.1:5 closed"),
    ("aiokafka.consumer.group_coordinator", logging.ERROR, "Group Coordinator Request failed: NodeNotReadyError: Attempt to send a request to node which is not ready (node id 111)."),
    ("aiokafka.consumer.group_coordinator", logging.WARNING, "Marking the coordinator dead (node 111)for group g."),
]  # fmt: skip


@pytest.mark.parametrize(("logger", "level", "message"), SEEN_WHILE_DOWN)
def test_aiokafka_lines_about_one_failed_try_are_noise(
    logger: str, level: int, message: str
) -> None:
    assert is_connection_noise(logger, level, message)


def test_other_aiokafka_lines_and_critical_ones_stay() -> None:
    assert not is_connection_noise(
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        "OffsetCommit failed: UnknownMemberIdError",
    )
    assert not is_connection_noise("aiokafka", logging.CRITICAL, "Unable connect to node with id 1")  # fmt: skip


@given(st.text(), st.sampled_from([logging.INFO, logging.WARNING, logging.ERROR]), st.text())
def test_lines_of_other_loggers_are_never_dropped(logger: str, level: int, message: str) -> None:
    if not logger.startswith("aiokafka"):
        assert not is_connection_noise(logger, level, message)


def test_configured_logging_drops_the_noise_but_keeps_the_transport_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, aiokafka = logging.getLogger(), logging.getLogger("aiokafka")
    handlers, level, aiokafka_level = root.handlers[:], root.level, aiokafka.level
    try:
        configure_logging(level="INFO")
        logging.getLogger("aiokafka.cluster").error("Unable to update metadata from [111]")
        logging.getLogger("bus.kafka").warning("kafka: broker x unreachable")
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        aiokafka.setLevel(aiokafka_level)
    assert "unreachable" in err
    assert "Unable to update metadata" not in err
