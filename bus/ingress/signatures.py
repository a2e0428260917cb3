"""Signed webhooks: HMAC-SHA256 signatures of a request's raw body (pure; time is an input).

Two schemes, as upstream systems send them:

- ``"sha256"`` (GitHub's ``X-Hub-Signature-256``): ``sha256=<hex HMAC of the body>``;
- ``"timestamped"`` (Stripe's ``Stripe-Signature``): ``t=<unix seconds>,v1=<hex>``, the
  HMAC of ``"<t>.<body>"``, refused outside ``tolerance_s`` of now, so a captured request
  cannot be replayed later. Several ``v1`` values (a secret being rotated) may be given.

Comparisons use ``hmac.compare_digest``. A check returns None when the signature holds,
else what is wrong (the shell answers 401 with it).

Example::

    header = sign_sha256(b"secret", body)              # "sha256=..."
    assert check_sha256(b"secret", body, header) is None
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

__all__ = [
    "SignatureScheme",
    "check_sha256",
    "check_timestamped",
    "sign_sha256",
    "sign_timestamped",
]

SignatureScheme = Literal["sha256", "timestamped"]


def _mac(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def sign_sha256(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of ``body``."""
    return "sha256=" + _mac(secret, body)


def check_sha256(secret: bytes, body: bytes, header: str | None) -> str | None:
    """None when ``header`` is ``sha256=<hex>`` of ``body`` under ``secret``."""
    if not header:
        return "the signature header is missing"
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given:
        return "the signature is not of the form sha256=<hex>"
    if not hmac.compare_digest(given.lower().encode(), _mac(secret, body).encode()):
        return "the signature does not match the body"
    return None


def sign_timestamped(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``t=...,v1=...`` value of ``body`` signed at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1=" + _mac(secret, str(timestamp).encode() + b"." + body)


def check_timestamped(
    secret: bytes, body: bytes, header: str | None, *, now_s: float, tolerance_s: float
) -> str | None:
    """None when one ``v1`` of ``header`` signs ``"<t>.<body>"`` and ``t`` is within
    ``tolerance_s`` of ``now_s``."""
    if not header:
        return "the signature header is missing"
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not timestamp.isdigit() or not signatures:
        return "the signature is not of the form t=<unix seconds>,v1=<hex>"
    if abs(now_s - int(timestamp)) > tolerance_s:
        return f"the signature's timestamp is more than {tolerance_s:g}s away from now"
    expected = _mac(secret, timestamp.encode() + b"." + body).encode()
    matched = False
    for given in signatures:  # every one compared
        matched |= hmac.compare_digest(given.encode(), expected)
    return None if matched else "the signature does not match the body"
