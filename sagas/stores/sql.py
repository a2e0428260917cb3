"""What the SQL saga stores share: the parsed-state cache, headers and gauges as rows.

:class:`~sagas.stores.sqlite.SqliteSagaStore` and
:class:`~sagas.stores.postgres.PostgresSagaStore` import this module and
:mod:`sagas.stores.base`, never each other: their SQL dialects differ, their row encoding
does not.

Example::

    row = (e.id, e.saga_id, e.topic, e.key, e.value, encode_headers(e.headers), to_ms(e.at))
    state = states.parse(saga_id, revision, row_json)       # a StateCache
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from bus import OutgoingRecord
from sagas.state import SagaState
from sagas.stores.base import (
    RevisionConflictError,
    SagaWrite,
    SetAsideInput,
    StoredSaga,
    StoreGauges,
    UnreadableSaga,
    Write,
    from_ms,
    parse_error,
    to_ms,
)

__all__ = [
    "STATE_COLUMNS",
    "StateCache",
    "decode_headers",
    "decode_state",
    "encode_headers",
    "gauges_from_rows",
    "revision_conflict",
    "set_aside_from_row",
    "set_aside_row",
]


class StateCache:
    """The states a SQL store wrote last, parsed, by saga and revision.

    Each input of a running saga loads its state, and parsing its JSON again cost about as
    much as deciding the transition (an onboarding state: ~70 us). A revision names one
    content forever (every write by anyone increments it), so the stored row's revision
    says whether the state kept here is still the stored one; only states written by this
    store after their commit are kept, never terminal ones (nothing moves them on), and at
    most ``size`` (oldest first out). Sharing is safe because a state is never changed once
    built: the core decides on a private copy (property-tested).

    Example::

        cache = StateCache()
        state = cache.parse("onboarding:e-1", 3, row_json)
        cache.remember(committed_writes)
    """

    __slots__ = ("_states", "size")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._states: dict[str, tuple[int, SagaState]] = {}

    def parse(self, saga_id: str, revision: int, state_json: str | bytes) -> SagaState:
        """The state stored at ``revision``: the one kept, else ``state_json`` parsed."""
        kept = self._states.get(saga_id)
        if kept is not None and kept[0] == revision:
            return kept[1]
        return SagaState.from_json(state_json)

    def remember(self, writes: Iterable[Write | None]) -> None:
        """Keep the states of committed ``writes`` (in order: the last of a saga wins)."""
        for w in writes:
            if w is None:
                continue
            if not isinstance(w, SagaWrite):  # a quarantine: its row is read afresh
                self._states.pop(w.saga_id, None)
                continue
            saga_id = w.state.saga_id
            self._states.pop(saga_id, None)
            if not w.state.terminal:
                self._states[saga_id] = (w.expected_revision + 1, w.state)
        while len(self._states) > self.size:
            del self._states[next(iter(self._states))]


#: The saga_state columns :func:`decode_state` reads, in its order.
STATE_COLUMNS = "state, revision, quarantine, name, status, started_at_ms, updated_at_ms"


def decode_state(
    states: StateCache, saga_id: str, row: Sequence[Any]
) -> StoredSaga | UnreadableSaga:
    """A saga row (:data:`STATE_COLUMNS`) as stored: parsed, or the raw row if its state
    cannot be read (bad JSON, a field of the wrong type: one row must not stop the rest)."""
    state_json, revision, quarantine = row[0], int(row[1]), row[2]
    try:
        state = states.parse(saga_id, revision, state_json)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        return UnreadableSaga(
            saga_id, revision, row[3], row[4], from_ms(int(row[5])), from_ms(int(row[6])),
            str(state_json), parse_error(exc), quarantine,
        )  # fmt: skip
    return StoredSaga(state, revision, quarantine)


def set_aside_row(i: SetAsideInput) -> tuple[Any, ...]:
    """The saga_set_aside columns (saga_id, set_aside_at_ms, timer_id, topic, key, value,
    headers) of ``i``."""
    r = i.record
    if r is None:
        return (i.saga_id, to_ms(i.at), i.timer_id, None, None, None, None)
    return (i.saga_id, to_ms(i.at), i.timer_id, r.topic, r.key, r.value or b"",
            encode_headers(r.headers))  # fmt: skip


def set_aside_from_row(row: Sequence[Any]) -> SetAsideInput:
    """A SetAsideInput from (seq, saga_id, set_aside_at_ms, timer_id, topic, key, value,
    headers)."""
    seq, saga_id, at_ms, timer_id, topic, key, value, headers = row
    record = None
    if topic is not None:
        record = OutgoingRecord(topic, key, bytes(value), decode_headers(bytes(headers)))
    return SetAsideInput(saga_id, from_ms(int(at_ms)), record, timer_id, int(seq))


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    """Headers as JSON; values through latin-1, which maps every byte to one code point."""
    return orjson.dumps([(name, value.decode("latin-1")) for name, value in headers])


def decode_headers(blob: bytes) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, value.encode("latin-1")) for name, value in orjson.loads(blob))


def gauges_from_rows(
    backlog: int, oldest_ms: int | None, rows: Sequence[Sequence[Any]]
) -> StoreGauges:
    """StoreGauges from (name, status, count, oldest start ms) rows."""
    active: dict[str, dict[str, int]] = {}
    oldest: dict[str, datetime] = {}
    for name, status, count, started_ms in rows:
        active.setdefault(name, {})[status] = int(count)
        started = from_ms(int(started_ms))
        if name not in oldest or started < oldest[name]:
            oldest[name] = started
    return StoreGauges(
        backlog, None if oldest_ms is None else from_ms(int(oldest_ms)), active, oldest
    )


def revision_conflict(write: Write) -> RevisionConflictError:
    """The error of a save whose state row is no longer at ``write.expected_revision``."""
    saga_id = write.state.saga_id if isinstance(write, SagaWrite) else write.saga_id
    return RevisionConflictError(
        f"saga {saga_id} is no longer at revision {write.expected_revision} "
        "(saved by another coordinator, or already started): load it again and decide again"
    )
