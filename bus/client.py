"""Publish to a bus over its HTTP ingress from any Python process: :class:`Client` and
:class:`AsyncClient` (on httpx).

Messages are bus message classes (``Event``/``Command``); each becomes a structured
CloudEvent whose id, source and time are fixed once, so a retry re-sends the same events
(an ingress with a dedup store answers them as duplicates). 503, 429 and connection
errors are retried, waiting what ``Retry-After`` says; 400/403/413/415/422 raise
:class:`~bus.errors.PublishRefusedError` with the problem's field errors.

Batching: ``publish`` collects events and sends them as one batch request when
``batch_size`` are waiting or the oldest has waited ``linger_s``. The async client flushes
from a background task (``await publish(...)`` returns once its batch is accepted); the
sync client has no thread: it sends when ``publish`` finds the batch full or old, and on
``flush()`` and leaving its ``with`` block.

Both are one core (``_Core``: the request of a batch, what an answer means, when to try
again, the counts; the decisions themselves are :mod:`bus.client_events`' pure functions)
under a thin shell that sends and waits its own way.

Example::

    with Client("http://ingress:9400", token="...") as bus:
        bus.publish(EmployeeHired(employee_id="e-1", name="Ada"))

    async with AsyncClient("http://ingress:9400", token="...") as bus:
        await bus.publish(EmployeeHired(employee_id="e-1", name="Ada"))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx
import tenacity

from bus.client_events import Answer, Retry, batch_body, cloudevent, outcome, retry_wait_s
from bus.errors import PublishRefusedError, TransportError
from bus.ids import new_id
from bus.message import Message
from bus.stamping import utc_now

__all__ = ["Answer", "AsyncClient", "Client"]

_DEFAULT_SOURCE = "bus://client"
_T = TypeVar("_T")


class _RetryError(Exception):
    """An answer or failure worth another attempt, after ``wait_s`` if it said."""

    def __init__(self, why: str, wait_s: float | None) -> None:
        super().__init__(why)
        self.wait_s = wait_s


@contextlib.contextmanager
def _connection_errors_retried() -> Iterator[None]:
    """httpx's connection failures (no answer, so no ``Retry-After``) as worth a retry."""
    try:
        yield
    except httpx.TransportError as exc:
        raise _RetryError(f"{type(exc).__name__}: {exc}", None) from exc


@dataclass(frozen=True, slots=True)
class _Request:
    """One batch's POST, the same bytes on every attempt."""

    body: bytes
    headers: dict[str, str]


class _Pending(Generic[_T]):
    """What waits for the next batch request, and since when (monotonic seconds)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[_T] = []
        self.since_s = 0.0

    def add(self, item: _T, now_s: float) -> bool:
        """Queue ``item``; True when the batch is full."""
        if not self.items:
            self.since_s = now_s
        self.items.append(item)
        return len(self.items) >= self.size

    def take(self) -> list[_T]:
        items, self.items = self.items, []
        return items


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Core:
    """What both clients are: where and as whom they publish, the request of a batch, what
    an answer means, when to try again, and the counts. A shell adds its HTTP client
    (``_open``) and sends and waits its own way (sync or asyncio)."""

    #: ``linger_s`` when the caller gives none (the shell's own).
    _default_linger_s: float

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        source: str = _DEFAULT_SOURCE,
        batch_size: int = 100,
        linger_s: float | None = None,
        attempts: int = 6,
        max_wait_s: float = 10.0,
        timeout_s: float = 30.0,
        verify: Any = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._url = url.rstrip("/") + "/events"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._source = source
        self._batch_size = batch_size
        self._linger_s = self._default_linger_s if linger_s is None else linger_s
        self._attempts = attempts
        self._max_wait_s = max_wait_s
        #: Events accepted so far, and of those duplicates (accepted before).
        self.accepted = 0
        self.duplicates = 0
        self._open(timeout_s=timeout_s, verify=verify)

    def _open(self, *, timeout_s: float, verify: Any) -> None:
        raise NotImplementedError

    def _event(self, message: Message | Mapping[str, Any], **attributes: Any) -> dict[str, Any]:
        if isinstance(message, Message):
            return cloudevent(
                message,
                source=self._source,
                id=attributes.pop("id", None) or new_id(),
                time=attributes.pop("time", None) or utc_now(),
                **attributes,
            )
        return dict(message)  # already a CloudEvent (bus publish --via keeps its attributes)

    def _request(self, events: Sequence[Mapping[str, Any]]) -> _Request:
        body, content_type = batch_body(events)
        return _Request(body, {**self._headers, "Content-Type": content_type})

    def _retrying(self, kind: type[Any]) -> Any:
        """A fresh ``tenacity.Retrying`` or ``AsyncRetrying`` (each send its own state)."""

        def wait(state: tenacity.RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome else None
            asked_s = failed.wait_s if isinstance(failed, _RetryError) else None
            return retry_wait_s(asked_s, state.attempt_number, self._max_wait_s)

        return kind(
            retry=tenacity.retry_if_exception_type(_RetryError),
            wait=wait,
            stop=tenacity.stop_after_attempt(self._attempts),
            reraise=True,
        )

    def _answer(self, response: httpx.Response) -> Answer:
        """The answer's meaning: an :class:`Answer`, else raised (a retry or a refusal)."""
        meant = outcome(response.status_code, response.content, response.headers.get("Retry-After"))
        if isinstance(meant, Retry):
            raise _RetryError(meant.why, meant.wait_s)
        if isinstance(meant, PublishRefusedError):
            raise meant
        return meant

    @contextlib.contextmanager
    def _giving_up(self) -> Iterator[None]:
        try:
            yield
        except _RetryError as exc:
            raise TransportError(f"not published to {self._url} after retries: {exc}") from exc

    def _counted(self, answer: Answer) -> Answer:
        self.accepted += answer.accepted
        self.duplicates += answer.duplicates
        return answer


