"""A saga store from a URL: ``memory``, ``sqlite:PATH`` or ``postgresql://...``."""

from __future__ import annotations

from bus import ConfigError, PostgresTimeouts, Secret
from sagas.stores.base import SagaStore
from sagas.stores.memory import MemorySagaStore
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sqlite import SqliteSagaStore

__all__ = ["store_from_url"]


def store_from_url(
    url: str, *, password: Secret | None = None, timeouts: PostgresTimeouts | None = None
) -> SagaStore:
    """The (unopened) store ``url`` names; ``password`` is a ``postgresql://`` store's
    (:attr:`sagas.config.SagaConfig.store_password`), if not in the URL, and ``timeouts``
    its connections' (:meth:`sagas.config.SagaConfig.store_timeouts`; default: bus's).

    >>> store_from_url("sqlite:sagas.db")
    SqliteSagaStore('sagas.db')
    """
    if url == "memory":
        return MemorySagaStore()
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise ConfigError("the saga store 'sqlite:' needs a file path, e.g. sqlite:sagas.db")
        return SqliteSagaStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        secret = None if password is None else password.reveal()
        return PostgresSagaStore(url, password=secret, timeouts=timeouts)
    raise ConfigError(
        f"unknown saga store {url.split('://')[0]!r}: use 'sqlite:PATH' (embedded default), "
        "'postgresql://user@host/db' or 'memory' (--store or BUS_SAGA_STORE)"
    )
