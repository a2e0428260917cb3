"""bus.trace: the causal tree of one process (pure part)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bus.trace import Hop, TraceNode, build_tree, render

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def hop(id: str, cause: str | None, ms: int, *, topic: str = "t", dead: str | None = None) -> Hop:
    return Hop(
        id, f"type.{id}", "bus://x", T0 + timedelta(milliseconds=ms), cause, topic, 0, ms, dead
    )


def walk(
    nodes: tuple[TraceNode, ...] | list[TraceNode],
) -> Iterator[tuple[TraceNode | None, TraceNode]]:
    stack: list[tuple[TraceNode | None, TraceNode]] = [(None, n) for n in nodes]
    while stack:
        parent, node = stack.pop()
        yield parent, node
        stack.extend((node, c) for c in node.children)


@st.composite
def processes(draw: st.DrawFn) -> list[Hop]:
    """Hops where each names an earlier one, none, or one never read, as its cause."""
    n = draw(st.integers(1, 30))
    hops = []
    for i in range(n):
        cause = draw(st.one_of(st.none(), st.just("lost"), st.integers(0, max(0, i - 1)).map(str)))
        hops.append(hop(str(i), None if i == 0 else cause, draw(st.integers(0, 10_000))))
    duplicates = draw(st.lists(st.sampled_from(hops), max_size=5))
    return draw(st.permutations([*hops, *duplicates]))


@given(processes())
def test_every_message_appears_once_under_the_message_that_caused_it(hops: list[Hop]) -> None:
    roots = build_tree(hops)
    seen = [node.hop.id for _, node in walk(roots)]
    assert sorted(seen) == sorted({h.id for h in hops})
    ids = {h.id for h in hops}
    for parent, node in walk(roots):
        if parent is None:
            assert node.hop.causationid not in ids or node.hop.causationid == node.hop.id
        else:
            assert node.hop.causationid == parent.hop.id


def test_a_chain_renders_as_a_tree_with_the_time_each_hop_took_after_its_cause() -> None:
    hops = [
        hop("hire", None, 0),
        hop("account", "hire", 12),
        hop("license", "account", 20),
        hop("mail", "license", 21),
        hop("audit", "hire", 15),
    ]
    assert render(build_tree(hops)) == [
        f"type.hire  from bus://x  t[0]@0  at {T0.isoformat()}",
        "|- type.account  from bus://x  t[0]@12  +12.0 ms",
        "|  `- type.license  from bus://x  t[0]@20  +8.0 ms",
        "|     `- type.mail  from bus://x  t[0]@21  +1.0 ms",
        "`- type.audit  from bus://x  t[0]@15  +15.0 ms",
    ]


def test_a_dead_lettered_message_is_one_node_marked_with_its_reason() -> None:
    hops = [
        hop("hire", None, 0),
        hop("account", "hire", 5),
        hop("account", "hire", 5, topic="t.dlq", dead="handler_failed in assign: no seats"),
    ]
    [root] = build_tree(hops)
    [child] = root.children
    assert child.hop.dead_letter == "handler_failed in assign: no seats"
    assert child.hop.topic == "t"
    assert "DEAD-LETTERED (handler_failed in assign: no seats)" in render([root])[1]


def test_a_replayed_record_is_not_a_dead_letter_and_marks_its_node_replayed() -> None:
    # bus dlq replay keeps bus_dlq_replays on the record it sends; the rest of the
    # bus_dlq_* headers are gone: it is a replay, not a dead letter
    from bus.record import Record
    from bus.trace import hop_of

    replayed = Record(
        "t",
        0,
        9,
        b"k",
        b"{}",
        (
            ("ce_specversion", b"1.0"),
            ("ce_id", b"account"),
            ("ce_source", b"bus://x"),
            ("ce_type", b"type.account"),
            ("ce_correlationid", b"hire"),
            ("bus_dlq_replays", b"1"),
        ),
    )
    found = hop_of(replayed, "hire")
    assert found is not None
    assert (found.dead_letter, found.replays) == (None, 1)
    hops = [
        hop("hire", None, 0),
        hop("account", "hire", 5),
        hop("account", "hire", 5, topic="t.dlq", dead="handler_failed in assign: no seats"),
        found,
    ]
    [root] = build_tree(hops)
    [line] = render([root.children[0]])
    assert "DEAD-LETTERED (handler_failed in assign: no seats)  REPLAYED 1 time(s)" in line
    assert "?" not in line
