"""An ingress process in the test: ``serve_ingress`` on a real broker, and its HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bus import BusConfig, Event, Registry, TopicSpec, Transport
from bus.config import IngressConfig
from bus.http import HttpServer
from bus.ingress import Ingress, IngressServer, hash_token, serve_ingress
from bus.record import Record
from bus.transports.kafka import KafkaTransport
from tests.waiting import wait_until

registry = Registry()
TOPIC = f"ingress-it-{os.getpid()}"


class Hired(Event, type="it.ingress.hired.v1", topic=TOPIC, key="employee_id", registry=registry):
    employee_id: str
    name: str


class Left(Event, type="it.ingress.left.v1", topic=TOPIC, key="employee_id", registry=registry):
    employee_id: str


class _Apps:
    """What ``serve_ingress`` reads of an App: its registry."""

    def __init__(self) -> None:
        self.registry = registry


APPS: Any = [_Apps()]

TOKENS = {"hr": "hr-token", "admin": "admin-token", "slow": "slow-token"}
#: The console's token in the same file (docs/ingress.md, "Token file"): it may not publish.
CONSOLE_TOKEN = "console-operator-token"


def token_file(path: Path, tokens: dict[str, str] = TOKENS, *, extra: str = "") -> Path:
    """hr may publish hired events as bus://hr; admin anything; slow at 1 event/s; alice
    is the operator console's (a role, no types): she may not publish."""
    path.write_text(
        f"""
[[tokens]]
name = "hr"
sha256 = "{hash_token(tokens["hr"])}"
types = ["it.ingress.hired.*"]
sources = ["bus://hr*"]

[[tokens]]
name = "admin"
sha256 = "{hash_token(tokens["admin"])}"

[[tokens]]
name = "slow"
sha256 = "{hash_token(tokens["slow"])}"
rate_per_s = 1
burst = 2

[[tokens]]
name = "alice"
sha256 = "{hash_token(CONSOLE_TOKEN)}"
role = "operator"
{extra}"""
    )
    return path


def event(id_: str, source: str, *, employee: str = "e-1", type_: str = "it.ingress.hired.v1", **data: Any) -> dict[str, Any]:  # fmt: skip
    body = (
        {"employee_id": employee, "name": "Ada"}
        if type_.endswith("hired.v1")
        else {"employee_id": employee}
    )
    return {"specversion": "1.0", "id": id_, "source": source, "type": type_, "data": {**body, **data}}  # fmt: skip


@dataclass
class Ingested:
    """A running ingress: its URL, server, client session, transport."""

    url: str
    server: IngressServer
    http: HttpServer
    session: aiohttp.ClientSession
    transport: Transport
    ssl: ssl.SSLContext | None = None
    seen: list[Record] = field(default_factory=list)

    async def post(
        self,
        body: Any,
        *,
        token: str | None = "admin-token",
        content_type: str = "application/cloudevents+json",
        headers: dict[str, str] | None = None,
        path: str = "/events",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST ``body`` (JSON-encoded unless bytes); (status, JSON answer, headers)."""
        sent = dict(headers or {})
        sent.setdefault("Content-Type", content_type)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with self.session.post(
            self.url + path, data=data, headers=sent, ssl=self.ssl
        ) as answer:
            raw = await answer.read()
            doc = orjson.loads(raw) if raw[:1] in (b"{", b"[") else {"raw": raw.decode()}
            return answer.status, doc, dict(answer.headers)

    async def published(self, source: str, count: int, *, timeout_s: float = 20.0) -> list[Record]:
        """The records of ``source`` on the topic, once there are ``count`` of them."""

        async def read() -> list[Record]:
            consumer = self.transport.consumer([TOPIC], group=None)
            await consumer.start()
            found: list[Record] = []
            try:
                while True:
                    batch = await consumer.fetch(max_records=5000, timeout_s=0.3)
                    if not batch:
                        break
                    found.extend(r for rs in batch.values() for r in rs)
            finally:
                await consumer.stop()
            return [r for r in found if dict(r.headers).get("ce_source") == source.encode()]

        return await wait_until(
            read,
            timeout_s=timeout_s,
            what=f"{count} record(s) of {source}",
            until=lambda rs: len(rs) >= count,
            interval_s=0.2,
        )


async def ensure_topic(transport: Transport) -> None:
    await transport.ensure_topics([TopicSpec(TOPIC, partitions=3, replication_factor=1)])


@contextlib.asynccontextmanager
async def ingress_running(
    transport: Transport,
    tmp_path: Path,
    *,
    ingress: Ingress | None = None,
    client_ssl: ssl.SSLContext | None = None,
    http: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Ingested]:
    """``serve_ingress`` until the block ends (tokens from :func:`token_file` by default)."""
    if "tokens_file" not in settings and not settings.get("allow_anonymous"):
        settings["tokens_file"] = str(token_file(tmp_path / "tokens.toml"))
    settings.setdefault("tokens_check_interval_s", 0.0)
    config = IngressConfig.from_env({}, **settings)
    stop = asyncio.Event()
    started: asyncio.Future[tuple[HttpServer, IngressServer]] = (
        asyncio.get_running_loop().create_future()
    )
    task = asyncio.create_task(
        serve_ingress(
            APPS,
            config=config,
            bus_config=BusConfig.from_env({}, http_port=0, **(http or {})),
            transport=transport,
            ingress=ingress,
            stop=stop,
            started=lambda http, server: started.set_result((http, server)),
        )
    )
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        await task  # raise why it did not start
    http, server = started.result()
    if isinstance(transport, KafkaTransport):
        await ensure_topic(transport)
    try:
        async with aiohttp.ClientSession() as session:
            yield Ingested(http.url, server, http, session, transport, client_ssl)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
