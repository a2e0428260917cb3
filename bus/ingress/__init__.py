"""Publishing from upstream systems over HTTP: CloudEvents and signed webhooks (docs/ingress.md).

``binding`` (the HTTP protocol binding), ``admission`` (registry validation), ``tokens``
and ``rate`` (who may publish what, how fast), ``signatures`` and ``webhooks`` (signed
webhooks), ``openapi`` and ``problems`` are pure; ``access`` (the token file, rate
buckets), ``idempotency`` (grouped dedup writes), ``server`` (the aiohttp endpoints) and
``service`` (the ``bus ingress`` process) are the shell.
"""

from bus.ingress.access import Access, TokenFile
from bus.ingress.header_values import decode_value, encode_value
from bus.ingress.idempotency import Idempotency
from bus.ingress.problems import FieldError, Refusal
from bus.ingress.server import IngressServer
from bus.ingress.service import serve_ingress
from bus.ingress.signatures import sign_sha256, sign_timestamped
from bus.ingress.tokens import TokenGrant, hash_token, parse_tokens
from bus.ingress.webhooks import Ingress, Webhook

__all__ = [
    "Access",
    "FieldError",
    "Idempotency",
    "Ingress",
    "IngressServer",
    "Refusal",
    "TokenFile",
    "TokenGrant",
    "Webhook",
    "decode_value",
    "encode_value",
    "hash_token",
    "parse_tokens",
    "serve_ingress",
    "sign_sha256",
    "sign_timestamped",
]
