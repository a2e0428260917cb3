"""Topic provisioning plans (pure): what to create, what matches, what differs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bus import App, Event, TopicSpec
from bus.topics import desired_topics, plan
from bus.transports.base import TopicState


class Asked(Event, type="unit.topics.asked.v1", topic="unit.topics.in", key="id"):
    id: str


class Answered(Event, type="unit.topics.answered.v1", topic="unit.topics.out", key="id"):
    id: str


def make_app(**kwargs: object) -> App:
    app = App("unit-topics", **kwargs)  # type: ignore[arg-type]

    @app.handler
    async def answer(asked: Asked) -> Answered:
        return Answered(id=asked.id)

    return app


def test_an_app_needs_its_input_output_and_dead_letter_topics() -> None:
    names = [t.name for t in desired_topics([make_app()], partitions=6, replication_factor=3)]
    assert names == ["unit.topics.in", "unit.topics.in.dlq", "unit.topics.out"]
    for spec in desired_topics([make_app()], partitions=6, replication_factor=3):
        assert (spec.partitions, spec.replication_factor) == (6, 3)


def test_a_declared_topic_spec_wins_over_the_defaults() -> None:
    app = make_app(
        topics=(TopicSpec("unit.topics.in", partitions=12, config={"retention.ms": "1"}),)
    )
    [spec] = [
        t
        for t in desired_topics([app], partitions=3, replication_factor=1)
        if t.name == "unit.topics.in"
    ]
    assert spec.partitions == 12
    assert spec.config == {"retention.ms": "1"}


def test_a_configured_dead_letter_topic_replaces_the_default_one() -> None:
    names = [
        t.name
        for t in desired_topics(
            [make_app(dead_letter_topic="all.dlq")], partitions=1, replication_factor=1
        )
    ]
    assert "all.dlq" in names
    assert "unit.topics.in.dlq" not in names


def test_missing_topics_are_created_and_matching_ones_left_alone() -> None:
    wanted = [TopicSpec("a", 3), TopicSpec("b", 3)]
    result = plan(wanted, {"a": TopicState("a", 3, 1)})
    assert [s.name for s in result.create] == ["b"]
    assert result.matching == ("a",)
    assert result.differences == ()


def test_differences_are_reported_never_planned_as_changes() -> None:
    wanted = [
        TopicSpec(
            "a", 6, replication_factor=3, config={"cleanup.policy": "compact", "retention.ms": "5"}
        )
    ]
    result = plan(wanted, {"a": TopicState("a", 3, 1, {"cleanup.policy": "delete"})})
    assert result.create == ()
    assert result.matching == ()
    text = "\n".join(result.differences)
    assert "has 3 partitions, declared 6" in text
    assert "replication factor 1, declared 3" in text
    assert "cleanup.policy='delete', declared 'compact'" in text
    assert "retention.ms is not reported by the broker" in text


names = st.text(alphabet="abcdef", min_size=1, max_size=3)


@given(
    wanted=st.dictionaries(names, st.integers(1, 8), max_size=6),
    existing=st.dictionaries(names, st.integers(1, 8), max_size=6),
)
def test_every_desired_topic_is_exactly_one_of_created_matching_or_different(
    wanted: dict[str, int], existing: dict[str, int]
) -> None:
    specs = [TopicSpec(n, p) for n, p in wanted.items()]
    result = plan(specs, {n: TopicState(n, p, 1) for n, p in existing.items()})
    created = {s.name for s in result.create}
    matching = set(result.matching)
    differing = {line.split(":")[0] for line in result.differences}
    assert created | matching | differing == set(wanted)
    assert not created & matching
    assert not created & differing
    assert not matching & differing
    assert created == set(wanted) - set(existing)
