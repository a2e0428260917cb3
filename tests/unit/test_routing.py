"""bus.routing (route_for, emitted_types) and bus.app.App: wiring read from annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import pytest
from pydantic import BaseModel

from bus.app import App
from bus.context import Context
from bus.errors import ConfigError, DefinitionError
from bus.message import Command, Event
from bus.registry import Registry
from bus.retries import RetryPolicy
from bus.routing import Route, emitted_types, route_for

POLICY = RetryPolicy(max_attempts=2)


class ThingHappened(
    Event,
    type="unit.test_routing.thing_happened.v1",
    topic="unit.test_routing.things",
    key="thing_id",
):
    thing_id: str


class ThingChecked(
    Event, type="unit.test_routing.thing_checked.v1", topic="unit.test_routing.things"
):
    thing_id: str


class OtherHappened(
    Event, type="unit.test_routing.other_happened.v1", topic="unit.test_routing.others"
):
    n: int


class DoThing(Command, type="unit.test_routing.do_thing.v1", topic="unit.test_routing.commands"):
    thing_id: str


class Untyped(Event):
    """An abstract intermediate: no type name."""


class NotAMessage(BaseModel):
    x: int


# --- route_for: parameters ---------------------------------------------------------


def test_handler_taking_only_the_message_gives_a_route_without_context() -> None:
    async def on_thing(msg: ThingHappened) -> None: ...

    route, problems = route_for(on_thing, retry=POLICY)
    assert problems == []
    assert isinstance(route, Route)
    assert route.message_type is ThingHappened
    assert route.handler is on_thing
    assert route.wants_context is False
    assert route.emits == ()
    assert route.retry is POLICY
    assert route.topic == "unit.test_routing.things"
    assert route.name.endswith("on_thing")


def test_handler_taking_message_and_context_wants_context() -> None:
    async def on_thing(msg: ThingHappened, ctx: Context) -> None: ...

    route, problems = route_for(on_thing, retry=POLICY)
    assert problems == []
    assert route is not None
    assert route.wants_context is True


def test_context_parameter_needs_no_annotation() -> None:
    async def on_thing(msg: ThingHappened, ctx) -> None: ...  # type: ignore[no-untyped-def]

    route, problems = route_for(on_thing, retry=POLICY)
    assert problems == []
    assert route is not None
    assert route.wants_context


def test_explicit_name_overrides_the_qualname() -> None:
    async def on_thing(msg: ThingHappened) -> None: ...

    route, _ = route_for(on_thing, retry=POLICY, name="thing-handler")
    assert route is not None
    assert route.name == "thing-handler"


def test_missing_return_annotation_emits_nothing() -> None:
    async def on_thing(msg: ThingHappened):  # type: ignore[no-untyped-def]
        return None

    route, problems = route_for(on_thing, retry=POLICY)
    assert problems == []
    assert route is not None
    assert route.emits == ()


# --- route_for: return annotations -------------------------------------------------


async def returns_one(msg: ThingHappened) -> ThingChecked: ...
async def returns_union(msg: ThingHappened) -> ThingChecked | DoThing: ...
async def returns_list(msg: ThingHappened) -> list[ThingChecked]: ...
async def returns_none(msg: ThingHappened) -> None: ...
async def returns_optional(msg: ThingHappened) -> Optional[DoThing]: ...  # noqa: UP045
async def returns_or_none(msg: ThingHappened) -> DoThing | None: ...
async def returns_list_of_union(msg: ThingHappened) -> list[ThingChecked | DoThing]: ...
async def returns_tuple(msg: ThingHappened) -> tuple[DoThing, ...]: ...
async def returns_sequence(msg: ThingHappened) -> Sequence[DoThing]: ...
async def returns_any(msg: ThingHappened) -> Any: ...
async def returns_list_or_one(msg: ThingHappened) -> list[DoThing] | DoThing | None: ...


@pytest.mark.parametrize(
    ("handler", "emits"),
    [
        (returns_one, (ThingChecked,)),
        (returns_union, (ThingChecked, DoThing)),
        (returns_list, (ThingChecked,)),
        (returns_none, ()),
        (returns_optional, (DoThing,)),
        (returns_or_none, (DoThing,)),
        (returns_list_of_union, (ThingChecked, DoThing)),
        (returns_tuple, (DoThing,)),
        (returns_sequence, (DoThing,)),
        (returns_any, ()),
        (returns_list_or_one, (DoThing,)),
    ],
)
def test_return_annotation_declares_emitted_types(handler: Any, emits: tuple[type, ...]) -> None:
    route, problems = route_for(handler, retry=POLICY)
    assert problems == []
    assert route is not None
    assert route.emits == emits


@pytest.mark.parametrize(
    "annotation",
    [None, type(None), Any, ThingChecked, ThingChecked | DoThing, list[DoThing], Optional[DoThing]],  # noqa: UP045
)
def test_emitted_types_accepts_messages_lists_unions_and_none(annotation: Any) -> None:
    _, problems = emitted_types(annotation)
    assert problems == []


def test_emitted_types_lists_each_type_once() -> None:
    assert emitted_types(DoThing | list[DoThing]) == ((DoThing,), [])


@pytest.mark.parametrize(
    "annotation", [int, str, dict[str, DoThing], NotAMessage, list[int], DoThing | int]
)
def test_emitted_types_rejects_non_message_annotations(annotation: Any) -> None:
    _, problems = emitted_types(annotation)
    assert len(problems) == 1
    assert "is not a message type" in problems[0]


# --- route_for: problems -----------------------------------------------------------


def sync_handler(msg: ThingHappened) -> None: ...
async def unannotated(msg) -> None: ...  # type: ignore[no-untyped-def]
async def int_param(msg: int) -> None: ...
async def pydantic_param(msg: NotAMessage) -> None: ...
async def untyped_message(msg: Untyped) -> None: ...
async def three_params(msg: ThingHappened, ctx: Context, extra: int) -> None: ...
async def no_params() -> None: ...
async def bad_return(msg: ThingHappened) -> int: ...
async def bad_return_dict(msg: ThingHappened) -> dict[str, DoThing]: ...
async def unresolvable(msg: NoSuchClass) -> None: ...  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize(
    ("handler", "fragment"),
    [
        (sync_handler, "must be 'async def'"),
        (unannotated, "annotate its first parameter"),
        (int_param, "annotate its first parameter"),
        (pydantic_param, "annotate its first parameter"),
        (untyped_message, "declares no type name"),
        (three_params, "must take (message) or (message, ctx)"),
        (no_params, "must take (message) or (message, ctx)"),
        (bad_return, "is not a message type"),
        (bad_return_dict, "is not a message type"),
        (unresolvable, "cannot read its annotations"),
    ],
)
def test_bad_handler_is_a_problem_not_a_route(handler: Any, fragment: str) -> None:
    route, problems = route_for(handler, retry=POLICY)
    assert route is None
    assert len(problems) == 1
    assert fragment in problems[0]
    assert handler.__name__ in problems[0]


def test_every_problem_of_one_handler_is_listed() -> None:
    def everything_wrong(msg: int) -> int: ...

    route, problems = route_for(everything_wrong, retry=POLICY)
    assert route is None
    assert len(problems) == 3
    joined = "\n".join(problems)
    assert "async def" in joined
    assert "annotate its first parameter" in joined
    assert "is not a message type" in joined


# --- App ---------------------------------------------------------------------------


def test_app_defaults_follow_its_name() -> None:
    app = App("things")
    assert app.group == "things"
    assert app.source == "bus://things"
    assert app.on_unknown_type == "dead_letter"
    assert isinstance(app.retry, RetryPolicy)
    assert app.dead_letter_topic is None


def test_app_uses_the_registry_passed_to_it() -> None:
    reg = Registry()
    assert App("things", registry=reg).registry is reg


def test_valid_app_validates_and_routes_by_type_name() -> None:
    app = App("things")

    @app.handler
    async def on_thing(msg: ThingHappened, ctx: Context) -> ThingChecked: ...

    @app.handler(name="other", retry=POLICY)
    async def on_other(msg: OtherHappened) -> None: ...

    app.validate()
    assert app.problems() == []
    assert set(app.routes) == {ThingHappened.bus_type, OtherHappened.bus_type}
    thing_route = app.route(ThingHappened.bus_type)
    assert thing_route is not None
    assert thing_route.handler is on_thing
    assert thing_route.retry is app.retry
    other_route = app.route(OtherHappened.bus_type)
    assert other_route is not None
    assert other_route.name == "other"
    assert other_route.retry is POLICY
    assert app.route(DoThing.bus_type) is None


def test_handler_decorator_returns_the_function_unchanged() -> None:
    app = App("things")

    async def on_thing(msg: ThingHappened) -> None: ...

    assert app.handler(on_thing) is on_thing
    assert app.handler(name="x")(on_thing) is on_thing  # second registration: a problem, same func


def test_app_topics_are_derived_from_handled_types_sorted_and_deduplicated() -> None:
    app = App("things")

    @app.handler
    async def on_other(msg: OtherHappened) -> DoThing: ...

    @app.handler
    async def on_thing(msg: ThingHappened) -> None: ...

    @app.handler
    async def on_checked(msg: ThingChecked) -> None: ...

    # DoThing is emitted, not handled: its topic is not consumed.
    assert app.topics == ("unit.test_routing.others", "unit.test_routing.things")


def test_app_with_no_handlers_is_a_problem() -> None:
    app = App("empty")
    assert app.topics == ()
    with pytest.raises(DefinitionError, match="has no handlers") as info:
        app.validate()
    assert info.value.problems == ["app 'empty' has no handlers"]


def test_two_handlers_of_the_same_type_in_one_app_is_a_problem() -> None:
    app = App("things")

    @app.handler
    async def first(msg: ThingHappened) -> None: ...

    @app.handler
    async def second(msg: ThingHappened) -> None: ...

    problems = app.problems()
    assert len(problems) == 1
    assert "two handlers" in problems[0]
    assert "first" in problems[0]
    assert "second" in problems[0]
    route = app.route(ThingHappened.bus_type)
    assert route is not None
    assert route.handler is first


def test_same_type_in_two_apps_is_fine() -> None:
    for name in ("fan-out-a", "fan-out-b"):
        app = App(name)

        @app.handler
        async def on_thing(msg: ThingHappened) -> None: ...

        app.validate()


def test_validate_lists_all_problems_at_once() -> None:
    app = App("things")

    @app.handler
    async def fine(msg: ThingHappened) -> None: ...

    @app.handler
    def not_async(msg: OtherHappened) -> None: ...

    @app.handler
    async def no_annotation(msg) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(DefinitionError) as info:
        app.validate()
    error = info.value
    assert isinstance(error, ConfigError)
    assert len(error.problems) == 2
    message = str(error)
    assert "2 problem(s)" in message
    assert "not_async" in message
    assert "async def" in message
    assert "no_annotation" in message
    assert "annotate its first parameter" in message
    assert error.subject == "app 'things'"


def test_validate_lists_app_settings_and_handler_problems_together() -> None:
    app = App("bad name!", on_unknown_type="explode")  # type: ignore[arg-type]

    @app.handler
    async def bad(msg: ThingHappened) -> int: ...

    @app.handler
    async def two(msg: ThingHappened, ctx: Context, extra: int) -> None: ...

    with pytest.raises(DefinitionError) as info:
        app.validate()
    message = str(info.value)
    assert len(info.value.problems) == 4
    assert "app name 'bad name!'" in message
    assert "on_unknown_type" in message
    assert "is not a message type" in message
    assert "must take (message) or (message, ctx)" in message


def test_problem_handlers_are_not_routed() -> None:
    app = App("things")

    @app.handler
    def not_async(msg: ThingHappened) -> None: ...

    assert app.routes == {}
    assert app.topics == ()
    assert len(app.problems()) == 1  # the handler's problem; "no handlers" is not added on top


def test_app_repr_names_handled_types() -> None:
    app = App("things")

    @app.handler
    async def on_thing(msg: ThingHappened) -> None: ...

    assert repr(app) == f"App('things', handlers=['{ThingHappened.bus_type}'])"
