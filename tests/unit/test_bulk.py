"""Bulk file reading: each line a message (with its attributes) or a reject with its reason."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from bus import Event, Registry
from bus.bulk import parse_mapping, read_csv, read_ndjson
from bus.errors import ConfigError

registry = Registry()


class Moved(Event, type="t.bulk.moved.v1", topic="t.bulk", key="person", registry=registry):
    person: str
    city: str
    floor: int = 0


def test_a_mapping_reads_pairs_separated_by_commas_or_lines_with_comments() -> None:
    assert parse_mapping("a=b, c = d\n# note\ne=f # why") == {"a": "b", "c": "d", "e": "f"}
    with pytest.raises(ConfigError, match="column=field"):
        parse_mapping("a")


def test_csv_rows_map_columns_to_fields_and_attributes_and_reject_bad_rows() -> None:
    text = "who,where,lvl,eid\np-1,Oslo,3,x-1\np-2,,1,x-2\np-3,Rome,,\n"
    mapping = {"who": "person", "where": "city", "lvl": "floor", "eid": "ce_id"}
    items, rejects = read_csv(io.StringIO(text), "t.bulk.moved.v1", mapping, registry)
    assert [(i.line, i.message, i.id) for i in items] == [
        (2, Moved(person="p-1", city="Oslo", floor=3), "x-1"),
        (4, Moved(person="p-3", city="Rome"), None),  # an empty cell: the default applies
    ]
    [reject] = rejects
    assert (reject.line, reject.raw) == (3, "p-2,,1,x-2")
    assert "city" in reject.reason


def test_a_mapped_column_missing_from_the_header_is_a_setting_error() -> None:
    with pytest.raises(ConfigError, match="not in the CSV header: nope"):
        read_csv(io.StringIO("a\n1\n"), "t.bulk.moved.v1", {"nope": "person"}, registry)


def test_ndjson_lines_keep_id_source_time_and_each_bad_line_says_why() -> None:
    lines = [
        b'{"type": "t.bulk.moved.v1", "id": "m-1", "source": "bus://x", '
        b'"time": "2026-01-02T03:04:05Z", "data": {"person": "p", "city": "c"}}',
        b"",
        b"not json",
        b'{"type": "t.bulk.moved.v1", "time": "yesterday", "data": {"person": "p", "city": "c"}}',
        b'{"type": "t.unknown.v1", "data": {}}',
    ]
    items, rejects = read_ndjson(lines, registry)
    [item] = items
    assert (item.id, item.source, item.time and item.time.isoformat()) == (
        "m-1",
        "bus://x",
        "2026-01-02T03:04:05+00:00",
    )
    now = datetime(2027, 1, 1, tzinfo=UTC)
    event = item.cloudevent("bus://cli", id="fresh", time=now)
    assert (event["id"], event["time"]) == ("m-1", "2026-01-02T03:04:05Z")  # the line's
    assert [r.line for r in rejects] == [3, 4, 5]
    assert all(r.reason for r in rejects)
