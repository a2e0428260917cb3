"""Who may publish, read from a token file that can change while the ingress runs.

:class:`TokenFile` re-reads its file when the file's modification time or size changed
(looked at no more than once per ``check_interval_s``), so tokens rotate without a
restart: add the new token, move the callers, remove the old one. A file that becomes
unreadable or invalid keeps the last good grants (and says so in the log) rather than
locking every caller out. :class:`Access` adds the rate limits: one token bucket per grant
name, kept across reloads.

Example::

    access = Access(TokenFile(Path("tokens.toml")))
    grant = access.check("Bearer s3cret", events)     # RefusedError: 401, 403 or 429
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.ingress.problems import Refusal, RefusedError
from bus.ingress.rate import Bucket, take
from bus.ingress.tokens import TokenGrant, TokenTable, authenticate, authorize, parse_tokens

__all__ = ["Access", "TokenFile"]

log = logging.getLogger("bus.ingress")


class TokenFile:
    """The grants of a TOML (``.toml``) or JSON (any other suffix) token file, kept current."""

    def __init__(
        self,
        path: Path,
        *,
        check_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self._monotonic = monotonic
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        #: How many times the file was (re-)read successfully.
        self.loads = 0
        self.table = self._read()  # a bad file at start is a ConfigError

    def current(self) -> TokenTable:
        """The grants, re-read first if the file changed since the last look."""
        now = self._monotonic()
        if now - self._checked_at >= self.check_interval_s:
            self._checked_at = now
            try:
                if self._file_stamp() != self._stamp:
                    self.table = self._read()
                    log.info(
                        "ingress: token file %s reloaded (%d token(s))",
                        self.path,
                        len(self.table.grants),
                    )
            except ConfigError as exc:
                log.error(
                    "ingress: token file %s not reloaded, keeping the last good one: %s",
                    self.path,
                    exc,
                )
        return self.table

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot read token file {self.path}: {exc.strerror}") from exc
        return st.st_mtime_ns, st.st_size

    def _read(self) -> TokenTable:
        stamp = self._file_stamp()
        try:
            text = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {self.path}: {exc.strerror}") from exc
        table = parse_tokens(text, "toml" if self.path.suffix.lower() == ".toml" else "json")
        self._stamp = stamp
        self.loads += 1
        return table


class Access:
    """Authentication (401), authorization (403) and rate limits (429) of a request.

    ``tokens=None`` lets every caller in without limits: only for a trusted network, and
    only when asked for explicitly (``BUS_INGRESS_ALLOW_ANONYMOUS``).
    """

    def __init__(
        self, tokens: TokenFile | None, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.tokens = tokens
        self._monotonic = monotonic
        self._buckets: dict[str, Bucket] = {}

    def check(self, authorization: str | None, events: Sequence[Envelope]) -> TokenGrant | None:
        """The caller's grant once it may publish ``events`` now; :class:`RefusedError`."""
        if self.tokens is None:
            return None
        grant = authenticate(self.tokens.current(), authorization)
        authorize(grant, events)
        self.spend(grant, len(events))
        return grant

    def authenticate(self, authorization: str | None) -> TokenGrant | None:
        """401 before the body is read: an unknown caller costs no parsing."""
        if self.tokens is None:
            return None
        return authenticate(self.tokens.current(), authorization)

    def spend(self, grant: TokenGrant, cost: int) -> None:
        """Take ``cost`` events from the grant's bucket; 429 with Retry-After if empty."""
        if grant.rate_per_s is None:
            return
        burst = grant.burst if grant.burst is not None else grant.rate_per_s
        bucket, wait_s = take(
            self._buckets.get(grant.name),
            rate_per_s=grant.rate_per_s,
            burst=burst,
            cost=cost,
            now_s=self._monotonic(),
        )
        self._buckets[grant.name] = bucket
        if wait_s > 0:
            raise RefusedError(
                Refusal(
                    429,
                    f"token {grant.name!r} is over its rate of {grant.rate_per_s:g} events/s",
                    retry_after_s=wait_s,
                )
            )
