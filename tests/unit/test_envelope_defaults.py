"""with_defaults fills what an event left out and keeps every attribute it set."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from bus.envelope import Envelope, with_defaults

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_an_event_without_optional_attributes_gets_the_defaults() -> None:
    bare = Envelope("id-1", "/hr", "hr.hired.v1", b"{}", datacontenttype=None)
    filled = with_defaults(bare, time=RECEIVED, subject="emp-1")
    assert filled == bare._replace(
        time=RECEIVED,
        subject="emp-1",
        datacontenttype="application/json",
        correlationid="id-1",
    )
    assert type(filled) is Envelope


def test_every_attribute_an_event_set_is_kept() -> None:
    full = Envelope(
        "id-1",
        "/hr",
        "hr.hired.v1",
        b"<x/>",
        time=datetime(2025, 1, 1, tzinfo=UTC),
        subject="own subject",
        datacontenttype="application/xml",
        dataschema="https://example.com/s",
        correlationid="corr",
        causationid="cause",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        extensions=MappingProxyType({"tenant": "a"}),
        specversion="1.0",
    )
    assert with_defaults(full, time=RECEIVED, subject="emp-1") == full
