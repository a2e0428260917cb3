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

Example::

    with Client("http://ingress:9400", token="...") as bus:
        bus.publish(EmployeeHired(employee_id="e-1", name="Ada"))

    async with AsyncClient("http://ingress:9400", token="...") as bus:
        await bus.publish(EmployeeHired(employee_id="e-1", name="Ada"))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx
import tenacity

from bus.client_events import (
    RETRY_STATUSES,
    Answer,
    batch_body,
    cloudevent,
    refusal_error,
    retry_after_s,
)
from bus.errors import PublishRefusedError, TransportError
from bus.ids import new_id
from bus.message import Message
from bus.stamping import utc_now

__all__ = ["Answer", "AsyncClient", "Client"]

_DEFAULT_SOURCE = "bus://client"


class _RetryError(Exception):
    """An answer or failure worth another attempt, after ``wait_s`` if it said."""

    def __init__(self, why: str, wait_s: float | None) -> None:
        super().__init__(why)
        self.wait_s = wait_s


class _Settings:
    """What both clients share: where, who, how to retry and batch."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        source: str,
        batch_size: int,
        linger_s: float,
        attempts: int,
        max_wait_s: float,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url = url.rstrip("/") + "/events"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.source = source
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.attempts = attempts
        self.max_wait_s = max_wait_s

    def event(self, message: Message | Mapping[str, Any], **attributes: Any) -> dict[str, Any]:
        if isinstance(message, Message):
            return cloudevent(
                message,
                source=self.source,
                id=attributes.pop("id", None) or new_id(),
                time=attributes.pop("time", None) or utc_now(),
                **attributes,
            )
        return dict(message)  # already a CloudEvent (bus publish --via keeps its attributes)

    def retrying(self, kind: type[Any]) -> Any:
        def wait(state: tenacity.RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome else None
            backoff = min(self.max_wait_s, 0.1 * 2 ** (state.attempt_number - 1))
            said = failed.wait_s if isinstance(failed, _RetryError) else None
            return min(self.max_wait_s, said) if said is not None else backoff

        return kind(
            retry=tenacity.retry_if_exception_type(_RetryError),
            wait=wait,
            stop=tenacity.stop_after_attempt(self.attempts),
            reraise=True,
        )

    def answer(self, response: httpx.Response) -> Answer:
        if response.status_code == 202:
            return Answer.of(response.content)
        if response.status_code in RETRY_STATUSES:
            raise _RetryError(
                f"{response.status_code}: {refusal_error(response.status_code, response.content)}",
                retry_after_s(response.headers.get("Retry-After"), 0.5),
            )
        raise refusal_error(response.status_code, response.content)


def _gave_up(exc: _RetryError, url: str) -> TransportError:
    return TransportError(f"not published to {url} after retries: {exc}")


class Client:
    """Publish over HTTP from synchronous code; see the module docstring.

    Example::

        with Client("http://localhost:9400", token=token, source="bus://hr") as bus:
            bus.publish_many([EmployeeHired(employee_id=i, name="x") for i in ids])
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        source: str = _DEFAULT_SOURCE,
        batch_size: int = 100,
        linger_s: float = 0.05,
        attempts: int = 6,
        max_wait_s: float = 10.0,
        timeout_s: float = 30.0,
        verify: Any = True,
    ) -> None:
        self._settings = _Settings(
            url,
            token,
            source=source,
            batch_size=batch_size,
            linger_s=linger_s,
            attempts=attempts,
            max_wait_s=max_wait_s,
        )
        self._http = httpx.Client(timeout=timeout_s, verify=verify)
        self._pending: list[dict[str, Any]] = []
        self._oldest = 0.0
        #: Events accepted so far, and of those duplicates (accepted before).
        self.accepted = 0
        self.duplicates = 0

    def publish(self, message: Message | Mapping[str, Any], **attributes: Any) -> str:
        """Queue ``message`` (sent when the batch is full or old); returns its event id.
        ``attributes``: ``id``, ``time``, ``subject``, ``extensions``."""
        event = self._settings.event(message, **attributes)
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(event)
        if (
            len(self._pending) >= self._settings.batch_size
            or time.monotonic() - self._oldest >= self._settings.linger_s
        ):
            self.flush()
        return str(event["id"])

    def publish_many(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[str]:
        """Send ``messages`` now, in batches of ``batch_size``; their event ids."""
        ids = [self.publish(m) for m in messages]
        self.flush()
        return ids

    def flush(self) -> Answer:
        """Send what is queued; what the ingress answered for it."""
        events, self._pending = self._pending, []
        answer = Answer(0, 0)
        size = self._settings.batch_size
        for start in range(0, len(events), size):
            got = self._send(events[start : start + size])
            answer = Answer(answer.accepted + got.accepted, answer.duplicates + got.duplicates)
        return answer

    def _send(self, events: list[dict[str, Any]]) -> Answer:
        body, content_type = batch_body(events)
        headers = {**self._settings.headers, "Content-Type": content_type}
        try:
            for attempt in self._settings.retrying(tenacity.Retrying):
                with attempt:
                    try:
                        response = self._http.post(
                            self._settings.url, content=body, headers=headers
                        )
                    except httpx.TransportError as exc:
                        raise _RetryError(f"{type(exc).__name__}: {exc}", None) from exc
                    answer = self._settings.answer(response)
        except _RetryError as exc:
            raise _gave_up(exc, self._settings.url) from exc
        self.accepted += answer.accepted
        self.duplicates += answer.duplicates
        return answer

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


class AsyncClient:
    """Publish over HTTP from asyncio code; see the module docstring.

    Example::

        async with AsyncClient("http://localhost:9400", token=token) as bus:
            await asyncio.gather(*(bus.publish(m) for m in messages))  # batched
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        source: str = _DEFAULT_SOURCE,
        batch_size: int = 100,
        linger_s: float = 0.005,
        attempts: int = 6,
        max_wait_s: float = 10.0,
        timeout_s: float = 30.0,
        verify: Any = True,
    ) -> None:
        self._settings = _Settings(
            url,
            token,
            source=source,
            batch_size=batch_size,
            linger_s=linger_s,
            attempts=attempts,
            max_wait_s=max_wait_s,
        )
        self._http = httpx.AsyncClient(timeout=timeout_s, verify=verify)
        self._pending: list[tuple[dict[str, Any], asyncio.Future[Answer]]] = []
        self._linger: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.duplicates = 0

    async def publish(self, message: Message | Mapping[str, Any], **attributes: Any) -> str:
        """Send ``message`` in the next batch; returns its event id once it is accepted."""
        event = self._settings.event(message, **attributes)
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        if len(self._pending) >= self._settings.batch_size:
            self._send_pending()
        elif self._linger is None:
            self._linger = asyncio.create_task(self._after_linger())
        await done
        return str(event["id"])

    async def publish_many(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[str]:
        """Send ``messages`` in batches of ``batch_size``, now; their event ids."""
        events = [self._settings.event(m) for m in messages]
        size = self._settings.batch_size
        for start in range(0, len(events), size):
            await self._send(events[start : start + size])
        return [str(e["id"]) for e in events]

    async def flush(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        self._send_pending()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _after_linger(self) -> None:
        await asyncio.sleep(self._settings.linger_s)
        self._linger = None
        self._send_pending()

    def _send_pending(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        batch, self._pending = self._pending, []
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

    async def _send(self, events: list[dict[str, Any]]) -> Answer:
        body, content_type = batch_body(events)
        headers = {**self._settings.headers, "Content-Type": content_type}
        try:
            async for attempt in self._settings.retrying(tenacity.AsyncRetrying):
                with attempt:
                    try:
                        response = await self._http.post(
                            self._settings.url, content=body, headers=headers
                        )
                    except httpx.TransportError as exc:
                        raise _RetryError(f"{type(exc).__name__}: {exc}", None) from exc
                    answer = self._settings.answer(response)
        except _RetryError as exc:
            raise _gave_up(exc, self._settings.url) from exc
        self.accepted += answer.accepted
        self.duplicates += answer.duplicates
        return answer

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
