"""Bearer tokens: who may publish which events, how fast (pure).

A token file (TOML or JSON) lists grants; each stores the *SHA-256 of a token*, never the
token, so the file is no secret worth stealing. A grant allows event types and sources
(exact names, ``prefix.*`` patterns, or ``*``) and a rate (a token bucket, see
:mod:`bus.ingress.rate`)::

    [[tokens]]
    name = "hr-system"                      # named in logs and metrics, never the token
    sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    types = ["hr.*"]
    sources = ["bus://hr"]
    rate_per_s = 200                        # events per second; absent: no limit
    burst = 400                             # default: one second's worth (rate_per_s)

    [[tokens]]
    name = "alice"
    sha256 = "..."
    role = "operator"                       # the operator console: "viewer" or "operator"
    subject = "alice@example.com"           # named in the console's audit; default: name

The same file serves the operator console (``sagas.web``): a token with a ``role`` logs
into it, one without cannot. A token with a ``role`` may publish only the ``types`` it
lists (default: none), so a console-only token cannot publish; without a ``role`` the
default is ``["*"]``. ``python -m bus.ingress hash TOKEN`` prints the hash.

The JSON form is ``{"tokens": [{...}, ...]}``. A presented token is hashed and compared
with every grant's hash in constant time (``hmac.compare_digest``): how long the check
takes does not tell how close a guess was.

Example::

    table = parse_tokens(text, "toml")
    grant = authenticate(table, "Bearer s3cret")       # RefusedError(401) if unknown
    authorize(grant, events)                            # RefusedError(403) if not allowed
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.ingress.problems import FieldError, Refusal, RefusedError

__all__ = [
    "CONSOLE_ROLES",
    "TokenGrant",
    "TokenTable",
    "authenticate",
    "authorize",
    "hash_token",
    "parse_tokens",
]

_HEX_DIGITS = frozenset("0123456789abcdef")
#: The console's roles: ``viewer`` reads; ``operator`` also retries, cancels, approves, replays.
CONSOLE_ROLES = ("viewer", "operator")
_KEYS = frozenset({"name", "sha256", "types", "sources", "rate_per_s", "burst", "role", "subject"})


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What one token may do."""

    #: A name for logs and metrics (the token itself is never logged).
    name: str
    #: Hex SHA-256 of the token (lower case).
    sha256: str
    #: Event types it may publish: names, ``prefix.*`` patterns or ``*``.
    types: tuple[str, ...] = ("*",)
    #: Sources it may publish as (same patterns).
    sources: tuple[str, ...] = ("*",)
    #: Events per second (refill of its bucket); None: no limit.
    rate_per_s: float | None = None
    #: Events it may send at once (the bucket's size); default ``rate_per_s``.
    burst: float | None = None
    #: Its role in the operator console (``viewer``/``operator``); None: no console access.
    role: str | None = None
    #: Who the console's audit records name; default ``name``.
    subject: str = ""

    def __post_init__(self) -> None:
        if not self.subject:
            object.__setattr__(self, "subject", self.name)

    def allows_type(self, type_name: str) -> bool:
        return _matches(self.types, type_name)

    def allows_source(self, source: str) -> bool:
        return _matches(self.sources, source)


@dataclass(frozen=True, slots=True)
class TokenTable:
    """Every grant of a token file."""

    grants: tuple[TokenGrant, ...] = ()


def hash_token(token: str) -> str:
    """The ``sha256`` a token file stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str | bytes, kind: Literal["toml", "json"]) -> TokenTable:
    """The grants of a token file's text; :class:`ConfigError` listing every problem."""
    try:
        raw = text if isinstance(text, str) else text.decode()
        doc = tomllib.loads(raw) if kind == "toml" else orjson.loads(raw)
    except (tomllib.TOMLDecodeError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"token file is not valid {kind.upper()}: {exc}") from exc
    entries = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError('token file: expected a list "tokens" of tables/objects')
    problems: list[str] = []
    grants = [g for i, e in enumerate(entries) if (g := _grant(i, e, problems)) is not None]
    names = [g.name for g in grants]
    problems.extend(
        f"token name {n!r} is used twice" for n in sorted(set(names)) if names.count(n) > 1
    )
    if problems:
        raise ConfigError("token file is invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    return TokenTable(tuple(grants))


def _grant(index: int, entry: Any, problems: list[str]) -> TokenGrant | None:
    where = f"tokens[{index}]"
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a table/object")
        return None
    name = entry.get("name")
    where = f"tokens[{index}] ({name!r})" if isinstance(name, str) and name else where
    known = len(problems)
    digest, role = entry.get("sha256"), entry.get("role")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: 'name' must be a non-empty string")
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX_DIGITS:
        problems.append(f"{where}: 'sha256' must be 64 lower-case hex digits (the token's hash)")
    if role is not None and role not in CONSOLE_ROLES:
        problems.append(f"{where}: 'role' must be one of {', '.join(CONSOLE_ROLES)}")
    subject = entry.get("subject", name)
    if "subject" in entry and (not isinstance(subject, str) or not subject.strip()):
        problems.append(f"{where}: 'subject' must be a non-empty string")
    # A console token publishes only what it lists: a viewer's token is no ingress key.
    types, sources = entry.get("types", ["*"] if role is None else []), entry.get("sources", ["*"])
    for field, value in (("types", types), ("sources", sources)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append(f"{where}: '{field}' must be a list of names or patterns")
    rate, burst = entry.get("rate_per_s"), entry.get("burst")
    for field, value in (("rate_per_s", rate), ("burst", burst)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            problems.append(f"{where}: '{field}' must be a positive number")
    unknown = set(entry) - _KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if len(problems) > known:
        return None
    return TokenGrant(
        str(name),
        str(digest),
        tuple(types),
        tuple(sources),
        None if rate is None else float(rate),
        None if burst is None else float(burst),
        None if role is None else str(role),
        str(subject),
    )


def authenticate(table: TokenTable, authorization: str | None) -> TokenGrant:
    """The grant of the bearer token in an ``Authorization`` header; 401 otherwise."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RefusedError(Refusal(401, "a bearer token is required (Authorization: Bearer ...)"))
    presented = hash_token(token.strip()).encode()
    found: TokenGrant | None = None
    for grant in table.grants:  # every one compared: the time taken says nothing
        if hmac.compare_digest(presented, grant.sha256.encode()):
            found = grant
    if found is None:
        raise RefusedError(Refusal(401, "the bearer token is not valid"))
    return found


def authorize(
    grant: TokenGrant, events: Sequence[Envelope], indexes: Sequence[int] | None = None
) -> None:
    """403 listing every event whose type or source ``grant`` may not publish (by its
    place in the request: ``indexes``, default 0, 1, ...)."""
    errors: list[FieldError] = []
    places = range(len(events)) if indexes is None else indexes
    for index, event in zip(places, events, strict=True):
        if not grant.allows_type(event.type):
            errors.append(
                FieldError("type", f"token {grant.name!r} may not publish {event.type!r}", index)
            )
        if not grant.allows_source(event.source):
            errors.append(
                FieldError(
                    "source", f"token {grant.name!r} may not publish as {event.source!r}", index
                )
            )
    if errors:
        raise RefusedError(Refusal(403, "the token may not publish these events", tuple(errors)))


def _matches(patterns: tuple[str, ...], value: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == value:
            return True
        if pattern.endswith("*") and value.startswith(pattern[:-1]):
            return True
    return False
