"""How ``bus sagas list`` and ``bus sagas show`` present sagas: tables, timelines, JSON.

Pure functions of stored states (no I/O), so the CLI, the demo and tests print the same.
A timeline is the instance's history with the time since the start of each line and, on
the line that settles a step (its reply, failure or timeout), how long it waited since its
command was sent.

Example::

    print(format_timeline(state))
    print(format_table(states))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sagas.state import SagaState, SagaStatus
from sagas.stores.base import SetAsideInput, UnreadableSaga

__all__ = ["WHY_WIDTH", "TimelineRow", "age", "clip", "format_duration", "format_quarantine", "format_table",
           "format_timeline", "quarantine_json", "summary", "timeline_rows",
           "to_json"]  # fmt: skip

# task_opened: a task's completed line shows how long the person took
_SENT = {"sent", "resent", "compensation_sent", "recompensation_sent", "waiting", "task_opened"}
_SETTLED = {"completed", "failed", "compensated", "timed_out", "needs_attention"}


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One line of a saga's timeline."""

    at: datetime
    #: Time since the saga started.
    offset: timedelta
    event: str
    step: str | None
    detail: str
    #: For a line that settles a step: the time since its command (or wait) started.
    waited: timedelta | None


def timeline_rows(state: SagaState) -> list[TimelineRow]:
    rows: list[TimelineRow] = []
    sent_at: dict[str, datetime] = {}
    for h in state.history:
        waited = None
        if h.step is not None:
            if h.event in _SENT:
                sent_at[h.step] = h.at
            elif h.event in _SETTLED and h.step in sent_at:
                waited = h.at - sent_at[h.step]
        rows.append(TimelineRow(h.at, h.at - state.started_at, h.event, h.step, h.detail, waited))
    return rows


def format_duration(d: timedelta) -> str:
    """Short and exact enough: ``12ms``, ``3.40s``, ``5m02s``, ``3d04h``."""
    s = d.total_seconds()
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.2f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def format_timeline(state: SagaState, *, story: str | None = None, verbose: bool = False) -> str:
    """The ``bus sagas show`` text: the ``story`` (:func:`sagas.story.story`) first, then
    the header, why, every line, and each step's final status. Message ids only when
    ``verbose`` (the ids of commands and replies, for a search in the logs or the topics)."""
    total = state.updated_at - state.started_at
    plain = _as_is if verbose else _without_ids
    lines = [story] if story else []
    lines.append(
        f"{state.saga_id}  ({state.name} v{state.version})  {state.status.value.upper()}"
        f"  started {state.started_at:%Y-%m-%d %H:%M:%S}Z, {format_duration(total)}"
    )
    if state.parent_id:
        lines.append(f"  parent: {state.parent_id}")  # a child saga (SubSaga)
    if state.reason:
        lines.append(f"  why: {plain(state.reason)}")
    if state.attention:
        lines.append(f"  needs attention: {plain(state.attention)}")
    for r in timeline_rows(state):
        if r.event == "compensating" and state.status == SagaStatus.FAILED:
            continue  # it ended failed: there was nothing to undo, so no compensating phase
        waited = f" ({format_duration(r.waited)})" if r.waited is not None else ""
        lines.append(
            f"  +{format_duration(r.offset):>7}  {r.step or '-':<24} {r.event:<19} "
            f"{plain(r.detail)}{waited}".rstrip()
        )
    steps = ", ".join(f"{s.name} {s.status.value}" for s in state.steps.values())
    lines.append(f"  steps: {steps}")
    return "\n".join(lines)


#: Widest WHY cell of ``bus sagas list``; a longer reason ends in an ellipsis.
WHY_WIDTH = 60


def clip(text: str, width: int) -> str:
    """``text``, or its first ``width - 1`` characters and ``…`` when longer."""
    return text if len(text) <= width else text[: width - 1] + "…"


