"""The live ingress against its own /openapi.json (schemathesis): whatever a client sends
within or around the documented schemas, the answer is documented and never a 5xx."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bus.devbroker import DevBroker
from tests.conftest import unique
from tests.integration.test_ingress_cli import start_ingress

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def ingress_url(kafka_broker: DevBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_ingress(
        kafka_broker,
        unique("schemathesis"),
        tmp_path_factory.mktemp("schemathesis"),
        env={"BUS_INGRESS_DEDUP_STORE": "memory"},
    )
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_every_answer_of_the_live_ingress_is_documented_and_none_is_a_5xx(
    ingress_url: str,
) -> None:
    # the operations' strategies driven by hypothesis directly: schemathesis's pytest
    # plugin (from_fixture) does not run on this pytest
    schema = schemathesis.openapi.from_url(ingress_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/events"}
    statuses: list[int] = []
    for operation in operations:
        check_operation(operation.as_strategy(), statuses)
    assert len(statuses) >= 50  # the examples did reach the server
    assert 202 in statuses  # valid events among them were published


def check_operation(strategy: st.SearchStrategy[Case], statuses: list[int]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Case) -> None:
        response = case.call_and_validate(
            headers={"Authorization": "Bearer cli-token"},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
            timeout=30,
        )
        statuses.append(response.status_code)

    run()
