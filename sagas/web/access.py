"""Who may use the console: tokens with roles, sessions, CSRF tokens (pure but for the file).

The console reads the HTTP ingress's token file (see docs/ingress.md, "Token file"): a
token with a ``role`` logs in, as its ``subject`` (default: its ``name``); a token without
one is for publishing only and cannot log in. The file stores SHA-256 hashes, never tokens::

    [[tokens]]
    name = "alice"
    sha256 = "..."              # python -m bus.ingress hash TOKEN
    role = "operator"           # viewer | operator
    subject = "alice@example.com"

``viewer`` reads; ``operator`` reads and acts (retry, cancel, approve, replay).
:func:`load_tokens` keeps the file current as the ingress does (re-read when it changed,
looked at no more than once a second; a bad edit keeps the last good tokens).

A login (the token typed in a form) opens a :class:`Session`: a random id in a cookie
(``HttpOnly; SameSite=Strict``) and a CSRF token every state-changing form carries back.

Example::

    tokens = load_tokens("tokens.toml")
    principal = find_token(tokens, "s3cret")            # None: unknown or not a console token
    session = Sessions().open(principal, session_id="...", csrf="...")
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bus import ConfigError, TokenFile, TokenGrant, hash_token
from bus import parse_tokens as parse_token_file

__all__ = [
    "ROLES",
    "ConsoleTokens",
    "Principal",
    "Role",
    "Session",
    "Sessions",
    "find_token",
    "load_tokens",
    "parse_tokens",
]

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token names: the subject audit records carry, and what the role allows."""

    subject: str
    role: Role

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: its cookie value, who it is, the CSRF token of its forms."""

    id: str
    principal: Principal
    csrf: str


class ConsoleTokens:
    """The console's tokens, by SHA-256: fixed, or a :class:`bus.TokenFile` kept current."""

    def __init__(self, source: TokenFile | Iterable[TokenGrant]) -> None:
        self._file: TokenFile | None
        self._grants: tuple[TokenGrant, ...]
        if isinstance(source, TokenFile):
            self._file, self._grants = source, ()
        else:
            self._file, self._grants = None, tuple(source)
        self._principals = _principals(self._grants)

    def current(self) -> Mapping[str, Principal]:
        """SHA-256 of a token -> who it is (re-read first if the file changed)."""
        if self._file is not None:
            grants = self._file.current().grants
            if grants is not self._grants:
                self._grants, self._principals = grants, _principals(grants)
        return self._principals


def _principals(grants: Iterable[TokenGrant]) -> dict[str, Principal]:
    return {g.sha256: Principal(g.subject, g.role) for g in grants if g.role in ROLES}


def parse_tokens(text: str, kind: Literal["toml", "json"] = "toml") -> ConsoleTokens:
    """The console tokens of a token file's text (:class:`ConfigError` if it is invalid)."""
    return ConsoleTokens(parse_token_file(text, kind).grants)


def load_tokens(path: str | Path) -> ConsoleTokens:
    """The tokens of the file at ``path`` (``.toml``: TOML, else JSON), kept current.

    A file in which no token has a ``role`` is a :class:`ConfigError`: nobody could log in.
    """
    tokens = ConsoleTokens(TokenFile(Path(path)))
    if not tokens.current():
        raise ConfigError(
            f"token file {path}: no token has a 'role' (viewer or operator), "
            "so nobody can log into the console"
        )
    return tokens


def find_token(tokens: ConsoleTokens, typed: str) -> Principal | None:
    """The principal of ``typed``: its hash compared in constant time with every one."""
    if not typed.strip():
        return None
    presented = hash_token(typed.strip()).encode()
    found: Principal | None = None
    for digest, principal in tokens.current().items():
        if hmac.compare_digest(digest.encode(), presented):
            found = principal
    return found


class Sessions:
    """Open sessions by id (in memory: a restart logs everyone out, by design)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._open: dict[str, Session] = {}

    def open(self, principal: Principal, *, session_id: str, csrf: str) -> Session:
        """A new session (the oldest is closed past ``limit``)."""
        session = Session(session_id, principal, csrf)
        self._open[session_id] = session
        while len(self._open) > self.limit:
            del self._open[next(iter(self._open))]
        return session

    def get(self, session_id: str | None) -> Session | None:
        return None if session_id is None else self._open.get(session_id)

    def close(self, session_id: str) -> None:
        self._open.pop(session_id, None)
