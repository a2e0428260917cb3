"""An App: one deployable unit of handlers, one consumer group.

Handlers are registered with a decorator; the message type comes from the first
parameter's annotation, what it emits from the return annotation. The App consumes the
topics of the types it handles. Wiring problems are collected and raised together by
:meth:`App.validate` (``bus run`` calls it before consuming anything).

Example::

    app = App("identity")

    @app.handler
    async def create_account(event: EmployeeHired, ctx: Context) -> AccountCreated:
        return AccountCreated(employee_id=event.employee_id, login=event.name.lower())
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from bus.dedup.base import DedupStore
from bus.errors import DefinitionError
from bus.message import Message
from bus.registry import Registry, default_registry
from bus.retries import RetryPolicy
from bus.retry_topics import retry_topic
from bus.routing import HandlerFunc, Route, batch_routes_for, route_for
from bus.transports.base import TopicSpec

if TYPE_CHECKING:
    from bus.worker import Worker

__all__ = ["App", "BackgroundTask", "UnknownTypePolicy"]

F = TypeVar("F", bound=HandlerFunc)
UnknownTypePolicy = Literal["dead_letter", "skip"]
#: A task of the app's lifespan: runs beside the consume loop until its ``stop`` is set.
BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class App:
    """Handlers deployed together; they share a consumer group named after the app.

    A record whose type this app does not handle is skipped when the type is registered
    (another app's business), and dead-lettered as ``unknown_type`` when no model knows
    it, unless ``on_unknown_type="skip"``.
    """

    def __init__(
        self,
        name: str,
        *,
        group: str | None = None,
        source: str | None = None,
        retry: RetryPolicy | None = None,
        dead_letter_topic: str | None = None,
        on_unknown_type: UnknownTypePolicy = "dead_letter",
        topics: tuple[TopicSpec, ...] = (),
        registry: Registry | None = None,
        dedup: DedupStore[Any] | None = None,
    ) -> None:
        #: The app's name: in logs, metrics and dead-letter headers.
        self.name = name
        #: Consumer group id (default: the name).
        self.group = group or name
        #: CloudEvents ``source`` of what the app emits (default ``bus://<name>``).
        self.source = source or f"bus://{name}"
        #: Policy for handlers that declare none.
        self.retry = retry or RetryPolicy()
        #: Where dead letters go (default ``<topic>.dlq`` of the record's topic).
        self.dead_letter_topic = dead_letter_topic
        self.on_unknown_type: UnknownTypePolicy = on_unknown_type
        #: Topics the app declares (partitions, configs) for provisioning.
        self.topic_specs = topics
        self.registry = registry if registry is not None else default_registry
        #: Dedup store of handlers that declare none (None: no deduplication).
        self.dedup = dedup
        self._routes: dict[str, Route] = {}
        self._tasks: list[tuple[str, BackgroundTask]] = []
        self._on_start: list[Callable[[Worker], None]] = []
        self._problems: list[str] = []
        if not _APP_NAME.match(name):
            self._problems.append(f"app name {name!r} may only use letters, digits, '.', '_', '-'")
        if on_unknown_type not in ("dead_letter", "skip"):
            self._problems.append("on_unknown_type must be 'dead_letter' or 'skip'")

    @overload
    def handler(self, func: F) -> F: ...

    @overload
    def handler(
        self,
        *,
        retry: RetryPolicy | None = None,
        name: str | None = None,
        dedup: DedupStore[Any] | None = None,
    ) -> Callable[[F], F]: ...

    def handler(
        self,
        func: F | None = None,
        *,
        retry: RetryPolicy | None = None,
        name: str | None = None,
        dedup: DedupStore[Any] | None = None,
    ) -> F | Callable[[F], F]:
        """Register ``func`` as the handler of the message type of its first parameter.

        ``retry`` overrides the app's policy; ``dedup`` makes the handler run once per
        CloudEvent (``source`` + ``id``), remembered in that store (see :mod:`bus.dedup`).
        """

        def register(f: F) -> F:
            route, problems = route_for(
                f,
                retry=retry or self.retry,
                name=name,
                dedup=dedup if dedup is not None else self.dedup,
            )
            self._problems.extend(problems)
            if route is not None:
                self._add_routes([route])
            return f

        return register(func) if func is not None else register

    @overload
    def batch_handler(self, func: F) -> F: ...

    @overload
    def batch_handler(
        self,
        *,
        retry: RetryPolicy | None = None,
        name: str | None = None,
        types: Sequence[type[Message]] | None = None,
    ) -> Callable[[F], F]: ...

    def batch_handler(
        self,
        func: F | None = None,
        *,
        retry: RetryPolicy | None = None,
        name: str | None = None,
        types: Sequence[type[Message]] | None = None,
    ) -> F | Callable[[F], F]:
        """Register ``func`` as the handler of runs of messages: a partition's consecutive
        records of the types its ``list[...]`` parameter names arrive as one list, in
        partition order (up to ``WorkerSettings.fetch_max_records``).

        The guarantees of single handlers hold: no offset of the batch is committed before
        all its outputs are acknowledged; a failing batch is retried under ``retry``, then
        bisected, so that only the message that fails alone goes to its retry tier or the
        dead-letter topic; metrics count each message. Batch handlers take no dedup store:
        write the batch's effects in one idempotent transaction (the saga coordinator does).
        ``types`` names the message classes when they are known only at run time (then the
        first parameter's annotation is not read).

        Example::

            @app.batch_handler
            async def store_hires(batch: list[EmployeeHired], ctx: BatchContext) -> None:
                await db.executemany("INSERT ... ON CONFLICT DO NOTHING", rows(batch))
        """

        def register(f: F) -> F:
            routes, problems = batch_routes_for(
                f, retry=retry or self.retry, name=name, types=types
            )
            self._problems.extend(problems)
            self._add_routes(routes)
            return f

        return register(func) if func is not None else register

    def _add_routes(self, routes: list[Route]) -> None:
        """Add the routes of one handler (a batch handler has one per type it takes)."""
        if not routes:
            return
        label = routes[0].name
        if any(r.name == label for r in self._routes.values()):
            self._problems.append(
                f"two handlers in app {self.name!r} are named {label!r} (metrics, "
                "logs and dedup keys use it): rename one or pass name=..."
            )
            return
        for route in routes:
            taken = self._routes.get(route.message_type.bus_type)
            if taken is not None:
                self._problems.append(
                    f"{route.message_type.bus_type} has two handlers in app {self.name!r} "
                    f"({taken.name}, {route.name}); put one in another App to fan out"
                )
            else:
                self._routes[route.message_type.bus_type] = route

    def background(self, func: BackgroundTask, *, name: str | None = None) -> BackgroundTask:
        """Run ``await func(stop)`` beside the consume loop, in the worker's task group.

        The worker starts it once it joined the group and sets ``stop`` when it shuts
        down: the task returns then (it is awaited until the shutdown deadline, then
        cancelled). A task that raises stops the worker, like a failing consume loop:
        catch and retry what is expected to fail.

        Example::

            @app.background
            async def relay(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    await publish_outbox()
                    await wait_for_event(stop, 0.1)  # bus.wait_for_event: 0.1 s or stop
        """
        self._tasks.append((name or str(getattr(func, "__name__", "task")), func))
        return func

    def on_start(self, callback: Callable[[Worker], None]) -> Callable[[Worker], None]:
        """Call ``callback(worker)`` when a :class:`~bus.worker.Worker` starts running this
        app (it joined the group; its background tasks not started yet): for lifespan code
        that asks the worker how far the input is handled (:meth:`Worker.behind`).

        Example::

            workers: list[Worker] = []
            app.on_start(workers.append)
        """
        self._on_start.append(callback)
        return callback

    @property
    def start_callbacks(self) -> tuple[Callable[[Worker], None], ...]:
        """The :meth:`on_start` callbacks, in the order they were added."""
        return tuple(self._on_start)

    @property
    def background_tasks(self) -> tuple[tuple[str, BackgroundTask], ...]:
        """The lifespan tasks, ``(name, func)``, in the order they were added."""
        return tuple(self._tasks)

    @property
    def routes(self) -> Mapping[str, Route]:
        """Type name -> route."""
        return self._routes

    def route(self, type_name: str) -> Route | None:
        return self._routes.get(type_name)

    @property
    def dedup_stores(self) -> tuple[DedupStore[Any], ...]:
        """The distinct dedup stores the handlers use (opened by the runner)."""
        stores: dict[int, DedupStore[Any]] = {}
        for route in self._routes.values():
            if route.dedup is not None:
                stores.setdefault(id(route.dedup), route.dedup)
        return tuple(stores.values())

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics consumed: those of the handled types and the retry topics (sorted)."""
        handled = {r.topic for r in self._routes.values()}
        return tuple(sorted(handled | set(self.retry_topics)))

    @property
    def retry_topics(self) -> tuple[str, ...]:
        """The app's retry topics, one per delay of its handlers' non-blocking tiers."""
        delays = {d for r in self._routes.values() if not r.retry.blocking for d in r.retry.tiers_s}
        return tuple(retry_topic(self.group, d) for d in sorted(delays))

    def problems(self) -> list[str]:
        """Every wiring problem found so far."""
        problems = list(self._problems)
        if not self._routes and not problems:
            problems.append(f"app {self.name!r} has no handlers")
        return problems

    def validate(self) -> None:
        """Raise :class:`DefinitionError` listing every problem, if there is any."""
        problems = self.problems()
        if problems:
            raise DefinitionError(f"app {self.name!r}", problems)

    def __repr__(self) -> str:
        return f"App({self.name!r}, handlers={sorted(self._routes)})"
