"""A saga store from a URL: ``memory``, ``sqlite:PATH`` or ``postgresql://...``.

Two doors: :func:`store_from_url` for the commands that write (``bus sagas run``, the
demo: opening creates the store), :func:`existing_store_from_url` for the ones that only
read or delete (``list``, ``show``, ``purge``, ``cancel``, ``retry``): a typo in a path must
say so, not create an empty database that shows "0 sagas".
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bus import ConfigError, PostgresTimeouts, Secret
from sagas.stores.base import SagaStore
from sagas.stores.memory import MemorySagaStore
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sqlite import SqliteSagaStore

__all__ = ["describe_store", "existing_store_from_url", "sqlite_path", "store_from_url"]


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
    path = sqlite_path(url)
    if path is not None:
        return SqliteSagaStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        secret = None if password is None else password.reveal()
        return PostgresSagaStore(url, password=secret, timeouts=timeouts)
    raise ConfigError(
        f"unknown saga store {url.split('://')[0]!r}: use 'sqlite:PATH' (embedded default), "
        "'postgresql://user@host/db' or 'memory' (--store or BUS_SAGA_STORE)"
    )


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:PATH`` (or ``sqlite:///PATH``) URL; None for other stores.

    >>> sqlite_path("sqlite:///var/lib/bus/sagas.db"), sqlite_path("memory")
    ('/var/lib/bus/sagas.db', None)
    """
    if not url.startswith("sqlite:"):
        return None
    path = url.removeprefix("sqlite:").removeprefix("//")
    if not path:
        raise ConfigError("the saga store 'sqlite:' needs a file path, e.g. sqlite:sagas.db")
    return path


def existing_store_from_url(
    url: str, *, password: Secret | None = None, timeouts: PostgresTimeouts | None = None
) -> SagaStore:
    """Like :func:`store_from_url`, for a store that must exist already: a ``sqlite:`` file
    that is not there is a :class:`bus.ConfigError` naming its absolute path, and nothing is
    created. (A ``postgresql://`` database is the operator's to create; ``memory`` is empty.)

    >>> existing_store_from_url("sqlite:/nonexistent/sagas.db")
    Traceback (most recent call last):
    ...
    bus.errors.ConfigError: no saga store at /nonexistent/sagas.db (sqlite:/nonexistent/sagas.db): run 'bus sagas run' first or pass --store
    """
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"no saga store at {Path(path).absolute()} ({url}): run 'bus sagas run' first "
            "or pass --store"
        )
    return store_from_url(url, password=password, timeouts=timeouts)


def describe_store(url: str) -> str:
    """``url`` fit to show (``/readyz``, logs): a password left out, a SQLite path absolute.

    >>> describe_store("postgresql://bus:s3cret@db:5432/sagas")
    'postgresql://bus@db:5432/sagas'
    """
    path = sqlite_path(url)
    if path is not None:
        return f"sqlite:{Path(path).absolute()}"
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