class Client(_Core):
    """Publish over HTTP from synchronous code; see the module docstring. ``linger_s``
    defaults to 0.05.

    Example::

        with Client("http://localhost:9400", token=token, source="bus://hr") as bus:
            bus.publish_many([EmployeeHired(employee_id=i, name="x") for i in ids])
    """

    _default_linger_s = 0.05

    def _open(self, *, timeout_s: float, verify: Any) -> None:
        self._http = httpx.Client(timeout=timeout_s, verify=verify)
        self._pending: _Pending[dict[str, Any]] = _Pending(self._batch_size)

    def publish(self, message: Message | Mapping[str, Any], **attributes: Any) -> str:
        """Queue ``message`` (sent when the batch is full or old); returns its event id.
        ``attributes``: ``id``, ``time``, ``subject``, ``extensions``."""
        event = self._event(message, **attributes)
        full = self._pending.add(event, time.monotonic())
        if full or time.monotonic() - self._pending.since_s >= self._linger_s:
            self.flush()
        return str(event["id"])

    def publish_many(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[str]:
        """Send ``messages`` now, in batches of ``batch_size``; their event ids."""
        ids = [self.publish(m) for m in messages]
        self.flush()
        return ids

    def flush(self) -> Answer:
        """Send what is queued; what the ingress answered for it."""
        answer = Answer(0, 0)
        for chunk in _chunks(self._pending.take(), self._batch_size):
            answer += self._send(chunk)
        return answer

    def _send(self, events: Sequence[Mapping[str, Any]]) -> Answer:
        request = self._request(events)
        with self._giving_up():
            answer: Answer = self._retrying(tenacity.Retrying)(self._post, request)
        return self._counted(answer)

    def _post(self, request: _Request) -> Answer:
        with _connection_errors_retried():
            response = self._http.post(self._url, content=request.body, headers=request.headers)
        return self._answer(response)

    def close(self) -> None:
        """Send what is queued, then close the connections."""
        try:
            self.flush()
        finally:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:  # the block failed: do not send half of what it meant to
            self._http.close()


class AsyncClient(_Core):
    """Publish over HTTP from asyncio code; see the module docstring. ``linger_s``
    defaults to 0.005.

    Example::

        async with AsyncClient("http://localhost:9400", token=token) as bus:
            await asyncio.gather(*(bus.publish(m) for m in messages))  # batched
    """

    _default_linger_s = 0.005

    def _open(self, *, timeout_s: float, verify: Any) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_s, verify=verify)
        self._pending: _Pending[tuple[dict[str, Any], asyncio.Future[Answer]]]
        self._pending = _Pending(self._batch_size)
        self._linger: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def publish(self, message: Message | Mapping[str, Any], **attributes: Any) -> str:
        """Send ``message`` in the next batch; returns its event id once it is accepted."""
        event = self._event(message, **attributes)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Answer] = loop.create_future()
        if self._pending.add((event, done), loop.time()):
            self._send_pending()
        elif self._linger is None:
            self._linger = asyncio.create_task(self._after_linger())
        await done
        return str(event["id"])

    async def publish_many(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[str]:
        """Send ``messages`` in batches of ``batch_size``, now; their event ids."""
        events = [self._event(m) for m in messages]
        for chunk in _chunks(events, self._batch_size):
            await self._send(chunk)
        return [str(e["id"]) for e in events]

    async def flush(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        self._send_pending()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _after_linger(self) -> None:
        await asyncio.sleep(self._linger_s)
        self._linger = None
        self._send_pending()

    def _send_pending(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        batch = self._pending.take()
        if batch:
            task = asyncio.create_task(self._send_batch(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_batch(self, batch: list[tuple[dict[str, Any], asyncio.Future[Answer]]]) -> None:
        try:
            answer = await self._send([event for event, _ in batch])
        except BaseException as exc:  # every waiting publish hears why
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for _, done in batch:
            if not done.done():
                done.set_result(answer)

    async def _send(self, events: Sequence[Mapping[str, Any]]) -> Answer:
        request = self._request(events)
        with self._giving_up():
            answer: Answer = await self._retrying(tenacity.AsyncRetrying)(self._post, request)
        return self._counted(answer)

    async def _post(self, request: _Request) -> Answer:
        with _connection_errors_retried():
            response = await self._http.post(
                self._url, content=request.body, headers=request.headers
            )
        return self._answer(response)

    async def aclose(self) -> None:
        """Send what is queued, then close the connections."""
        try:
            await self.flush()
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


__all__ += ["PublishRefusedError"]
