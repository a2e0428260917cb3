"""The pure half of :mod:`bus.client`: messages as structured CloudEvents, what an answer
means (accepted, try again after ``Retry-After``, refused) and how long to wait before the
next attempt.

An event's ``id``, ``source`` and ``time`` are fixed when it is built, before the first
attempt, so a retried request carries the same events and an ingress with a dedup store
answers it as duplicates instead of publishing twice.

Example::

    doc = cloudevent(EmployeeHired(employee_id="e-1", name="Ada"), source="bus://hr",
                     id=new_id(), time=utc_now())
    body = batch_body([doc])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bus.errors import PublishRefusedError
from bus.message import Message

__all__ = [
    "BATCH_CONTENT_TYPE",
    "RETRY_STATUSES",
    "STRUCTURED_CONTENT_TYPE",
    "Answer",
    "Retry",
    "batch_body",
    "cloudevent",
    "outcome",
    "refusal_error",
    "retry_after_s",
    "retry_wait_s",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
#: Answers worth retrying: over the rate, the ingress full or the broker gone.
RETRY_STATUSES = frozenset({429, 503})


def cloudevent(
    message: Message,
    *,
    source: str,
    id: str,
    time: datetime,
    subject: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``message`` as a CloudEvent in the JSON format (the caller draws ``id`` and ``time``)."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": message.bus_type,
        "time": time.isoformat().replace("+00:00", "Z"),
    }
    if subject is not None:
        doc["subject"] = subject
    doc.update(extensions or {})
    doc["data"] = message.model_dump(mode="json")
    return doc


def batch_body(events: Sequence[Mapping[str, Any]]) -> tuple[bytes, str]:
    """The request body and content type: one event structured, several batched."""
    if len(events) == 1:
        return orjson.dumps(events[0]), STRUCTURED_CONTENT_TYPE
    return orjson.dumps(list(events)), BATCH_CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class Answer:
    """What a 202 said: events accepted, of which duplicates (accepted before).

    Example::

        Answer.of(b'{"accepted": 1, "duplicates": 0, "ids": ["e-1"], "duplicate_ids": []}')
    """

    accepted: int
    duplicates: int
    #: The accepted events' ids, in request order (empty from an ingress that did not say).
    ids: tuple[str, ...] = ()
    #: Those of ``ids`` not published now: accepted before, or twice in the request.
    duplicate_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, body: bytes) -> Answer:
        try:
            doc = orjson.loads(body)
            accepted, duplicates = int(doc["accepted"]), int(doc["duplicates"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return cls(0, 0)
        return cls(
            accepted, duplicates, _strings(doc.get("ids")), _strings(doc.get("duplicate_ids"))
        )

    def __add__(self, other: Answer) -> Answer:
        """Both answers as one (the batches of one flush)."""
        return Answer(
            self.accepted + other.accepted,
            self.duplicates + other.duplicates,
            self.ids + other.ids,
            self.duplicate_ids + other.duplicate_ids,
        )


def _strings(value: object) -> tuple[str, ...]:
    """A list of ids, else nothing (an answer's junk is tolerated, as its counts')."""
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def refusal_error(status: int, body: bytes) -> PublishRefusedError:
    """The problem document of a refusal (or whatever came back) as a bus error."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        text = body.decode(errors="replace").strip()[:200]
        return PublishRefusedError(status, text or "refused")
    errors = doc.get("errors")
    return PublishRefusedError(
        status,
        str(doc.get("title") or "refused"),
        [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else None,
    )


def retry_after_s(header: str | None, default_s: float) -> float:
    """Seconds to wait per ``Retry-After`` (delta seconds; a date is taken as the default)."""
    if header is None:
        return default_s
    try:
        return max(0.0, float(header))
    except ValueError:
        return default_s


#: Seconds to wait for a 503/429 that did not say how long (``Retry-After``).
DEFAULT_RETRY_AFTER_S = 0.5


@dataclass(frozen=True, slots=True)
class Retry:
    """An answer worth another attempt: why, and the wait it asked for (None: it said none)."""

    why: str
    wait_s: float | None


def outcome(
    status: int, body: bytes, retry_after: str | None
) -> Answer | Retry | PublishRefusedError:
    """What the ingress's answer to a batch means: accepted (202), try again (429/503, after
    ``Retry-After``), or refused with the problem's field errors.

    Example::

        assert outcome(503, b"", "2") == Retry("503: 503 refused", 2.0)
    """
    if status == 202:
        return Answer.of(body)
    if status in RETRY_STATUSES:
        why = f"{status}: {refusal_error(status, body)}"
        return Retry(why, retry_after_s(retry_after, DEFAULT_RETRY_AFTER_S))
    return refusal_error(status, body)


def retry_wait_s(asked_s: float | None, attempt: int, max_wait_s: float) -> float:
    """Seconds before attempt ``attempt + 1``: what the answer asked (``Retry-After``), else
    an exponential backoff from 0.1 s; never more than ``max_wait_s``."""
    if asked_s is not None:
        return min(max_wait_s, asked_s)
    return min(max_wait_s, 0.1 * 2.0 ** (attempt - 1))
