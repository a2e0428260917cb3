"""Which topics apps need, and what to do about the ones that exist (pure).

An app needs the topics it consumes, the topics its handlers emit to (from their return
annotations), a dead-letter topic per consumed topic, and its retry topics. A :class:`TopicSpec` the app
declares wins over the defaults. :func:`plan` compares that with what the broker has:
missing topics are created; differences in partitions, replication or configs are
reported, never changed (repartitioning moves keys to other partitions, and not every
broker lets clients alter configs).

Example::

    wanted = desired_topics([app], partitions=6, replication_factor=3)
    result = plan(wanted, await transport.describe_topics([t.name for t in wanted]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bus.dead_letters import dead_letter_topic
from bus.transports.base import TopicSpec, TopicState

if TYPE_CHECKING:  # a type only: topics.py stays pure
    from bus.app import App

__all__ = ["TopicPlan", "desired_topics", "plan"]


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What ensuring the topics will do."""

    #: Topics to create.
    create: tuple[TopicSpec, ...]
    #: Topics that exist as declared.
    matching: tuple[str, ...]
    #: Human-readable differences bus will not fix, one per line.
    differences: tuple[str, ...]


def desired_topics(
    apps: Sequence[App], *, partitions: int, replication_factor: int
) -> list[TopicSpec]:
    """Every topic ``apps`` consume, emit to or dead-letter to, sorted by name."""
    declared = {spec.name: spec for app in apps for spec in app.topic_specs}
    names: set[str] = set(declared)
    for app in apps:
        names.update(app.retry_topics)
        for route in app.routes.values():
            names.add(route.topic)
            names.add(dead_letter_topic(route.topic, app.dead_letter_topic))
            names.update(t.bus_topic for t in route.emits)
    return [
        declared.get(n)
        or TopicSpec(n, partitions=partitions, replication_factor=replication_factor)
        for n in sorted(names)
    ]


def plan(desired: Sequence[TopicSpec], existing: Mapping[str, TopicState]) -> TopicPlan:
    """Compare ``desired`` with ``existing``: what to create, what matches, what differs."""
    create: list[TopicSpec] = []
    matching: list[str] = []
    differences: list[str] = []
    for spec in desired:
        state = existing.get(spec.name)
        if state is None:
            create.append(spec)
            continue
        found = _differences(spec, state)
        differences.extend(found)
        if not found:
            matching.append(spec.name)
    return TopicPlan(tuple(create), tuple(matching), tuple(differences))


def _differences(spec: TopicSpec, state: TopicState) -> list[str]:
    out = []
    if state.partitions != spec.partitions:
        out.append(
            f"{spec.name}: has {state.partitions} partitions, declared {spec.partitions} "
            "(not changed: repartitioning moves keys; create a new topic and migrate)"
        )
    if state.replication_factor != spec.replication_factor:
        out.append(
            f"{spec.name}: replication factor {state.replication_factor}, declared "
            f"{spec.replication_factor} (change it with a partition reassignment)"
        )
    for key, value in sorted(spec.config.items()):
        actual = state.config.get(key)
        if actual is None:
            out.append(
                f"{spec.name}: {key} is not reported by the broker (declared {value!r}); cannot verify"
            )
        elif actual != value:
            out.append(
                f"{spec.name}: {key}={actual!r}, declared {value!r} (alter it with your broker's tools)"
            )
    return out
