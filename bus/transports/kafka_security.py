"""Why a broker refused the Kafka transport: authentication or TLS, said in one line.

aiokafka reports these faults badly, in three ways: a broker that answers a failed SCRAM
login with an error message instead of a signature (Tansu does) makes its authenticator
raise ``KeyError: 'v'``; a broker that refuses the login with an error code (Apache
Kafka), and a certificate that fails verification, are logged by its bootstrap and
replaced by "Unable to bootstrap", which looks like a broker that is down. Here both
become one :class:`~bus.errors.SecurityError` naming the cause and the settings to fix:
:func:`login_failure` for what ``start()`` raised, and :func:`diagnose` for a failed
bootstrap, which connects once more the same way to see what aiokafka hid.

Example::

    try:
        await producer.start()
    except Exception as exc:
        fault = login_failure(config, "producer", exc)
        if fault is not None:
            raise fault from exc
        raise
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from bus.config import KafkaConfig
from bus.errors import SecurityError

__all__ = ["diagnose", "login_failure"]

#: What aiokafka raises when the broker refuses a SASL login: the broker's error codes,
#: and what its SCRAM authenticator raises parsing a server message that carries an error
#: (``e=...``) where it expects a signature (``v=...``) or a nonce.
_SASL_REFUSALS: tuple[type[BaseException], ...] = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    IllegalSaslStateError,
    UnsupportedSaslMechanismError,
    KeyError,
    ValueError,
)
_TLS_OR_SASL: tuple[type[BaseException], ...] = (*_SASL_REFUSALS, ssl.SSLError)
#: The longest wait of the diagnosing connection, in milliseconds.
_DIAGNOSE_TIMEOUT_MS = 10_000


def login_failure(config: KafkaConfig, what: str, exc: BaseException) -> SecurityError | None:
    """The SecurityError ``exc`` stands for, if it is a refused login or a TLS failure."""
    server = config.bootstrap_servers
    if isinstance(exc, ssl.SSLError):
        return _tls_failure(config, what, server, exc)
    if config.security_protocol.startswith("SASL") and isinstance(exc, _SASL_REFUSALS):
        return SecurityError(
            f"kafka {what}: authentication failed at {server} as user "
            f"{config.sasl_username!r} ({config.sasl_mechanism}): the broker refused the "
            f"login ({type(exc).__name__}); check BUS_KAFKA_SASL_USERNAME, "
            "BUS_KAFKA_SASL_PASSWORD and BUS_KAFKA_SASL_MECHANISM"
        )
    return None


async def diagnose(
    config: KafkaConfig, what: str, client_options: Mapping[str, Any]
) -> SecurityError | None:
    """After aiokafka could not bootstrap: a SecurityError if a broker refused our login
    or TLS failed, None if no broker answered at all (plain unreachable).

    Connects to each bootstrap server once, with the client's own ``client_options``
    (:func:`bus.transports.kafka.client_options`).
    """
    if config.security_protocol == "PLAINTEXT":
        return None
    options = {k: v for k, v in client_options.items() if k != "bootstrap_servers"}
    options["request_timeout_ms"] = min(config.request_timeout_ms, _DIAGNOSE_TIMEOUT_MS)
    for server in config.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await create_conn(host, int(port), **options)
        except _TLS_OR_SASL as exc:
            return login_failure(config, what, exc)
        except (OSError, KafkaError, TimeoutError):
            continue  # this one is unreachable: not a security fault
        conn.close()
    return None


def _tls_failure(config: KafkaConfig, what: str, server: str, exc: ssl.SSLError) -> SecurityError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SecurityError(
            f"kafka {what}: TLS verification failed for {server}: "
            f"{exc.verify_message or exc.reason}; set BUS_KAFKA_SSL_CAFILE to the CA that "
            f"signed the broker's certificate (now: {config.ssl_cafile or 'system CAs'})"
        )
    return SecurityError(
        f"kafka {what}: TLS handshake with {server} failed: {exc.reason or exc}; check "
        "BUS_KAFKA_SECURITY_PROTOCOL (does the broker speak TLS?) and the client certificate "
        "(BUS_KAFKA_SSL_CERTFILE, BUS_KAFKA_SSL_KEYFILE)"
    )
