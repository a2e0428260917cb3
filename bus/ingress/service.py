"""The ``bus ingress`` process: the ingress server on the process's one HTTP server.

:func:`serve_ingress` opens what the ingress needs (transport, dedup store, token file,
webhook secrets, TLS context), serves until ``stop`` is set (SIGTERM/SIGINT when none is
given), then closes it all. Every setting problem is found before anything listens.
The CLI (``bus ingress APP...``) loads the apps as ``bus run`` does and calls it.

Example::

    config = IngressConfig.from_env()
    await serve_ingress(load_apps("handlers.hr:app"), config=config,
                        bus_config=BusConfig.from_env(), transport=transport)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.app import App
from bus.config import BusConfig, IngressConfig, env_secret
from bus.dedup.base import DedupStore
from bus.dedup.memory import MemoryDedupStore
from bus.dedup.postgres import PostgresDedupStore
from bus.dedup.sqlite import SqliteDedupStore
from bus.errors import BusError, ConfigError
from bus.http import HttpServer, Readiness
from bus.ingress.access import Access, TokenFile
from bus.ingress.idempotency import Idempotency
from bus.ingress.server import IngressServer
from bus.ingress.webhooks import Ingress, Webhook
from bus.publisher import Publisher
from bus.registry import Registry
from bus.runner import install_signal_handlers
from bus.transports.base import Transport
from bus.waits import wait_for_event

__all__ = [
    "INGRESS_LINGER_MS",
    "IngressSetup",
    "apps_registry",
    "dedup_store_for",
    "ingress_server",
    "ingress_setup",
    "serve_ingress",
    "ssl_context_for",
    "webhook_secrets",
]

#: Group transactions the ingress runs at once on a PostgreSQL dedup store.
POSTGRES_WRITES = 4
#: ``bus ingress``'s producer linger (BUS_KAFKA_LINGER_MS still wins): a request waits
#: for its events' acknowledgement, so a linger is latency it pays in full; records still
#: batch while a produce request is in flight. At 1,000 requests/s the median was 4.1 ms
#: at 0 and 5.6 ms at 1 ms, for the same CPU (bus's 5 ms default was slower still).
INGRESS_LINGER_MS = 0
log = logging.getLogger("bus.ingress")
#: Seconds between broker probes: a broker gone is answered 503 within about
#: PROBE_INTERVAL_S + PROBE_TIMEOUT_S, not after a publish timeout.
PROBE_INTERVAL_S = 1.0
#: Seconds a probe waits for the broker's answer: long enough that a loaded host or
#: broker is not taken for a missing one (1 s did, on a 2-core machine at load 15).
PROBE_TIMEOUT_S = 5.0


def apps_registry(apps: Sequence[App]) -> Registry:
    """The message types the ingress accepts: those registered on the apps' registries."""
    registry = Registry()
    for app in apps:
        for model in app.registry:
            registry.register(model)
    return registry


def dedup_store_for(spec: str) -> DedupStore[Any] | None:
    """``BUS_INGRESS_DEDUP_STORE`` as a store (not opened): none, memory, SQLite, PostgreSQL."""
    if not spec:
        return None
    if spec == "memory":
        return MemoryDedupStore(max_entries=1_000_000)
    if spec.startswith("sqlite:"):
        return SqliteDedupStore(spec.removeprefix("sqlite:"))
    return PostgresDedupStore(spec)


def ssl_context_for(config: IngressConfig) -> ssl.SSLContext | None:
    """A server TLS context of the configured certificate and key, or None (plain HTTP)."""
    if config.tls_certfile is None or config.tls_keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {config.tls_certfile} and key "
            f"{config.tls_keyfile}: {exc} (BUS_INGRESS_TLS_CERTFILE/KEYFILE)"
        ) from exc
    return context


def webhook_secrets(
    ingress: Ingress | None, env: Mapping[str, str] | None = None
) -> dict[str, bytes]:
    """Webhook path -> its secret; one :class:`ConfigError` naming every variable unset."""
    found: dict[str, bytes] = {}
    missing: list[str] = []
    for hook in ingress.webhooks.values() if ingress else ():
        try:
            found[hook.path] = env_secret(hook.secret_env, env).reveal().encode()
        except ConfigError:
            missing.append(f"{hook.secret_env} (webhook {hook.path})")
    if missing:
        raise ConfigError("webhook secrets not set: " + ", ".join(missing))
    return found


