"""bus.ingest: NDJSON lines keep the ``id``, ``source`` and ``time`` they give (checked by
the CloudEvents rules), so a file sent twice is the same events twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from bus import Event, Publisher, Registry
from bus.errors import PayloadInvalidError
from bus.ingest import Inbound, parse_ndjson
from bus.transports.memory import MemoryTransport

REGISTRY = Registry()


class Hired(Event, type="unit.ingest.hired.v1", topic="unit.ingest", key="employee_id",
            registry=REGISTRY):  # fmt: skip
    employee_id: str


def line(**fields: object) -> bytes:
    return orjson.dumps({"type": Hired.bus_type, "data": {"employee_id": "e-1"}, **fields})


def test_a_line_keeps_its_id_source_and_time() -> None:
    [inbound] = parse_ndjson(
        [line(id="hire-e-1", source="bus://hr-import", time="2026-01-31T09:30:00+01:00")],
        REGISTRY,
    )
    assert inbound.id == "hire-e-1"
    assert inbound.source == "bus://hr-import"
    assert inbound.time == datetime(2026, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=1)))


def test_a_line_without_them_leaves_them_to_the_publisher() -> None:
    [inbound] = parse_ndjson([line()], REGISTRY)
    assert (inbound.id, inbound.source, inbound.time) == (None, None, None)


def test_the_envelope_of_a_line_sent_twice_is_the_same_event() -> None:
    text = [line(id="hire-e-1", source="bus://hr-import", time="2026-01-31T08:30:00Z")]
    publisher = Publisher(MemoryTransport(), source="bus://cli")

    def envelope(item: Inbound) -> tuple[str, str, datetime | None]:
        env = publisher.envelope(
            item.message, id=item.id, source=item.source, time=item.time, subject=item.subject
        )
        return env.id, env.source, env.time

    first = envelope(parse_ndjson(text, REGISTRY)[0])
    again = envelope(parse_ndjson(text, REGISTRY)[0])
    assert (
        first == again == ("hire-e-1", "bus://hr-import", datetime(2026, 1, 31, 8, 30, tzinfo=UTC))
    )


def test_the_publisher_generates_what_a_line_does_not_give() -> None:
    publisher = Publisher(MemoryTransport(), source="bus://cli", ids=lambda: "generated")
    [item] = parse_ndjson([line(id="given")], REGISTRY)
    env = publisher.envelope(item.message, id=item.id, source=item.source, time=item.time)
    assert (env.id, env.source) == ("given", "bus://cli")
    [plain] = parse_ndjson([line()], REGISTRY)
    assert publisher.envelope(plain.message, id=plain.id).id == "generated"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"time": "2024-01-01T10:00Z"}, "field 'time' '2024-01-01T10:00Z' is not an RFC 3339"),
        ({"time": "2024-01-01 10:00:00"}, "field 'time' .*not a space"),
        ({"time": "2024-01-01T10:00:00+25:00"}, "field 'time' .*out of range"),
        ({"time": 1700000000}, "field 'time' must be an RFC 3339 string"),
        ({"id": ""}, "field 'id' must be a non-empty string"),
        ({"id": 7}, "field 'id' must be a non-empty string"),
        ({"source": ""}, "field 'source' must be a non-empty string"),
        ({"subject": ""}, "field 'subject' must be a non-empty string"),
    ],
)
def test_a_bad_attribute_names_the_line_and_the_field(
    fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(PayloadInvalidError, match=f"line 2: {problem}"):
        parse_ndjson([line(), line(**fields)], REGISTRY)


def test_every_problem_of_a_line_is_named_at_once() -> None:
    bad = orjson.dumps({"type": Hired.bus_type, "data": {}, "id": "", "time": "2024-01-01T10:00Z"})
    with pytest.raises(PayloadInvalidError) as info:
        parse_ndjson([bad], REGISTRY)
    message = str(info.value)
    assert "field 'id'" in message
    assert "field 'time'" in message
    assert "field 'employee_id'" in message
