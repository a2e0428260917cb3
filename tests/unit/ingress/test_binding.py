"""HTTP requests -> CloudEvents: the three content modes and their field errors."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from bus.ingress.binding import content_mode, read_events
from bus.ingress.problems import RefusedError

BINARY = [
    ("ce-specversion", "1.0"),
    ("ce-id", "id-1"),
    ("ce-source", "/hr"),
    ("ce-type", "hr.employee.hired.v1"),
    ("ce-time", "2026-01-02T03:04:05Z"),
    ("Ce-Subject", "Euro%20%E2%82%AC"),
    ("ce-tenant", "acme"),
    ("Accept", "*/*"),
]
EVENT = {
    "specversion": "1.0",
    "id": "id-1",
    "source": "/hr",
    "type": "hr.employee.hired.v1",
    "data": {"employee_id": "e-1"},
}


def refusal(content_type: str | None, headers: list[tuple[str, str]], body: bytes) -> RefusedError:
    with pytest.raises(RefusedError) as raised:
        read_events(content_type, headers, body)
    return raised.value


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        ("application/cloudevents-batch+json; charset=UTF-8", "batch"),
        ("Application/CloudEvents+json", "structured"),
        ("application/json", "binary"),
        (None, "binary"),
    ],
)
def test_the_content_type_selects_the_mode(content_type: str | None, mode: str) -> None:
    assert content_mode(content_type) == mode


def test_binary_mode_reads_attributes_from_ce_headers_case_insensitively() -> None:
    [event] = read_events("application/json; charset=utf-8", BINARY, b'{"employee_id":"e-1"}')
    assert (event.id, event.source, event.type) == ("id-1", "/hr", "hr.employee.hired.v1")
    assert event.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.subject == "Euro \u20ac"
    assert event.extensions == {"tenant": "acme"}
    assert event.datacontenttype == "application/json; charset=utf-8"
    assert event.data == b'{"employee_id":"e-1"}'


def test_binary_mode_reports_every_bad_header_at_once() -> None:
    headers = [
        ("ce-specversion", "0.3"),
        ("ce-id", "a"),
        ("ce-id", "b"),
        ("ce-my-ext", "x"),
        ("ce-datacontenttype", "application/json"),
        ("ce-subject", "%C0%A0"),
    ]
    refused = refusal("application/json", headers, b"{}").refusal
    assert refused.status == 400
    fields = sorted(e.field for e in refused.errors)
    assert fields == [
        "ce-datacontenttype", "ce-id", "ce-my-ext", "ce-source", "ce-specversion",
        "ce-subject", "ce-type",
    ]  # fmt: skip
    assert all(e.event == 0 for e in refused.errors)


def test_a_bad_time_is_a_field_error_on_ce_time() -> None:
    headers = [*BINARY[:4], ("ce-time", "yesterday")]
    [error] = refusal("application/json", headers, b"{}").refusal.errors
    assert error.field == "ce-time"


def test_no_cloudevent_at_all_and_non_json_data_are_unsupported_media() -> None:
    assert refusal("text/plain", [], b"hello").refusal.status == 415
    assert refusal("text/xml", BINARY, b"<a/>").refusal.status == 415
    assert refusal("application/cloudevents+avro", [], b"\x00").refusal.status == 415


def test_structured_mode_reads_the_event_from_the_body() -> None:
    [event] = read_events("application/cloudevents+json", [], orjson.dumps(EVENT))
    assert event.id == "id-1"
    assert orjson.loads(event.data) == {"employee_id": "e-1"}


def test_structured_mode_refuses_a_body_that_is_not_an_event() -> None:
    assert refusal("application/cloudevents+json", [], b"[").refusal.status == 400
    [error] = refusal("application/cloudevents+json", [], b"[]").refusal.errors
    assert error.field == "(body)"
    missing = {k: v for k, v in EVENT.items() if k != "source"}
    [error] = refusal("application/cloudevents+json", [], orjson.dumps(missing)).refusal.errors
    assert (error.field, error.event) == ("source", 0)


def test_a_batch_is_read_whole_or_refused_with_every_bad_event_indexed() -> None:
    good = [EVENT, {**EVENT, "id": "id-2"}]
    events = read_events("application/cloudevents-batch+json", [], orjson.dumps(good))
    assert [e.id for e in events] == ["id-1", "id-2"]
    bad = [EVENT, {**EVENT, "id": ""}, 7, {**EVENT, "specversion": "0.3", "time": "x"}]
    refused = refusal("application/cloudevents-batch+json", [], orjson.dumps(bad)).refusal
    assert refused.status == 400
    assert sorted((e.event, e.field) for e in refused.errors) == [
        (1, "id"),
        (2, "(event)"),
        (3, "specversion"),
    ]


def test_an_empty_batch_holds_no_events() -> None:
    assert read_events("application/cloudevents-batch+json", [], b"[]") == []