@dataclass(frozen=True, slots=True)
class IngressSetup:
    """What an ingress serves, checked before anything starts (:func:`ingress_setup`)."""

    registry: Registry
    webhooks: tuple[Webhook, ...]
    secrets: Mapping[str, bytes]
    tokens: TokenFile | None


def ingress_setup(
    apps: Sequence[App], config: IngressConfig, ingress: Ingress | None = None
) -> IngressSetup:
    """The apps' registry, the webhooks and their secrets, the token file; raises
    :class:`ConfigError` naming every missing secret."""
    tokens = None
    if config.tokens_file is not None:
        tokens = TokenFile(
            Path(config.tokens_file), check_interval_s=config.tokens_check_interval_s
        )
    return IngressSetup(
        apps_registry(apps),
        tuple(ingress.webhooks.values()) if ingress else (),
        webhook_secrets(ingress),
        tokens,
    )


@contextlib.asynccontextmanager
async def ingress_server(
    setup: IngressSetup, config: IngressConfig, publisher: Publisher
) -> AsyncIterator[IngressServer]:
    """An :class:`IngressServer` publishing through ``publisher`` (whose transport the
    caller starts and stops), with its dedup store open while the block runs. ``bus run
    --ingress`` adds its routes to the process's HTTP server this way."""
    async with _idempotency(config) as idempotency:
        yield IngressServer(
            setup.registry,
            publisher,
            access=Access(setup.tokens),
            config=config,
            idempotency=idempotency,
            webhooks=setup.webhooks,
            secrets=setup.secrets,
        )


async def serve_ingress(
    apps: Sequence[App],
    *,
    config: IngressConfig,
    bus_config: BusConfig,
    transport: Transport,
    ingress: Ingress | None = None,
    stop: asyncio.Event | None = None,
    started: Callable[[HttpServer, IngressServer], None] | None = None,
) -> int:
    """Serve until ``stop``; 0 on a clean stop. ``started`` is called once it listens.

    The memory transport is refused: its log lives in this process, and no other process
    would ever read what the ingress accepted (as ``bus publish`` refuses it).
    """
    if transport.name == "memory":
        raise ConfigError(
            "the ingress publishes into the memory transport's private log, which no other "
            "process reads: set BUS_TRANSPORT=kafka"
        )
    setup = ingress_setup(apps, config, ingress)
    context = ssl_context_for(config)
    registry = setup.registry
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    async with contextlib.AsyncExitStack() as stack:
        publisher = await stack.enter_async_context(Publisher(transport, source="bus://ingress"))
        server = await stack.enter_async_context(ingress_server(setup, config, publisher))

        async def readiness() -> Readiness:
            ok = await transport.probe(timeout_s=PROBE_TIMEOUT_S)
            return Readiness(ok, {"transport": f"{transport.name} ok" if ok else "no answer"})

        http = HttpServer(
            host=bus_config.http_host,
            port=bus_config.http_port,
            readiness=readiness,
            settings=bus_config.http_settings(),
            routes=[server.add_routes],
            ssl_context=context,
        )
        async with http, asyncio.TaskGroup() as tasks:
            log.info("ingress: accepting events on %s/events (%d types)", http.url, len(registry))
            if started is not None:
                started(http, server)
            prober = tasks.create_task(_probe(transport, stop), name="ingress-broker-probe")
            await stop.wait()
            prober.cancel()  # at once; its loop also ends on stop, should a cancel be lost
    return 0


@contextlib.asynccontextmanager
async def _idempotency(config: IngressConfig) -> AsyncIterator[Idempotency | None]:
    store = dedup_store_for(config.dedup_store)
    if store is None:
        yield None
        return
    await store.open()
    try:
        async with Idempotency(
            store,
            window_s=config.dedup_window_s,
            lease_s=config.dedup_lease_s,
            linger_s=config.dedup_linger_ms / 1000,
            # SQLite writes one transaction at a time anyway; PostgreSQL's round trips overlap
            max_writes=POSTGRES_WRITES if isinstance(store, PostgresDedupStore) else 1,
        ) as idempotency:
            yield idempotency
    finally:
        await store.close()


async def _probe(transport: Transport, stop: asyncio.Event) -> None:
    # the ingress only produces: nothing else would notice the broker leave until a
    # publish timed out, so ready (checked per request) comes from this round trip
    while not stop.is_set():
        with contextlib.suppress(BusError):
            await transport.probe(timeout_s=PROBE_TIMEOUT_S)
        await wait_for_event(stop, PROBE_INTERVAL_S)
