"""The store's sends against the systems' effects ledger: the saga crash tests' verdict.

What a saga store records of a step: its ``attempts`` (and ``compensation_attempts``),
its ``command_ids``, and a timeline line per send (``sent``/``resent``, ``...attempt N id
ID`` and, for a re-send after a reply timeout, ``key K``: the idempotency key, attempt 1's
id). What the systems record: one effects row per command they ran, in their dedup
transaction (tests/crash/systems.py), the dedup keyed by the idempotency key when a
command carries one (docs/dedup.md).

The true guarantee is per *chain*: the sends that share one idempotency key (attempt 1
and its re-sends after reply timeouts) take effect **exactly once**, by one of the
chain's command ids. It is not "one effect per attempt": a re-send after a reply timeout
whose first attempt already landed (the systems were slow, the reply not yet written when
the timer fired, so the timers' fence could not see it) is recorded as attempt 2 and is
acknowledged by the systems' dedup without running. So a step's attempts are at least its
effects, and equal only when no reply timed out. A double effect (two effects in one
chain, or one command id applied twice) and a lost step (a chain without an effect) are
still each a finding, and so is any effect of a command id the store never sent.

Example::

    problems = ledger_findings(states, effects_rows)    # [] when they agree
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sagas.state import SagaState

__all__ = ["Chain", "Finding", "chains", "ledger_findings"]

#: A send's timeline detail (sagas/draft.py ``Draft._send``).
_SEND = re.compile(r"^(?P<type>\S+) attempt (?P<attempt>\d+) id (?P<id>\S+)(?: key (?P<key>\S+))?$")
_SEND_EVENTS = {
    "sent": "action",
    "resent": "action",
    "compensation_sent": "compensation",
    "recompensation_sent": "compensation",
}

#: An effects row: (command id, command type, employee id, ok).
Row = tuple[str, str, str, int]


class Finding(NamedTuple):
    """One disagreement, and the saga it is about ("" for none in particular)."""

    saga_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.saga_id}: {self.problem}" if self.saga_id else self.problem


@dataclass(frozen=True)
class Chain:
    """The sends of one step that share an idempotency key: they must take effect once."""

    saga_id: str
    step: str
    kind: str
    type: str
    key: str
    ids: tuple[str, ...]


def chains(state: SagaState) -> Iterator[Chain]:
    """Every chain of sends ``state``'s timeline records, in the order they began."""
    found: dict[tuple[str, str], tuple[str, str, list[str]]] = {}
    for entry in state.history:
        kind = _SEND_EVENTS.get(entry.event)
        match = _SEND.match(entry.detail) if kind is not None else None
        if entry.step is None or kind is None or match is None:
            continue
        key = match["key"] or match["id"]
        _, _, ids = found.setdefault((entry.step, key), (kind, match["type"], []))
        ids.append(match["id"])
    for (step, key), (kind, type_, ids) in found.items():
        yield Chain(state.saga_id, step, kind, type_, key, tuple(ids))


def _store_findings(state: SagaState, mine: list[Chain]) -> Iterator[Finding]:
    """The timeline's sends against the step's counters and ids (one store, one story)."""
    for name, st in state.steps.items():
        of_step = [c for c in mine if c.step == name]
        sent = [i for c in of_step for i in c.ids]
        actions = sum(len(c.ids) for c in of_step if c.kind == "action")
        undos = sum(len(c.ids) for c in of_step if c.kind == "compensation")
        if sorted(sent) != sorted(st.command_ids) or len(set(sent)) != len(sent):
            yield Finding(state.saga_id, f"{name}: sends {sent} != command_ids {st.command_ids}")
        # a wait or a delay counts attempts too, but sends nothing
        nothing_sent = not sent and not st.command_ids
        if not nothing_sent and (actions, undos) != (st.attempts, st.compensation_attempts):
            yield Finding(
                state.saga_id,
                f"{name}: {actions} action and {undos} compensation sends in the timeline, "
                f"attempts {st.attempts}/{st.compensation_attempts}",
            )


def ledger_findings(states: dict[str, SagaState], rows: Iterable[Row]) -> list[Finding]:
    """Everything on which the store and the effects ledger disagree (empty: they agree):
    a command id applied twice, a chain with no effect (lost) or several (doubled) or one
    of another type, an effect of a command the store never sent, and a store whose
    timeline, command ids and attempt counters tell different stories."""
    rows = list(rows)
    problems: list[Finding] = []
    per_id = Counter(r[0] for r in rows)
    problems += [Finding("", f"command {i} applied {n} times") for i, n in per_id.items() if n > 1]
    by_id = {r[0]: r for r in rows}
    sent: set[str] = set()
    for state in states.values():
        mine = list(chains(state))
        problems += _store_findings(state, mine)
        for chain in mine:
            sent.update(chain.ids)
            landed = [by_id[i] for i in chain.ids if i in by_id]
            if len(landed) != 1:
                what = "lost (no effect)" if not landed else f"done {len(landed)} times"
                problems.append(Finding(state.saga_id, f"{chain}: {what}"))
            elif landed[0][1] != chain.type:
                problems.append(Finding(state.saga_id, f"{chain}: its effect is a {landed[0][1]}"))
    unsent = sorted(set(per_id) - sent)
    if unsent:
        problems.append(
            Finding("", f"{len(unsent)} effects of commands the store never sent: {unsent[:5]}")
        )
    return problems
