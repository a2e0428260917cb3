"""The causal tree of one business process, read back from the topics (``bus trace``).

Every message of a process carries its ``correlationid``; each emitted one names the
message that caused it in ``causationid``. :func:`build_tree` (pure) turns the hops of
one correlation id into a tree; :func:`render` draws it with the time each hop took
after its cause; :func:`read_hops` reads topics from the beginning and keeps the hops of
one correlation id, and the message that started the process when it has a correlation id
of its own (a saga's trigger: ``bus trace onboarding:e-1`` shows the hire, then every
command and reply). A dead letter (same id, on a ``.dlq`` topic, a ``bus_dlq_reason``
header) marks the hop it failed instead of appearing twice; a record replayed from a
dead-letter topic (``bus dlq replay``: only ``bus_dlq_replays`` left of those headers)
marks it as replayed.

Example::

    hops = await read_hops(transport, ["hr.events", "identity.events"], correlation_id)
    print("\\n".join(render(build_tree(hops))))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bus.codec import decode
from bus.dead_letters import HEADER_PREFIX
from bus.dlq.letters import REPLAYS_HEADER
from bus.envelope import Envelope
from bus.errors import RecordError
from bus.record import Record
from bus.transports.base import Transport

__all__ = ["Hop", "TraceNode", "build_tree", "hop_of", "read_hops", "render"]


@dataclass(frozen=True, slots=True)
class Hop:
    """One message of the process, where it was found."""

    id: str
    type: str
    #: The emitter (``bus://<app>`` for handler outputs, the upstream system otherwise).
    source: str
    time: datetime | None
    causationid: str | None
    topic: str
    partition: int
    offset: int
    #: Set when the message was dead-lettered: "reason in handler: error".
    dead_letter: str | None = None
    #: How often this copy was replayed from a dead-letter topic (``bus_dlq_replays``);
    #: of a node in :func:`build_tree`, the most any copy was.
    replays: int = 0


@dataclass(frozen=True, slots=True)
class TraceNode:
    hop: Hop
    children: tuple[TraceNode, ...] = ()


def hop_of(record: Record, correlation_id: str) -> Hop | None:
    """The hop ``record`` is, if it belongs to ``correlation_id`` (None otherwise)."""
    try:
        env = decode(record.headers, record.value)
    except RecordError:
        return None
    if (env.correlationid or env.id) != correlation_id:
        return None
    return _hop(record, env)


def _hop(record: Record, env: Envelope) -> Hop:
    dlq = {k[len(HEADER_PREFIX) :]: v.decode(errors="replace") for k, v in record.headers if k.startswith(HEADER_PREFIX)}  # fmt: skip
    try:
        replays = int(record.header(REPLAYS_HEADER) or 0)
    except ValueError:
        replays = 0
    note = None
    # a dead letter has its reason; a replayed record keeps only bus_dlq_replays
    if "reason" in dlq:
        where = dlq.get("handler") or dlq.get("app") or "?"
        note = f"{dlq['reason']} in {where}: {dlq.get('error_message', '')}"
        if replays:
            note += f", after replay {replays}"
    return Hop(
        env.id,
        env.type,
        env.source,
        env.time,
        env.causationid,
        record.topic,
        record.partition,
        record.offset,
        note,
        replays,
    )


def build_tree(hops: Iterable[Hop]) -> list[TraceNode]:
    """The hops as trees: roots are hops whose cause is not among them; siblings by time.

    A message seen twice (redelivered, also on a dead-letter topic, replayed from there) is
    one node: the first copy seen, with the note of its latest dead letter (the one
    replayed most often) and the most replays of any copy.
    """
    by_id: dict[str, Hop] = {}
    latest_dead: dict[str, int] = {}
    for hop in hops:
        seen = by_id.get(hop.id)
        if seen is None:
            seen = by_id[hop.id] = replace(hop, dead_letter=None)
        if hop.dead_letter and hop.replays >= latest_dead.get(hop.id, -1):
            latest_dead[hop.id] = hop.replays
            seen = by_id[hop.id] = replace(seen, dead_letter=hop.dead_letter)
        if hop.replays > seen.replays:
            by_id[hop.id] = replace(seen, replays=hop.replays)
    children: dict[str | None, list[Hop]] = {}
    for hop in by_id.values():
        parent = hop.causationid if hop.causationid in by_id and hop.causationid != hop.id else None
        children.setdefault(parent, []).append(hop)

    def order(h: Hop) -> tuple[str, str]:
        return (h.time.isoformat() if h.time else "", h.id)

    def node(hop: Hop, path: frozenset[str]) -> TraceNode:
        kids = sorted(children.get(hop.id, []), key=order)
        return TraceNode(hop, tuple(node(k, path | {hop.id}) for k in kids if k.id not in path))

    return [node(root, frozenset()) for root in sorted(children.get(None, []), key=order)]


def render(roots: Sequence[TraceNode]) -> list[str]:
    """One line per hop: tree branch, type, source, where, and ``+ms`` after its cause."""
    lines: list[str] = []

    def walk(n: TraceNode, prefix: str, last: bool, parent: Hop | None, top: bool) -> None:
        hop = n.hop
        delay = ""
        if parent is not None and parent.time and hop.time:
            delay = f"  +{(hop.time - parent.time).total_seconds() * 1000:.1f} ms"
        elif top and hop.time:
            delay = f"  at {hop.time.isoformat()}"
        branch = "" if top else ("`- " if last else "|- ")
        where = f"{hop.topic}[{hop.partition}]@{hop.offset}"
        line = f"{prefix}{branch}{hop.type}  from {hop.source}  {where}{delay}"
        if hop.dead_letter:
            line += f"  DEAD-LETTERED ({hop.dead_letter})"
        if hop.replays:
            line += f"  REPLAYED {hop.replays} time(s)"
        lines.append(line)
        inner = prefix if top else prefix + ("   " if last else "|  ")
        for i, child in enumerate(n.children):
            walk(child, inner, i == len(n.children) - 1, hop, False)

    for root in roots:
        walk(root, "", True, None, True)
    return lines


async def read_hops(
    transport: Transport,
    topics: Sequence[str],
    correlation_id: str,
    *,
    idle_fetches: int = 2,
    fetch_timeout_s: float = 0.5,
) -> list[Hop]:
    """Every hop of ``correlation_id`` in ``topics``, read from the beginning (no group).

    Reading stops after ``idle_fetches`` fetches in a row return nothing: on a busy
    topic, records of the process appended meanwhile may be missed; run it again.
    """
    consumer = transport.consumer(topics, group=None, offset_reset="earliest")
    await consumer.start()
    hops: list[Hop] = []
    #: Messages that start a process of their own: one may have caused this one (a saga's
    #: trigger, whose commands carry the saga id as their correlation id).
    starters: dict[str, Hop] = {}
    try:
        quiet = 0
        while quiet < idle_fetches:
            batches = await consumer.fetch(max_records=1000, timeout_s=fetch_timeout_s)
            quiet = 0 if batches else quiet + 1
            for records in batches.values():
                for record in records:
                    try:
                        env = decode(record.headers, record.value)
                    except RecordError:
                        continue
                    correlation = env.correlationid or env.id
                    if correlation == correlation_id:
                        hops.append(_hop(record, env))
                    elif correlation == env.id and env.id not in starters:
                        starters[env.id] = _hop(record, env)
    finally:
        await consumer.stop()
    ids = {h.id for h in hops}
    causes = {h.causationid for h in hops if h.causationid and h.causationid not in ids}
    return [starters[c] for c in sorted(causes) if c in starters] + hops
