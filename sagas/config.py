"""The saga settings from the environment: the only module of ``sagas`` that reads it.

They keep the ``BUS_*`` names users already set (one prefix for the whole stack); bus's
own settings are :class:`bus.BusConfig`. Values are validated once, with one error that
names every bad variable and what it accepts (never the value: a store URL may hold a
password).

| variable | default | meaning |
|---|---|---|
| ``BUS_SAGA_STORE`` | ``sqlite:sagas.db`` | saga store: ``sqlite:PATH``, ``postgresql://...`` or ``memory`` |
| ``BUS_SAGA_STORE_PASSWORD`` | - | password of a ``postgresql://`` store, so the URL need not hold it |
| ``BUS_SAGA_STORE_PASSWORD_FILE`` | - | or a file holding it (its first line), e.g. a mounted secret |
| ``BUS_SAGA_RETENTION_S`` | ``0`` | seconds ``bus sagas run`` keeps ended sagas (``0``: forever) |
| ``BUS_SAGA_EARLY_RETENTION_S`` | ``604800`` | seconds it keeps an event for a saga that never started (``0``: forever) |
| ``BUS_SAGA_STORE_LOCK_TIMEOUT_S`` | ``5`` | a ``postgresql://`` store's ``lock_timeout`` (``0``: none) |
| ``BUS_SAGA_STORE_STATEMENT_TIMEOUT_S`` | ``30`` | its ``statement_timeout`` (``0``: none) |
| ``BUS_SAGA_STORE_IDLE_IN_TRANSACTION_TIMEOUT_S`` | ``60`` | its ``idle_in_transaction_session_timeout`` (``0``: none) |
| ``BUS_FAULT_POINT`` | - | crash tests only: end the process at this point of the saga outbox relay |

Example::

    config = SagaConfig.from_env()
    store = store_from_url(args.store or config.store)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from bus import ConfigError, PostgresTimeouts, Secret
from sagas.outbox import FAULT_POINTS

__all__ = ["SagaConfig"]

#: The PostgreSQL store's timeouts: field -> variable.
_TIMEOUT_VARIABLES = {
    "store_lock_timeout_s": "BUS_SAGA_STORE_LOCK_TIMEOUT_S",
    "store_statement_timeout_s": "BUS_SAGA_STORE_STATEMENT_TIMEOUT_S",
    "store_idle_in_transaction_timeout_s": "BUS_SAGA_STORE_IDLE_IN_TRANSACTION_TIMEOUT_S",
}
_DEFAULT_TIMEOUTS = PostgresTimeouts()


@dataclass(frozen=True, slots=True, kw_only=True)
class SagaConfig:
    """The settings of ``bus sagas ...`` (see the module docstring for the variables).

    Example::

        SagaConfig.from_env({"BUS_SAGA_RETENTION_S": "86400"}).retention_s   # 86400.0
    """

    #: Where ``bus sagas ...`` keeps saga state (``sqlite:PATH``, ``postgresql://...``,
    #: ``memory``); may hold a password, so it is never logged.
    store: str = "sqlite:sagas.db"
    #: Password of a ``postgresql://`` store, kept out of its URL: a flag shows in ``ps``.
    #: Unset: the URL's own password, else libpq's ``PGPASSWORD`` / ``PGPASSFILE``
    #: (asyncpg reads those itself).
    store_password: Secret | None = None
    #: Seconds ``bus sagas run`` keeps ended sagas (completed, compensated, failed,
    #: cancelled) after their last update, purging older ones hourly; 0 (the default)
    #: keeps them. Keep it above the trigger topics' retention: a trigger delivered again
    #: after its saga was purged starts the saga anew.
    retention_s: float = 0.0
    #: Seconds ``bus sagas run`` keeps an event that came for a saga not started yet
    #: (:mod:`sagas.early`: applied when it starts), purged after; 0 keeps them. Keep it
    #: below ``retention_s``: an old event must not meet a new saga of a purged one's id.
    early_retention_s: float = 7 * 24 * 3600.0
    #: Seconds a ``postgresql://`` store waits for a saga's row lock before giving up and
    #: trying again later (only that saga's partition waits meanwhile); 0: forever. Bounds
    #: how long a replica stopped inside its transaction holds the others back.
    store_lock_timeout_s: float = _DEFAULT_TIMEOUTS.lock_timeout_s
    #: Seconds one statement of a ``postgresql://`` store may run; 0: forever.
    store_statement_timeout_s: float = _DEFAULT_TIMEOUTS.statement_timeout_s
    #: Seconds a ``postgresql://`` store's session may idle inside a transaction before the
    #: server ends it and releases its locks (a stopped replica's); 0: forever.
    store_idle_in_transaction_timeout_s: float = _DEFAULT_TIMEOUTS.idle_in_transaction_timeout_s
    #: Crash tests only: the coordinator ends the process (``os._exit``) at this point
    #: (one of :data:`sagas.outbox.FAULT_POINTS`); unset in production.
    fault_point: str | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        store: str | None = None,
        retention_s: float | None = None,
        fault_point: str | None = None,
    ) -> SagaConfig:
        """Settings from ``env`` (default ``os.environ``); an argument that is not None wins
        over its variable (the CLI's flags)."""
        env = os.environ if env is None else env
        defaults = cls()
        if retention_s is None:
            retention_s = _seconds(env, "BUS_SAGA_RETENTION_S", defaults.retention_s)
        return cls(
            store=store or env.get("BUS_SAGA_STORE", defaults.store).strip(),
            store_password=_store_password(env),
            retention_s=retention_s,
            early_retention_s=_seconds(
                env, "BUS_SAGA_EARLY_RETENTION_S", defaults.early_retention_s
            ),
            **_timeouts(env),
            # empty is unset: crash tests clear it with BUS_FAULT_POINT=
            fault_point=fault_point or env.get("BUS_FAULT_POINT", "").strip() or None,
        ).validated()

    def validated(self) -> SagaConfig:
        """This config, or :class:`bus.ConfigError` listing every problem."""
        problems = []
        if not self.store.strip():
            problems.append("store is empty (BUS_SAGA_STORE: sqlite:PATH, postgresql://...)")
        if self.retention_s < 0:
            problems.append("retention_s must be 0 (keep ended sagas) or more seconds")
        if self.early_retention_s < 0:
            problems.append("early_retention_s must be 0 (keep early events) or more seconds")
        problems += [f"store {p}" for p in self.store_timeouts().problems()]
        if self.fault_point is not None and self.fault_point not in FAULT_POINTS:
            problems.append(
                f"fault point {self.fault_point!r} is unknown (BUS_FAULT_POINT); use one of "
                f"{', '.join(FAULT_POINTS)}"
            )
        if problems:
            raise ConfigError("bad saga settings: " + "; ".join(problems))
        return self

    def store_timeouts(self) -> PostgresTimeouts:
        """The timeouts of a ``postgresql://`` store (``store_from_url(..., timeouts=)``)."""
        return PostgresTimeouts(
            lock_timeout_s=self.store_lock_timeout_s,
            statement_timeout_s=self.store_statement_timeout_s,
            idle_in_transaction_timeout_s=self.store_idle_in_transaction_timeout_s,
        )


def _timeouts(env: Mapping[str, str]) -> dict[str, float]:
    """The store timeouts set in ``env``, by field; every unparsable one named at once."""
    values: dict[str, float] = {}
    bad: list[str] = []
    for field, variable in _TIMEOUT_VARIABLES.items():
        text = env.get(variable)
        if text is None:
            continue
        try:
            values[field] = float(text)
        except ValueError:
            bad.append(f"{variable}: expected a number of seconds")
    if bad:
        raise ConfigError("bad environment: " + "; ".join(bad))
    return values


def _store_password(env: Mapping[str, str]) -> Secret | None:
    """``BUS_SAGA_STORE_PASSWORD``, or the first line of ``BUS_SAGA_STORE_PASSWORD_FILE``."""
    password = env.get("BUS_SAGA_STORE_PASSWORD")
    path = env.get("BUS_SAGA_STORE_PASSWORD_FILE", "").strip()
    if password is not None and path:
        raise ConfigError(
            "bad environment: set BUS_SAGA_STORE_PASSWORD or BUS_SAGA_STORE_PASSWORD_FILE, not both"
        )
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                password = file.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"bad environment: BUS_SAGA_STORE_PASSWORD_FILE: cannot read {path!r}: {why}"
            ) from None
    return None if password is None else Secret(password)


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    text = env.get(variable)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"bad environment: {variable}: expected a number") from None
