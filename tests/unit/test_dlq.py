"""Dead-letter tooling: reading, filtering, formatting and replay decisions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import ConfigError, MemoryBroker, MemoryTransport, OutgoingRecord, Record
from bus.dead_letters import DROPPED_HEADER, dead_letter, without_original
from bus.dlq import (
    REPLAYS_HEADER,
    TABLE_HEADERS,
    DeadLetter,
    DeadLetterFilter,
    format_copies,
    format_detail,
    format_nothing_matched,
    format_summary,
    list_dead_letter_topics,
    newest_first,
    parse_since,
    plan_replay,
    read_dead_letters,
    replay_dead_letters,
    replay_record,
    table_rows,
    to_json,
)

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def consumed(
    headers: tuple[tuple[str, bytes], ...] = (("ce_id", b"ev-1"), ("ce_type", b"hr.hired.v1")),
    *,
    key: bytes | None = b"k-1",
    value: bytes | None = b'{"a":1}',
) -> Record:
    return Record("hr.events", 2, 41, key, value, headers)


def in_dlq(
    record: Record,
    offset: int = 0,
    *,
    reason: str = "invalid",
    error: BaseException | None = None,
    handler: str | None = "create_account",
    now: datetime = NOW,
) -> Record:
    out = dead_letter(
        record,
        topic="hr.events.dlq",
        reason=reason,
        error=error or ValueError("employee_id: field required"),
        app="identity",
        handler=handler,
        attempts=3,
        now=now,
    )
    return Record(out.topic, 0, offset, out.key, out.value, out.headers)


def test_a_dead_letter_reads_back_every_reason_header() -> None:
    d = DeadLetter.from_record(in_dlq(consumed(), offset=7))
    assert (d.id, d.location) == ("ev-1", "hr.events.dlq:0:7")
    assert (d.reason, d.error_type, d.error_message) == (
        "invalid",
        "builtins.ValueError",
        "employee_id: field required",
    )
    assert (d.app, d.handler, d.attempts, d.type, d.replays) == (
        "identity",
        "create_account",
        3,
        "hr.hired.v1",
        0,
    )
    assert (d.original_topic, d.original_partition, d.original_offset) == ("hr.events", 2, 41)
    assert d.time == NOW


def test_without_ce_id_the_id_is_the_location_and_missing_headers_are_none() -> None:
    d = DeadLetter.from_record(Record("x.dlq", 1, 9, None, b"\xff", ((REPLAYS_HEADER, b"x"),)))
    assert d.id == d.location == "x.dlq:1:9"
    assert d.reason is d.original_topic is d.time is d.attempts is None
    assert d.replays == 0
    assert d.has_id("x.dlq:1:9")


headers_st = st.lists(
    st.tuples(
        st.sampled_from(
            ["ce_id", "ce_type", "content-type", "bus_dlq_reason", "bus_retry_tier", "x", "bus_x"]
        ),
        st.binary(max_size=8),
    ),
    max_size=8,
)


@given(headers_st, st.binary(max_size=20) | st.none(), st.integers(0, 5))
def test_a_replay_keeps_key_value_and_headers_drops_reasons_and_counts_one_more(
    headers: list[tuple[str, bytes]], value: bytes | None, replays: int
) -> None:
    original = (*headers, (REPLAYS_HEADER, str(replays).encode())) if replays else tuple(headers)
    d = DeadLetter.from_record(in_dlq(consumed(original, value=value)))
    out = replay_record(d)
    assert (out.topic, out.key, out.value) == ("hr.events", b"k-1", value)
    kept = [h for h in headers if not h[0].startswith(("bus_dlq_", "bus_retry_"))]
    assert list(out.headers) == [*kept, (REPLAYS_HEADER, str(replays + 1).encode())]
    assert replay_record(d, to="elsewhere").topic == "elsewhere"


def test_a_replay_without_an_original_topic_asks_for_to() -> None:
    d = DeadLetter.from_record(Record("x.dlq", 0, 0, None, b"v", ()))
    with pytest.raises(ConfigError, match="--to TOPIC"):
        replay_record(d)
    assert replay_record(d, to="t").topic == "t"


@given(st.integers(1, 6))
def test_replaying_a_record_that_always_fails_stops_after_max_replays(max_replays: int) -> None:
    """Replay -> handler fails -> dead-lettered again -> replay ...: the loop ends."""
    record = in_dlq(consumed())
    sends = 0
    for round_no in range(max_replays + 5):
        plan = plan_replay([DeadLetter.from_record(record)], max_replays=max_replays)
        if not plan.send:
            [(_, why)] = plan.refused
            assert "--max-replays" in why
            break
        sends += 1
        [(_, out)] = plan.send
        redelivered = Record(out.topic, 0, round_no, out.key, out.value, out.headers)
        record = in_dlq(redelivered, offset=round_no + 1)
    assert sends == max_replays


def test_only_the_newest_copy_of_an_id_is_replayed() -> None:
    first = in_dlq(consumed(), offset=0)
    again = in_dlq(
        consumed((*consumed().headers, (REPLAYS_HEADER, b"1"))),
        offset=1,
        now=NOW + timedelta(minutes=5),
    )
    other = in_dlq(consumed((("ce_id", b"ev-2"),)), offset=2)
    letters = [DeadLetter.from_record(r) for r in (again, first, other)]
    plan = plan_replay(letters, max_replays=3)
    assert [(d.id, d.replays) for d, _ in plan.send] == [("ev-1", 1), ("ev-2", 0)]
    assert [d.location for d in plan.superseded] == ["hr.events.dlq:0:0"]
    assert dict(plan.send[0][1].headers)[REPLAYS_HEADER] == b"2"


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 4)), min_size=0, max_size=12
    ),
    st.integers(1, 4),
)
def test_a_plan_accounts_for_every_id_once(copies: list[tuple[str, int]], max_replays: int) -> None:
    letters = [
        DeadLetter.from_record(
            in_dlq(consumed((("ce_id", i.encode()), (REPLAYS_HEADER, str(n).encode()))), offset=off)
        )
        for off, (i, n) in enumerate(copies)
    ]
    plan = plan_replay(letters, max_replays=max_replays)
    acted = [d.id for d, _ in plan.send] + [d.id for d, _ in plan.refused]
    assert sorted(acted) == sorted({i for i, _ in copies})
    assert len(acted) + len(plan.superseded) == len(copies)
    for d, _ in plan.send:
        assert d.replays < max_replays
        assert d.replays == max(n for i, n in copies if i == d.id)


def test_filters_combine_and_match_patterns_text_and_time() -> None:
    d = DeadLetter.from_record(in_dlq(consumed(), error=KeyError("Missing 'seat'")))
    assert DeadLetterFilter().matches(d)
    assert DeadLetterFilter(type="hr.*", handler="create_*", topic="hr.events").matches(d)
    assert DeadLetterFilter(error="keyerror").matches(d)
    assert DeadLetterFilter(error="missing 'SEAT'").matches(d)
    assert not DeadLetterFilter(error="timeout").matches(d)
    assert not DeadLetterFilter(type="billing.*").matches(d)
    assert DeadLetterFilter(reason="invalid", since=NOW).matches(d)
    assert not DeadLetterFilter(since=NOW + timedelta(seconds=1)).matches(d)
    assert not DeadLetterFilter(reason="decode").matches(d)
    assert DeadLetterFilter(ids=frozenset(["ev-1"])).matches(d)
    assert DeadLetterFilter(ids=frozenset([d.location])).matches(d)
    assert not DeadLetterFilter(ids=frozenset(["ev-9"])).matches(d)


def test_since_takes_a_duration_or_an_rfc3339_time() -> None:
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-01T00:00:00Z", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    for bad in ("yesterday", "2026-11-01T00:00:00", "5y"):
        with pytest.raises(ConfigError, match="--since"):
            parse_since(bad, NOW)


def test_the_table_has_one_line_per_dead_letter_under_a_header() -> None:
    letters = [
        DeadLetter.from_record(in_dlq(consumed(), offset=0)),
        DeadLetter.from_record(Record("raw.dlq", 0, 3, None, b"junk", ())),
    ]
    head, *rows = [TABLE_HEADERS, *table_rows(letters)]
    assert list(head) == [
        "ID",
        "TIME",
        "TOPIC",
        "TYPE",
        "REASON",
        "HANDLER",
        "REPLAYS",
        "ERROR",
    ]
    assert list(rows[0][:7]) == [
        "ev-1",
        "2026-11-27T03:00:00Z",
        "hr.events",
        "hr.hired.v1",
        "invalid",
        "create_account",
        "0",
    ]
    assert "ValueError: employee_id: field required" in rows[0][7]
    assert rows[1][0] == "raw.dlq:0:3"


@given(st.binary(max_size=30), headers_st, st.binary(max_size=10) | st.none())
def test_json_and_detail_render_any_bytes(
    value: bytes, headers: list[tuple[str, bytes]], key: bytes | None
) -> None:
    d = DeadLetter.from_record(in_dlq(consumed(tuple(headers), key=key, value=value)))
    doc = orjson.loads(orjson.dumps(to_json(d)))
    assert doc["location"] == d.location
    assert len(doc["headers"]) == len(d.record.headers)
    text = format_detail(d)
    assert d.location in text
    assert "payload:" in text


def test_detail_pretty_prints_a_json_payload() -> None:
    d = DeadLetter.from_record(in_dlq(consumed(value=b'{"employee_id":"e-1","n":[1,2]}')))
    text = format_detail(d)
    assert '    "employee_id": "e-1",' in text
    assert "  bus_dlq_reason: invalid" in text
    assert to_json(d)["value"] == {"employee_id": "e-1", "n": [1, 2]}
    binary = DeadLetter.from_record(in_dlq(consumed(value=b"\xff\xfe")))
    assert to_json(binary)["value"] == {"base64": "//4="}


# -- the I/O part on the memory transport ----------------------------------------------
async def test_reading_stops_at_the_end_seen_first_so_a_replay_into_a_dlq_is_not_reread() -> None:
    transport = MemoryTransport(MemoryBroker(default_partitions=2))
    await transport.start()
    for i in range(5):
        record = in_dlq(consumed((("ce_id", f"ev-{i}".encode()),)), offset=i)
        await transport.publish(
            OutgoingRecord(record.topic, record.key, record.value, record.headers)
        )
    await transport.publish(OutgoingRecord("hr.events", None, b"not a dead letter"))
    topics = await list_dead_letter_topics(transport)
    assert topics == ["hr.events.dlq"]
    assert await list_dead_letter_topics(transport, ["hr.events"]) == ["hr.events.dlq"]
    with pytest.raises(ConfigError, match=r"nope\.dlq"):
        await list_dead_letter_topics(transport, ["nope"])

    letters = await read_dead_letters(transport, topics)
    assert sorted(d.id for d in letters) == [f"ev-{i}" for i in range(5)]
    # replay into the dead-letter topic itself: the next read sees them, this one did not
    plan = plan_replay(letters, max_replays=3, to="hr.events.dlq")
    progress: list[tuple[int, int]] = []
    sent = await replay_dead_letters(transport, plan, on_progress=lambda *p: progress.append(p))
    assert sent == 5
    assert progress[-1] == (5, 5)
    again = await read_dead_letters(transport, topics)
    assert len(again) == 10
    assert sorted(d.replays for d in again) == [0] * 5 + [1] * 5
    assert await read_dead_letters(transport, []) == []
    some = await read_dead_letters(
        transport, topics, keep=DeadLetterFilter(ids=frozenset(["ev-3"])).matches
    )
    assert [(d.id, d.replays) for d in some] == [("ev-3", 0), ("ev-3", 1)]
    await transport.stop()


async def test_topics_read_in_parallel_come_back_in_the_order_given_then_by_offset() -> None:
    transport = MemoryTransport(MemoryBroker(default_partitions=3))
    await transport.start()
    topics = [f"t{n}.dlq" for n in range(7)]
    for n in range(21):  # keys spread each topic's letters over its partitions
        record = in_dlq(consumed((("ce_id", f"ev-{n}".encode()),), key=f"k-{n}".encode()))
        await transport.publish(
            OutgoingRecord(topics[n % 7], record.key, record.value, record.headers)
        )
    given = [topics[n] for n in (3, 0, 6, 1, 5, 2, 4)]
    progress: list[tuple[int, int]] = []
    letters = await read_dead_letters(
        transport, [*given, given[0]], concurrency=2, on_progress=lambda *p: progress.append(p)
    )
    where = [(d.record.topic, d.record.partition, d.record.offset) for d in letters]
    assert len(where) == 21  # every letter once, a topic named twice read once
    assert where == sorted(where, key=lambda w: (given.index(w[0]), w[1], w[2]))
    assert progress[-1] == (7, 7)
    with pytest.raises(ConfigError, match="concurrency"):
        await read_dead_letters(transport, given, concurrency=0)
    await transport.stop()


def test_the_python_example_in_docs_dlq_runs() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "dlq.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    exec(compile(code, "docs/dlq.md", "exec"), {"__name__": "docs_example"})


def test_detail_shows_control_characters_as_base64_not_raw() -> None:
    d = DeadLetter.from_record(
        in_dlq(consumed((("ce_id", b"ev-1"), ("x-bin", b"\x1b[2J")), value=b"\x00\x01 hi"))
    )
    text = format_detail(d)
    assert "\x1b" not in text
    assert "\x00" not in text
    assert "  x-bin: base64:G1sySg==" in text
    assert "(5 bytes, not printable text; base64)\n  AAEgaGk=" in text


def test_a_dead_letter_too_large_to_keep_whole_says_what_it_left_out_and_is_not_replayed() -> None:
    full = dead_letter(
        consumed(key=b"k-1", value=b"v" * 100),
        topic="hr.events.dlq",
        reason="decode",
        error=ValueError("x"),
        app="a",
        handler=None,
        attempts=0,
        now=NOW,
    )
    no_value = without_original(full)
    assert (no_value.key, no_value.value) == (b"k-1", None)
    assert no_value.headers[:-1] == full.headers
    assert no_value.headers[-1] == (DROPPED_HEADER, b"value=100")
    bare = without_original(full, headers_too=True)
    assert bare.key is None
    assert [k for k, _ in bare.headers if not k.startswith("bus_dlq_")] == []
    assert dict(bare.headers)[DROPPED_HEADER] == b"value=100 key=3 headers=27"

    d = DeadLetter.from_record(Record("hr.events.dlq", 0, 0, None, None, no_value.headers))
    assert d.dropped == "value=100"
    plan = plan_replay([d], max_replays=3)
    assert plan.send == ()
    [(_, why)] = plan.refused
    assert "too large to keep" in why
    assert "hr.events[2]@41" in why
    assert "dropped:   value=100" in format_detail(d)


def test_a_structured_mode_event_is_known_by_its_id_and_type() -> None:
    event = {"specversion": "1.0", "id": "ev-9", "source": "s", "type": "hr.hired.v1", "data": {}}
    headers = (("content-type", b"application/cloudevents+json"),)
    d = DeadLetter.from_record(in_dlq(consumed(headers, value=orjson.dumps(event))))
    assert (d.id, d.type) == ("ev-9", "hr.hired.v1")
    broken = DeadLetter.from_record(in_dlq(consumed(headers, value=b"{not json"), offset=3))
    assert (broken.id, broken.type) == ("hr.events.dlq:0:3", None)


# --- the operator's first hour: what list, show and replay say ------------------------


def test_the_list_summary_counts_the_topics_holding_dead_letters_not_the_topics_read() -> None:
    one_topic = [DeadLetter.from_record(in_dlq(consumed(), offset=n)) for n in range(3)]
    assert format_summary(one_topic) == "3 dead letter(s) in 1 topic(s)"
    elsewhere = DeadLetter.from_record(Record("raw.dlq", 0, 3, None, b"junk", ()))
    assert format_summary([*one_topic, elsewhere]) == "4 dead letter(s) in 2 topic(s)"
    assert format_summary([]) == "0 dead letter(s) in 0 topic(s)"


def test_show_gives_the_newest_copy_of_an_id_and_names_the_older_ones() -> None:
    first = in_dlq(consumed(), offset=0, error=ValueError("first failure"))
    again = in_dlq(
        consumed((*consumed().headers, (REPLAYS_HEADER, b"1"))),
        offset=1,
        error=ValueError("failed again"),
        now=NOW + timedelta(minutes=5),
    )
    letters = [DeadLetter.from_record(r) for r in (first, again)]  # read oldest first
    text = format_copies(letters)
    assert text.count("id:        ev-1") == 1  # one copy shown
    assert "location:  hr.events.dlq:0:1" in text  # the newest
    assert "failed again" in text
    assert "first failure" not in text
    assert "copies:    2 with this ID; this is the newest, older: hr.events.dlq:0:0" in text
    assert [d.location for d in newest_first(letters)] == [
        "hr.events.dlq:0:1",
        "hr.events.dlq:0:0",
    ]


def test_show_of_a_single_copy_says_nothing_about_copies() -> None:
    text = format_copies([DeadLetter.from_record(in_dlq(consumed()))])
    assert "copies:" not in text
    assert text == format_detail(DeadLetter.from_record(in_dlq(consumed())))


def test_a_replay_that_matches_nothing_says_so() -> None:
    said = format_nothing_matched(["hr.events.dlq"])
    assert said.startswith("nothing matched: no dead letter in hr.events.dlq matches")
    assert "nothing was replayed" in said
    assert "none exists" in format_nothing_matched([])
