"""Signed webhooks: an upstream system's own JSON, mapped to typed events by a function.

Declare them on an :class:`Ingress` (as handlers on an App); the ingress server serves each
at its path, checks the signature (:mod:`bus.ingress.signatures`) with the secret read from
the environment variable ``secret_env`` at start, parses the body as JSON, calls the
function and publishes what it returns, like any CloudEvent posted to ``/events``.

Example::

    ingress = Ingress()

    @ingress.webhook("/hooks/hr", secret_env="HR_WEBHOOK_SECRET", signature="sha256",
                     id_header="X-Delivery-Id")
    def hr_hook(payload: dict[str, Any]) -> EmployeeHired:
        return EmployeeHired(employee_id=payload["person"]["id"], name=payload["person"]["name"])

A mapping that raises ``ValueError``/``LookupError``/``TypeError`` (a pydantic validation
error included) or returns no message answers 422; a body that is not JSON 400.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bus.envelope import Envelope, event_envelope
from bus.errors import ConfigError, RecordError
from bus.ingress.admission import Admitted, payload_errors
from bus.ingress.problems import FieldError, Refusal, RefusedError
from bus.ingress.signatures import SignatureScheme
from bus.message import Message

__all__ = ["RESERVED_PATHS", "Ingress", "Webhook", "WebhookMapper", "mapped_events"]

WebhookMapper = Callable[[Any], Message | Sequence[Message] | None]
#: Paths the ingress serves itself.
RESERVED_PATHS = frozenset(("/events", "/openapi.json", "/metrics", "/healthz", "/readyz"))
_DEFAULT_HEADERS: dict[str, str] = {
    "sha256": "X-Hub-Signature-256",
    "timestamped": "Webhook-Signature",
}


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook endpoint."""

    #: URL path it is served at, e.g. ``/hooks/hr``.
    path: str
    #: The system's JSON -> the message(s) to publish.
    mapper: WebhookMapper
    #: Environment variable holding the shared HMAC secret (read at start).
    secret_env: str
    #: ``"sha256"`` (``sha256=<hex>`` of the body) or ``"timestamped"`` (``t=..,v1=..``).
    signature: SignatureScheme
    #: Header carrying the signature.
    signature_header: str
    #: CloudEvents ``source`` of what it publishes.
    source: str
    #: Header carrying the system's delivery id: the events' ids derive from it, so a
    #: re-delivery is recognised as a duplicate. None: every request gets new ids.
    id_header: str | None = None
    #: ``"timestamped"`` only: seconds a signature stays valid around its timestamp.
    tolerance_s: float = 300.0


class Ingress:
    """The webhooks of one ingress process (the CloudEvents endpoint needs no declaring).

    Example::

        ingress = Ingress()

        @ingress.webhook("/hooks/crm", secret_env="CRM_SECRET", signature="timestamped")
        def crm(payload: dict[str, Any]) -> list[Message]: ...
    """

    def __init__(self) -> None:
        self.webhooks: dict[str, Webhook] = {}

    def webhook(
        self,
        path: str,
        *,
        secret_env: str,
        signature: SignatureScheme = "sha256",
        signature_header: str | None = None,
        source: str | None = None,
        id_header: str | None = None,
        tolerance_s: float = 300.0,
    ) -> Callable[[WebhookMapper], WebhookMapper]:
        """Serve ``path``; the decorated function maps the system's JSON to messages."""
        problems = []
        if not path.startswith("/"):
            problems.append(f"path {path!r} must start with '/'")
        if path in RESERVED_PATHS or path in self.webhooks:
            problems.append(f"path {path!r} is already served")
        if signature not in _DEFAULT_HEADERS:
            problems.append(f"signature must be 'sha256' or 'timestamped', not {signature!r}")
        if not secret_env:
            problems.append("secret_env must name an environment variable")
        if tolerance_s <= 0:
            problems.append("tolerance_s must be positive")
        if problems:
            raise ConfigError(f"webhook {path!r}: " + "; ".join(problems))

        def register(mapper: WebhookMapper) -> WebhookMapper:
            self.webhooks[path] = Webhook(
                path,
                mapper,
                secret_env,
                signature,
                signature_header or _DEFAULT_HEADERS[signature],
                source or f"bus://webhook{path}",
                id_header,
                tolerance_s,
            )
            return mapper

        return register


def mapped_events(
    webhook: Webhook, payload: Any, id_for: Callable[[int], str], time: datetime
) -> list[Admitted]:
    """What ``webhook``'s function makes of ``payload``: events whose ids are
    ``id_for(0)``, ``id_for(1)``, ... :class:`RefusedError` (422) when it fails."""
    try:
        result = webhook.mapper(payload)
    except ValidationError as exc:
        raise _unprocessable(payload_errors(exc, None)) from exc
    except (ValueError, LookupError, TypeError, RecordError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        raise _unprocessable([FieldError("(body)", message)]) from exc
    messages = [result] if isinstance(result, Message) else list(result or ())
    if not messages:
        raise _unprocessable([FieldError("(body)", "the mapping returned no message")])
    wrong = [type(m).__name__ for m in messages if not isinstance(m, Message)]
    if wrong:
        raise ConfigError(
            f"webhook {webhook.path!r}: its function returned {', '.join(wrong)}, not messages"
        )
    return [
        Admitted(m, _envelope(m, webhook.source, id_for(n), time)) for n, m in enumerate(messages)
    ]


def _envelope(message: Message, source: str, id_: str, time: datetime) -> Envelope:
    return event_envelope(
        id_, source, message.bus_type, message.to_json(), time,
        message.bus_key_value(), id_, None, None,
    )  # fmt: skip


def _unprocessable(errors: list[FieldError]) -> RefusedError:
    return RefusedError(Refusal(422, "the webhook's payload could not be mapped", tuple(errors)))
