"""The ingress's endpoints on the process's aiohttp server: ``POST /events``, the webhooks,
``GET /openapi.json``.

A request goes through, in this order (each step's refusal is its answer)::

    in flight >= max_pending_events      -> 503 Retry-After   (the producer queue is full)
    Access.authenticate(Authorization)   -> 401               (before the body is read)
    body > max_body_bytes                -> 413
    body slower than body_timeout_s      -> 408 (and the connection closed)
    binding.read_request(...)            -> 415 / 400         (every field error at once)
    events > max_batch_events            -> 413
    tokens.authorize(grant, events)      -> 403
    admission.admit(events, registry)    -> 422 / 400
    Access.spend(grant, len(events))     -> 429 Retry-After
    Idempotency.claim(records)           -> duplicates dropped (503 if the store fails)
    Publisher.forward(records)           -> 503 Retry-After   (broker down or not acking),
                                            413 (a record the broker refuses as too large)
                                         -> 202 {accepted, duplicates, ids, duplicate_ids}

A webhook replaces the token by its signature (401) and the binding by its function
(400 for a body that is not JSON, 422 for a payload it cannot map).

Example::

    server = IngressServer(registry, publisher, access=Access(None), config=config)
    async with HttpServer(port=0, routes=[server.add_routes]) as http: ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiohttp import web

from bus.config import IngressConfig
from bus.dedup.base import DedupKey
from bus.errors import ConfigError, MessageTooLargeError, StoreError, TransportError
from bus.ids import new_id
from bus.ingress.access import Access
from bus.ingress.admission import Admitted, admit
from bus.ingress.binding import read_request
from bus.ingress.idempotency import INGRESS_HANDLER, Claim, Idempotency
from bus.ingress.openapi import openapi_document
from bus.ingress.problems import Refusal, RefusedError
from bus.ingress.signatures import check_sha256, check_timestamped
from bus.ingress.tokens import authorize
from bus.ingress.webhooks import Webhook, mapped_events
from bus.metrics import Metrics, MetricSpec, default_metrics
from bus.publisher import Publisher, record_for
from bus.registry import Registry
from bus.stamping import utc_now

__all__ = ["IngressServer", "IngressStats"]

log = logging.getLogger("bus.ingress")
_ACCEPTED_TYPE = "application/json"
#: The ingress's metrics, on the process's registry (served at /metrics beside it).
EVENTS = MetricSpec(
    "bus_ingress_events_total",
    "counter",
    ("outcome",),
    "Events the ingress accepted: published, or duplicate (accepted before, not published).",
)
REQUESTS = MetricSpec(
    "bus_ingress_requests_total",
    "counter",
    ("status",),
    "Requests to the ingress (CloudEvents and webhooks) by the status answered.",
)
_STATUSES = ("202", "400", "401", "403", "408", "413", "415", "422", "429", "503")


@dataclass(slots=True)
class IngressStats:
    """What the ingress did (``IngressServer.stats``): events, and refusals by status."""

    published: int = 0
    duplicates: int = 0
    #: HTTP status -> requests refused with it.
    refused: dict[int, int] | None = None


class IngressServer:
    """Serves CloudEvents and webhooks into ``publisher``; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        publisher: Publisher,
        *,
        access: Access,
        config: IngressConfig,
        idempotency: Idempotency | None = None,
        webhooks: Sequence[Webhook] = (),
        secrets: Mapping[str, bytes] | None = None,
        clock: Callable[[], datetime] = utc_now,
        ids: Callable[[], str] = new_id,
        wall_clock_s: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.access = access
        self.config = config
        self.idempotency = idempotency
        self.webhooks = list(webhooks)
        #: Webhook path -> its HMAC secret (from the environment, read at start).
        self._secrets = dict(secrets or {})
        missing = [w.secret_env for w in self.webhooks if w.path not in self._secrets]
        if missing:
            raise ConfigError(f"no secret for webhook(s) using {', '.join(missing)}")
        self._clock = clock
        self._ids = ids
        self._wall_clock_s = wall_clock_s
        self._pending = 0
        self.stats = IngressStats(refused={})
        registry_metrics = metrics or default_metrics()
        self._events_total = registry_metrics.counter(EVENTS)
        self._requests_total = registry_metrics.counter(REQUESTS)
        # zeros first: increase() sees the first one; the children looked up once, not per
        # request (a labels() call takes a lock and builds a key)
        self._published_total = self._events_total.labels("published")
        self._duplicates_total = self._events_total.labels("duplicate")
        self._accepted_total = self._requests_total.labels("202")
        for status in _STATUSES:
            self._requests_total.labels(status)
        self._openapi = orjson.dumps(openapi_document(registry, webhooks=self.webhooks))

    def add_routes(self, app: web.Application) -> None:
        """Add the endpoints to ``app`` (``HttpServer(routes=[server.add_routes])``)."""
        app.router.add_post("/events", self._events)
        app.router.add_get("/openapi.json", self._openapi_json)
        for hook in self.webhooks:
            app.router.add_post(hook.path, self._webhook_handler(hook))

    async def _events(self, request: web.Request) -> web.Response:
        try:
            self._check_room()
            grant = self.access.authenticate(request.headers.get("Authorization"))
            body = await self._body(request)
            read = read_request(request.headers.get("Content-Type"), request.headers.items(), body)
            if len(read.events) + len(read.errors) > self.config.max_batch_events:
                raise _too_large(f"more than {self.config.max_batch_events} events in one batch")
            if grant is not None:
                authorize(grant, read.events, read.indexes)
            admitted = admit(
                read.events, self.registry, self._clock(), indexes=read.indexes, errors=read.errors
            )
            if grant is not None:
                self.access.spend(grant, len(admitted))
            return await self._publish(admitted)
        except RefusedError as exc:
            return await self._refused(request, exc.refusal)

    def _webhook_handler(self, hook: Webhook) -> Callable[[web.Request], Awaitable[web.Response]]:
        secret = self._secrets[hook.path]

        async def handle(request: web.Request) -> web.Response:
            try:
                self._check_room()
                body = await self._body(request)
                self._check_signature(
                    hook, secret, body, request.headers.get(hook.signature_header)
                )
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    raise RefusedError(Refusal(400, f"the body is not JSON: {exc}")) from exc
                delivery = request.headers.get(hook.id_header) if hook.id_header else None
                admitted = mapped_events(hook, payload, self._id_for(delivery), self._clock())
                return await self._publish(admitted)
            except RefusedError as exc:
                return await self._refused(request, exc.refusal)

        return handle

    def _id_for(self, delivery: str | None) -> Callable[[int], str]:
        if not delivery:
            return lambda n: self._ids()
        return lambda n: delivery if n == 0 else f"{delivery}.{n}"

    def _check_signature(
        self, hook: Webhook, secret: bytes, body: bytes, header: str | None
    ) -> None:
        if hook.signature == "sha256":
            problem = check_sha256(secret, body, header)
        else:
            problem = check_timestamped(
                secret, body, header, now_s=self._wall_clock_s(), tolerance_s=hook.tolerance_s
            )
        if problem is not None:
            raise RefusedError(Refusal(401, f"{hook.signature_header}: {problem}"))

    def _check_room(self) -> None:
        if self._pending >= self.config.max_pending_events:
            raise RefusedError(
                Refusal(
                    503,
                    "the ingress is full: too many events being published",
                    retry_after_s=self.config.retry_after_s,
                )
            )

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(f"the body is larger than {limit} bytes")
        body = bytearray()
        head = b""
        if length is not None:
            # what already arrived: most bodies come with their headers, and need no timer
            # (a timeout's set-up and cancel were 5% of a single-event request's CPU)
            head = request.content.read_nowait(length)
            if len(head) == length:
                return head
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                if length is not None:
                    try:
                        return head + await request.content.readexactly(length - len(head))
                    except asyncio.IncompleteReadError as exc:
                        return head + exc.partial  # what arrived, as the loop below answers
                while chunk := await request.content.read(limit + 1 - len(body)):
                    body += chunk
                    if len(body) > limit:
                        raise _too_large(f"the body is larger than {limit} bytes")
        except TimeoutError:
            raise RefusedError(
                Refusal(408, f"the body did not arrive within {self.config.body_timeout_s:g} s")
            ) from None
        return bytes(body)

    async def _publish(self, admitted: list[Admitted]) -> web.Response:
        records = [record_for(a.message, a.envelope) for a in admitted]
        if not self.publisher.transport.ready:
            raise RefusedError(self._unavailable("the broker is not reachable"))
        self._pending += len(records)
        duplicate_ids: list[str] = []
        try:
            if self.idempotency is not None:
                keys = [
                    DedupKey(INGRESS_HANDLER, a.envelope.source, a.envelope.id) for a in admitted
                ]
                todo = await self.idempotency.claim(list(zip(keys, records, strict=True)))
                try:
                    await self.publisher.forward([record for _, record in todo])
                except BaseException:
                    self.idempotency.release(todo, published=False)
                    raise
                self.idempotency.release(todo, published=True)
                published = len(todo)
                if published < len(keys):
                    duplicate_ids = _not_published(keys, todo)
            else:
                await self.publisher.forward(records)
                published = len(records)
        except MessageTooLargeError as exc:  # permanent: a retry would be refused again
            raise _too_large(f"an event is larger than the broker accepts: {exc}") from exc
        except (TransportError, StoreError) as exc:
            log.warning("ingress: %d event(s) not published: %s", len(records), exc)
            raise RefusedError(self._unavailable(str(exc))) from exc
        finally:
            self._pending -= len(records)
        self.stats.published += published
        self.stats.duplicates += len(records) - published
        self._published_total.inc(published)
        if published < len(records):
            self._duplicates_total.inc(len(records) - published)
        self._accepted_total.inc()
        answer = {
            "accepted": len(records),
            "duplicates": len(records) - published,
            "ids": [a.envelope.id for a in admitted],
            "duplicate_ids": duplicate_ids,
        }
        body = orjson.dumps(answer)
        return web.Response(status=202, body=body, content_type=_ACCEPTED_TYPE)

    def _unavailable(self, why: str) -> Refusal:
        return Refusal(
            503, f"not published, try again: {why}", retry_after_s=self.config.retry_after_s
        )

    def _refuse(self, refusal: Refusal) -> web.Response:
        refused = self.stats.refused
        assert refused is not None
        refused[refusal.status] = refused.get(refusal.status, 0) + 1
        self._requests_total.labels(str(refusal.status)).inc()
        return web.Response(status=refusal.status, body=refusal.body(), headers=refusal.headers())

    async def _refused(self, request: web.Request, refusal: Refusal) -> web.Response:
        answer = self._refuse(refusal)
        if refusal.status == 408 and request.protocol is not None:
            # sent now and the connection closed: aiohttp would otherwise linger reading
            # the rest of a trickling body for another 10 s before closing
            await answer.prepare(request)
            await answer.write_eof()
            request.protocol.force_close()
        return answer

    async def _openapi_json(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")


def _not_published(keys: Sequence[DedupKey], todo: Sequence[Claim]) -> list[str]:
    """The ids of ``keys`` (request order) not published now: accepted before, or given
    again later in the request (:meth:`Idempotency.claim` publishes its first only)."""
    taken = {key for key, _ in todo}
    ids: list[str] = []
    for key in keys:
        if key in taken:
            taken.discard(key)  # its later copies in the request are duplicates
        else:
            ids.append(key.id)
    return ids


def _too_large(title: str) -> RefusedError:
    return RefusedError(Refusal(413, title))
