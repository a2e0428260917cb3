"""Who may use the console: tokens with roles, sessions, CSRF tokens (pure but for the file).

A token file has one token a line, ``ROLE SUBJECT TOKEN`` (``#`` starts a comment)::

    # role      subject   token
    operator    alice     6f1c...
    viewer      bob       90ab...

``viewer`` reads; ``operator`` reads and acts (retry, cancel, approve, replay). The file
is read by :func:`load_tokens` alone, so the console can switch to the HTTP ingress's
token file format by changing that one function.

A login (the token typed in a form) opens a :class:`Session`: a random id in a cookie
(``HttpOnly; SameSite=Strict``) and a CSRF token every state-changing form carries back.

Example::

    tokens = parse_tokens("operator alice s3cret\\n")
    sessions = Sessions()
    session = sessions.open(tokens["s3cret"], session_id="...", csrf="...")
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bus import ConfigError

__all__ = [
    "ROLES",
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


def parse_tokens(text: str, *, origin: str = "token file") -> dict[str, Principal]:
    """Token -> principal from ``ROLE SUBJECT TOKEN`` lines; every bad line at once."""
    tokens: dict[str, Principal] = {}
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            problems.append(f"line {n}: expected 'ROLE SUBJECT TOKEN'")
            continue
        role, subject, token = parts
        if role not in ROLES:
            problems.append(f"line {n}: role {role!r} is not one of {', '.join(ROLES)}")
        elif len(token) < 8:
            problems.append(f"line {n}: the token is shorter than 8 characters")
        elif token in tokens:
            problems.append(f"line {n}: the token is already given to {tokens[token].subject}")
        else:
            tokens[token] = Principal(subject, role)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return tokens


def load_tokens(path: str | Path) -> dict[str, Principal]:
    """The tokens of the file at ``path`` (the one place the format is known)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the console's token file {path}: {exc}") from exc
    return parse_tokens(text, origin=str(path))


def find_token(tokens: Mapping[str, Principal], typed: str) -> Principal | None:
    """The principal of ``typed``, compared in constant time with every known token."""
    found: Principal | None = None
    for token, principal in tokens.items():
        if hmac.compare_digest(token.encode(), typed.encode()):
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
