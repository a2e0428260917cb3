"""The pure half of bus.client: events built once, answers read, Retry-After honoured."""

from __future__ import annotations

from datetime import UTC, datetime

from bus import Event, Registry
from bus.client_events import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    Answer,
    Retry,
    batch_body,
    cloudevent,
    outcome,
    refusal_error,
    retry_after_s,
    retry_wait_s,
)
from bus.errors import PublishRefusedError

registry = Registry()


class Noted(Event, type="t.client.noted.v1", topic="t.c", key="k", registry=registry):
    k: str


def test_an_event_carries_the_id_source_time_subject_and_data_given() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    doc = cloudevent(Noted(k="a"), source="bus://x", id="i-1", time=when, subject="s")
    assert doc == {
        "specversion": "1.0",
        "id": "i-1",
        "source": "bus://x",
        "type": "t.client.noted.v1",
        "time": "2026-01-02T03:04:05.600000Z",
        "subject": "s",
        "data": {"k": "a"},
    }


def test_one_event_is_structured_and_several_are_a_batch() -> None:
    one = cloudevent(Noted(k="a"), source="s", id="i", time=datetime.now(UTC))
    assert batch_body([one])[1] == STRUCTURED_CONTENT_TYPE
    assert batch_body([one, one])[1] == BATCH_CONTENT_TYPE


def test_a_problem_document_becomes_an_error_with_its_field_errors() -> None:
    body = b'{"title": "invalid events", "status": 400, "errors": [{"field": "data.k", "message": "Field required", "event": 1}]}'
    error = refusal_error(400, body)
    assert (error.status, error.title, error.retryable) == (400, "invalid events", False)
    assert str(error) == "400 invalid events: data.k: Field required (event 1)"
    assert refusal_error(502, b"<html>bad gateway</html>").title == "<html>bad gateway</html>"
    assert refusal_error(429, b"").retryable


def test_retry_after_is_read_as_seconds_and_anything_else_is_the_default() -> None:
    assert retry_after_s("3", 0.5) == 3.0
    assert retry_after_s(None, 0.5) == 0.5
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 0.5) == 0.5
    assert Answer.of(b'{"accepted": 3, "duplicates": 1}') == Answer(3, 1)


def test_an_answer_is_accepted_worth_a_retry_after_what_it_asked_or_refused() -> None:
    assert outcome(202, b'{"accepted": 2, "duplicates": 0}', None) == Answer(2, 0)
    assert outcome(
        202, b'{"accepted": 2, "duplicates": 1, "ids": ["a", "b"], "duplicate_ids": ["b"]}', None
    ) == Answer(2, 1, ("a", "b"), ("b",))
    assert outcome(503, b"", "2") == Retry("503: 503 refused", 2.0)
    assert outcome(429, b"", None) == Retry("429: 429 refused", 0.5)
    refused = outcome(403, b'{"title": "forbidden"}', "9")
    assert isinstance(refused, PublishRefusedError)
    assert (refused.status, refused.title) == (403, "forbidden")


def test_the_wait_before_a_retry_is_what_was_asked_else_a_backoff_both_capped() -> None:
    assert retry_wait_s(3.0, 1, 10.0) == 3.0
    assert retry_wait_s(30.0, 1, 10.0) == 10.0
    assert [retry_wait_s(None, n, 1.0) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_an_answer_carries_the_ids_and_tolerates_their_absence_or_junk() -> None:
    body = b'{"accepted": 3, "duplicates": 1, "ids": ["a", "b", "a"], "duplicate_ids": ["a"]}'
    assert Answer.of(body) == Answer(3, 1, ids=("a", "b", "a"), duplicate_ids=("a",))
    assert Answer.of(b'{"accepted": 1, "duplicates": 0, "ids": "a"}') == Answer(1, 0)
    assert Answer.of(b'{"accepted": 2, "duplicates": 0, "ids": ["a", 7, null]}') == Answer(
        2, 0, ids=("a",)
    )
    assert Answer.of(b'{"ids": ["a"]}') == Answer(0, 0)  # no counts: junk, as before
    assert Answer.of(b"[1]") == Answer(0, 0)


def test_answers_add_up_counts_and_ids_in_order() -> None:
    first = Answer(2, 1, ("a", "b"), ("b",))
    second = Answer(1, 0, ("c",), ())
    assert first + second == Answer(3, 1, ("a", "b", "c"), ("b",))
    assert Answer(0, 0) + first == first
