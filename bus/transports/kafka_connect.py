"""Connecting aiokafka clients: their keyword arguments and a start that waits for the broker.

Producer, consumer and admin client share :func:`client_options` (address, security,
timeouts). :func:`start_with_retries` starts one, retrying an unreachable broker with
exponential backoff (tenacity) for ``connect_timeout_s`` and logging one clear line per
attempt; a refused login or a failed TLS handshake is a
:class:`~bus.errors.SecurityError` at once (:mod:`bus.transports.kafka_security`).

Example::

    producer = AIOKafkaProducer(**producer_options(config))
    await start_with_retries(producer, config, "producer")
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from bus.config import KafkaConfig
from bus.errors import TransportError
from bus.transports.kafka_security import diagnose, login_failure

__all__ = ["client_options", "producer_options", "start_with_retries"]

log = logging.getLogger("bus.kafka")


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka keyword arguments shared by producer, consumer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": config.request_timeout_ms,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=config.ssl_cafile)
        if config.ssl_certfile and config.ssl_keyfile:
            context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile)
        options["ssl_context"] = context
    if config.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        options["sasl_plain_password"] = (
            config.sasl_password.reveal() if config.sasl_password else None
        )
    return options


def producer_options(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka producer keyword arguments for ``config``."""
    acks: int | str = "all" if config.acks == "all" else int(config.acks)
    options = {
        **client_options(config),
        "acks": acks,
        "linger_ms": config.linger_ms,
        "max_batch_size": config.max_batch_bytes,
        "max_request_size": config.max_request_bytes,
        "compression_type": None if config.compression == "none" else config.compression,
        "enable_idempotence": config.enable_idempotence,
    }
    # no transactional_id: KafkaConfig.validated refuses it (bus begins no transaction)
    return options


def _connect_retrying(config: KafkaConfig, what: str) -> AsyncRetrying:
    def announce(state: Any) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "kafka %s: broker %s unreachable (%s); retrying (attempt %d, up to %.0fs)",
            what,
            config.bootstrap_servers,
            type(error).__name__,
            state.attempt_number,
            config.connect_timeout_s,
        )

    return AsyncRetrying(
        stop=stop_after_delay(config.connect_timeout_s),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type((KafkaConnectionError, KafkaTimeoutError, OSError)),
        before_sleep=announce,
        reraise=True,
    )


async def start_with_retries(client: Any, config: KafkaConfig, what: str) -> None:
    """``client.start()``, retried while the broker is unreachable; a client that does not
    start is stopped (aiokafka warns about an unclosed one at exit)."""
    try:
        await _start_retrying(client, config, what)
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise


async def _start_retrying(client: Any, config: KafkaConfig, what: str) -> None:
    try:
        async for attempt in _connect_retrying(config, what):
            with attempt:
                await _start_once(client, config, what)
    except (KafkaConnectionError, KafkaTimeoutError, OSError) as exc:
        raise TransportError(
            f"kafka {what}: cannot reach {config.bootstrap_servers} after "
            f"{config.connect_timeout_s:.0f}s ({type(exc).__name__}); is the broker up? "
            "(BUS_KAFKA_BOOTSTRAP_SERVERS)"
        ) from exc
    except KafkaError as exc:
        raise TransportError(f"kafka {what}: start failed: {exc!r}") from exc


async def _start_once(client: Any, config: KafkaConfig, what: str) -> None:
    """``client.start()``; a refused login or a failed TLS handshake as a SecurityError,
    which is not retried (:mod:`bus.transports.kafka_security`)."""
    try:
        await client.start()
    except KafkaConnectionError as exc:
        fault = await diagnose(config, what, client_options(config))
        if fault is not None:
            raise fault from exc
        raise
    except Exception as exc:
        fault = login_failure(config, what, exc)
        if fault is not None:
            raise fault from exc
        raise
