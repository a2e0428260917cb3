"""Saga stores: one :class:`~sagas.stores.base.SagaStore` protocol, three backends.

``open_store("memory")``, ``open_store("sqlite:sagas.db")`` or
``open_store("postgresql://user@host/db")`` picks one from a store URL (the CLI's
``--store`` and ``BUS_SAGA_STORE``).
"""

from sagas.stores.base import (
    ControlRequest,
    DueTimer,
    OutboxEntry,
    RevisionConflictError,
    SagaQuery,
    SagaStore,
    SagaWrite,
    StoredSaga,
)
from sagas.stores.memory import MemorySagaStore
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sqlite import SqliteSagaStore
from sagas.stores.url import store_from_url

__all__ = [
    "ControlRequest",
    "DueTimer",
    "MemorySagaStore",
    "OutboxEntry",
    "PostgresSagaStore",
    "RevisionConflictError",
    "SagaQuery",
    "SagaStore",
    "SagaWrite",
    "SqliteSagaStore",
    "StoredSaga",
    "store_from_url",
]