def age(state: SagaState, now: datetime) -> timedelta:
    """How long the saga has lasted: start to end when it ended, start to ``now`` when not
    (a saga waiting for approval is as old as the wait, not as its last update)."""
    return (state.updated_at if state.terminal else now) - state.started_at


_ID = re.compile(r" ?(?:id )?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _without_ids(text: str) -> str:
    return _ID.sub("", text)


def _as_is(text: str) -> str:
    return text


def format_table(states: Sequence[SagaState], *, now: datetime) -> str:
    """The ``bus sagas list`` table, one saga a line; DURATION by :func:`age` at ``now``."""
    header = ("SAGA", "STATUS", "STEPS", "STARTED", "DURATION", "WHY")
    rows = [header]
    for s in states:
        counts: dict[str, int] = {}
        for st in s.steps.values():
            counts[st.status.value] = counts.get(st.status.value, 0) + 1
        rows.append(
            (
                s.saga_id,
                s.status.value + (" (late)" if s.late else ""),
                " ".join(f"{n} {status}" for status, n in counts.items()),
                f"{s.started_at:%Y-%m-%d %H:%M:%S}",
                format_duration(age(s, now)),
                clip(_without_ids(s.attention or s.reason or ""), WHY_WIDTH),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def summary(states: Sequence[SagaState]) -> str:
    """``5 sagas: 3 completed, 1 compensated, 1 failed``."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(states)} saga{'s' if len(states) != 1 else ''}: {parts or 'none'}"


def to_json(state: SagaState) -> dict[str, Any]:
    """The state as JSON with its timeline (offsets and waits in seconds)."""
    out: dict[str, Any] = state.to_dict()
    out["timeline"] = [
        {
            "at": r.at.isoformat(),
            "offset_s": r.offset.total_seconds(),
            "event": r.event,
            "step": r.step,
            "detail": r.detail,
            "waited_s": None if r.waited is None else r.waited.total_seconds(),
        }
        for r in timeline_rows(state)
    ]
    return out


def format_quarantine(saga: UnreadableSaga, kept: Sequence[SetAsideInput]) -> str:
    """``bus sagas show`` of a saga whose state cannot be read: the raw row, why, and the
    inputs set aside for it."""
    lines = [
        f"{saga.saga_id}  ({saga.name})  NEEDS_ATTENTION (quarantined)  revision {saga.revision}",
        f"  why: {saga.quarantine or 'unreadable state (not yet quarantined)'}",
        f"  error: {saga.error}",
        f"  status column: {saga.status}; started {saga.started_at:%Y-%m-%d %H:%M:%S}Z,"
        f" updated {saga.updated_at:%Y-%m-%d %H:%M:%S}Z",
        "  state (raw, as stored):",
        f"    {saga.raw}",
        f"  set aside: {len(kept)} input(s)",
    ]
    lines += [f"    #{i.seq} {i.at:%Y-%m-%d %H:%M:%S}Z {_kept(i)}" for i in kept]
    lines.append(f"  fix the state in the store, then: bus sagas retry {saga.saga_id}")
    return "\n".join(lines)


def quarantine_json(saga: UnreadableSaga, kept: Sequence[SetAsideInput]) -> dict[str, Any]:
    """The raw row and its set-aside inputs as JSON (``bus sagas show --json``)."""
    return {
        "saga_id": saga.saga_id,
        "name": saga.name,
        "status": "needs_attention",
        "quarantine": saga.quarantine,
        "error": saga.error,
        "revision": saga.revision,
        "status_column": saga.status,
        "started_at": saga.started_at.isoformat(),
        "updated_at": saga.updated_at.isoformat(),
        "raw_state": saga.raw,
        "set_aside": [{"seq": i.seq, "at": i.at.isoformat(), "input": _kept(i)} for i in kept],
    }


def _kept(i: SetAsideInput) -> str:
    if i.record is None:
        return f"timer {i.timer_id}"
    ce_type = dict(i.record.headers).get("ce_type", b"?").decode("latin-1")
    return f"record {ce_type} from {i.record.topic}"
