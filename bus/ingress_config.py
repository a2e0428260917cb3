"""Settings of the HTTP ingress (``bus ingress``): :class:`IngressConfig`, ``BUS_INGRESS_*``.

Kept apart from :mod:`bus.ingress` so reading them imports no HTTP server. Re-exported by
:mod:`bus.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bus.environment import settings_from_env
from bus.errors import ConfigError

__all__ = ["IngressConfig"]


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """Settings of the HTTP ingress (``bus ingress``); each is ``BUS_INGRESS_<NAME>``.

    It listens where the process's HTTP server does (``BUS_HTTP_HOST``/``BUS_HTTP_PORT``,
    with the same connection limits), beside ``/metrics`` and the probes.

    Example::

        IngressConfig.from_env(tokens_file="/run/secrets/tokens.toml")
    """

    #: The token file (TOML or JSON, see :mod:`bus.ingress.tokens`); re-read on change.
    tokens_file: str | None = None
    #: Accept requests without a token (no auth, no rate limit): trusted networks only.
    allow_anonymous: bool = False
    #: Seconds between looks at the token file's modification time.
    tokens_check_interval_s: float = 1.0
    #: Serve HTTPS with this certificate chain (PEM) and key; both or neither.
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    #: Largest request body, bytes; larger is answered 413.
    max_body_bytes: int = 1_048_576
    #: Most events in one batch request; more is answered 413.
    max_batch_events: int = 1_000
    #: Events being published at once; beyond it requests are answered 503 (the producer
    #: queue is full) with ``Retry-After``.
    max_pending_events: int = 20_000
    #: Seconds a 503 asks the caller to wait (``Retry-After``).
    retry_after_s: float = 1.0
    #: Seconds a request's body may take to arrive once its headers have (a client that
    #: trickles it holds a connection and a pending slot): beyond it, 408 and closed.
    body_timeout_s: float = 30.0
    #: Dedup store of accepted events: ``""`` (none), ``memory``, ``sqlite:PATH`` or a
    #: ``postgresql://`` DSN (shared by replicas).
    dedup_store: str = ""
    #: Seconds a re-post of an accepted event (same source and id) is a duplicate.
    dedup_window_s: float = 24 * 3600.0
    #: Seconds an event recorded but not yet acknowledged is taken to be in flight at
    #: another replica (a re-post meanwhile is answered 503); after it, a re-post
    #: publishes the recorded event again. Keep it above ``BUS_KAFKA_PUBLISH_TIMEOUT_S``.
    dedup_lease_s: float = 35.0
    #: Milliseconds a dedup write waits for more requests to share its transaction, while
    #: they arrive closer together than this. 0 commits each claim at once: a lower median
    #: while the process has CPU to spare, but about 10 points more of a core at 1,000
    #: requests/s, so a busy process queues sooner (docs/benchmarks.md, "HTTP ingress").
    dedup_linger_ms: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> IngressConfig:
        """Settings from ``env`` (default ``os.environ``), then ``overrides`` that are not None."""
        return cls(**settings_from_env(cls, "BUS_INGRESS_", env, overrides)).validated()

    def validated(self) -> IngressConfig:
        problems = []
        if self.tokens_file is None and not self.allow_anonymous:
            problems.append(
                "set BUS_INGRESS_TOKENS_FILE (who may publish), or BUS_INGRESS_ALLOW_ANONYMOUS=true "
                "for a trusted network"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            problems.append("TLS needs both BUS_INGRESS_TLS_CERTFILE and BUS_INGRESS_TLS_KEYFILE")
        for name in (
            "max_body_bytes",
            "max_batch_events",
            "max_pending_events",
            "retry_after_s",
            "body_timeout_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive (BUS_INGRESS_{name.upper()})")
        if self.dedup_window_s <= 0 or self.dedup_lease_s <= 0:
            problems.append("dedup_window_s and dedup_lease_s must be positive")
        if self.dedup_linger_ms < 0:
            problems.append("dedup_linger_ms must be 0 or more (BUS_INGRESS_DEDUP_LINGER_MS)")
        if self.dedup_store and not (
            self.dedup_store == "memory"
            or self.dedup_store.startswith(("sqlite:", "postgresql://", "postgres://"))
        ):
            problems.append(
                "dedup_store must be '', 'memory', 'sqlite:PATH' or 'postgresql://...' "
                "(BUS_INGRESS_DEDUP_STORE)"
            )
        if problems:
            raise ConfigError("bad ingress settings: " + "; ".join(problems))
        return self
