"""What the ingress answers when it refuses a request: a status and every problem found.

A refusal is an RFC 9457 problem document (``application/problem+json``) with an
``errors`` list a client can act on: which event of the request (its index in a batch),
which field (``ce-id``, ``data.employee_id``) and what is wrong. Pure values: the shell
turns a :class:`Refusal` into an HTTP response.

Example::

    refusal = Refusal(400, "invalid events", (FieldError("data.name", "Field required", 0),))
    refusal.body()   # b'{"type":"about:blank","title":"invalid events","status":400,...}'
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = ["PROBLEM_CONTENT_TYPE", "FieldError", "Refusal", "RefusedError"]

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one event."""

    #: The attribute or header (``ce-type``, ``id``) or ``data.<path>`` of the payload;
    #: ``(body)`` for the request body as a whole.
    field: str
    #: What is wrong, for people.
    message: str
    #: The event's index in a batch request (0 for a single event), or None for the request.
    event: int | None = None

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"field": self.field, "message": self.message}
        if self.event is not None:
            found["event"] = self.event
        return found


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused: its status, a title, the field errors, and when to try again."""

    #: HTTP status: 400, 401, 403, 413, 415, 422, 429, 503.
    status: int
    #: One line saying why.
    title: str
    #: Every problem found (all at once: a client fixes them in one go).
    errors: tuple[FieldError, ...] = ()
    #: Seconds after which trying again may succeed (the ``Retry-After`` header), if any.
    retry_after_s: float | None = None

    def body(self) -> bytes:
        doc: dict[str, object] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.errors:
            doc["errors"] = [e.as_dict() for e in self.errors]
        return orjson.dumps(doc)

    def headers(self) -> dict[str, str]:
        found = {"Content-Type": PROBLEM_CONTENT_TYPE}
        if self.retry_after_s is not None:
            # whole seconds, rounded up: Retry-After has no fractions (RFC 9110 10.2.3)
            found["Retry-After"] = str(max(1, -int(-self.retry_after_s // 1)))
        if self.status == 401:
            found["WWW-Authenticate"] = 'Bearer realm="bus-ingress"'
        return found


class RefusedError(Exception):
    """Raised inside the ingress to answer with ``refusal`` (never leaves the ingress)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.title)
        self.refusal = refusal
