"""The one exception tree of bus.

Every error the library raises derives from :class:`BusError`. Foreign errors (aiokafka,
pydantic, sqlite) are translated once, where they enter, with ``raise ... from exc``.
``retryable`` on the class tells the runtime whether trying again can help::

    BusError
    ├── ConfigError              bad settings or wiring; fix the code or environment
    │   ├── DefinitionError      an App or saga definition is invalid (lists every problem)
    │   └── HandlerResultError   a handler returned something that is not a message
    ├── RegistryError            a message type name is registered twice
    ├── PermanentError           raised by a handler: trying again cannot help (no retries)
    ├── RecordError              a consumed record cannot become a typed message
    │   ├── DecodeError          not a CloudEvent (headers/value unreadable)
    │   ├── UnknownTypeError     a CloudEvent whose type no model is registered for
    │   └── PayloadInvalidError  data does not validate against the model
    ├── TransportError           the transport failed (retryable)
    │   ├── TopicNotFoundError   the topic does not exist and is not auto-created
    │   ├── CommitFailedError    the partition was revoked: another member owns it now
    │   ├── MessageTooLargeError the record is above the configured size limit (permanent)
    │   └── SecurityError        the broker refused our login, or its certificate failed
    │                            verification (permanent: fix the credentials or CA)
    ├── TransportClosedError     the transport or consumer was used after stop()
    ├── StoreError               a database (SQLite, PostgreSQL) failed (retryable)
    │   ├── LockTimeoutError     a row lock was not granted within the store's lock timeout:
    │   │                        another transaction (a stalled replica?) holds it (retryable)
    │   └── SchemaVersionError   the database schema is newer than this code (permanent)
    └── DuplicateMessageError    the handler already completed this message (proof: the
                                 dedup store's unique key); acknowledge, do not run it again

Example::

    try:
        await publisher.publish(event)
    except TransportError as exc:
        if not exc.retryable:
            raise
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "CommitFailedError",
    "ConfigError",
    "DecodeError",
    "DefinitionError",
    "DuplicateMessageError",
    "HandlerResultError",
    "LockTimeoutError",
    "MessageTooLargeError",
    "PayloadInvalidError",
    "PermanentError",
    "PublishRefusedError",
    "RecordError",
    "RegistryError",
    "SchemaVersionError",
    "SecurityError",
    "StoreError",
    "TopicNotFoundError",
    "TransportClosedError",
    "TransportError",
    "UnknownTypeError",
]


class BusError(Exception):
    """Base of every error raised by bus."""

    retryable: bool = False


class ConfigError(BusError):
    """Settings or wiring are wrong; the message names the setting and the fix."""


class DefinitionError(ConfigError):
    """A definition has problems; ``problems`` lists every one of them."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{subject} is invalid ({len(self.problems)} problem(s)):\n{lines}")


class HandlerResultError(ConfigError):
    """A handler returned something other than a message, a list of messages, or None."""


class RegistryError(BusError):
    """Two different message classes claim the same type name."""


class PermanentError(BusError):
    """Raise it from a handler when trying again cannot help: the record is dead-lettered
    at once with reason ``permanent_error``.

    Example::

        if employee.country not in SUPPORTED:
            raise PermanentError(f"no payroll provider for {employee.country}")
    """


class RecordError(BusError):
    """A consumed record cannot be turned into a typed message.

    ``reason`` is a short stable code (it becomes the ``bus_error_reason`` dead-letter
    header); the message explains it for people.
    """

    reason: str = "record"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class DecodeError(RecordError):
    """The record is not a readable CloudEvent."""

    reason = "decode"


class UnknownTypeError(RecordError):
    """The CloudEvent's type has no registered model."""

    reason = "unknown_type"


class PayloadInvalidError(RecordError):
    """The CloudEvent's data does not validate against the registered model."""

    reason = "invalid"


class TransportError(BusError):
    """The transport failed; usually worth retrying."""

    retryable = True


class TopicNotFoundError(TransportError):
    """The topic does not exist and the transport does not create topics on use."""

    retryable = False


class CommitFailedError(TransportError):
    """A commit named a partition this consumer no longer owns (it was rebalanced away)."""

    retryable = False


class MessageTooLargeError(TransportError):
    """The record is larger than the transport's configured limit."""

    retryable = False


class SecurityError(TransportError):
    """The broker refused the client's credentials (authentication failed) or the TLS
    handshake failed (the broker's certificate did not verify against the CA).

    Retrying cannot help: the message names the cause and the settings to fix.
    """

    retryable = False


class TransportClosedError(BusError):
    """The transport or consumer was used after it was stopped."""


class StoreError(BusError):
    """A database behind a store failed (unreachable, locked too long); usually worth retrying."""

    retryable = True


class LockTimeoutError(StoreError):
    """A statement waited for a lock longer than the store's ``lock_timeout`` and gave up.

    Another transaction holds the row - a replica stopped (SIGSTOP, a long GC pause, a
    frozen VM) inside its transaction, or a long one. Retryable: the lock is released when
    that transaction ends, at the latest when the server ends its idle session
    (``idle_in_transaction_session_timeout``). Only the work touching the locked rows needs
    to wait; retry it on its own rather than with unrelated work.
    """


class SchemaVersionError(StoreError):
    """The database was migrated by a newer version of the code than this one.

    Running older code on a newer schema could write rows the newer code misreads: deploy
    the newer version everywhere (or restore the database) instead of retrying.
    """

    retryable = False


class DuplicateMessageError(BusError):
    """A handler already completed this message: the dedup store holds its key.

    Raised when recording a completion whose key is already recorded, and by a dedup
    transaction (on entry, or when it commits) if another consumer - a zombie still working
    on a partition that was rebalanced away - completed the same message first; that
    transaction is rolled back, so its effect is gone. Not retryable: the right outcome is
    to acknowledge the record (re-sending the recorded outputs), not to run the handler again.
    ``key`` is the ``DedupKey`` (handler, source, id).
    """

    retryable = False

    def __init__(self, message: str, *, key: tuple[str, str, str] | None = None) -> None:
        super().__init__(message)
        self.key = key


class PublishRefusedError(BusError):
    """The HTTP ingress refused a publish (``bus.client``): its status, title, field errors.

    ``errors`` are the problem document's (``{"field", "message", "event"}`` each: the
    attribute or ``data.<path>``, and the index in the batch). Retryable only for 429/503
    answers that outlasted the client's retries.
    """

    def __init__(
        self, status: int, title: str, errors: list[dict[str, object]] | None = None
    ) -> None:
        self.status = status
        self.title = title
        self.errors = list(errors or [])
        self.retryable = status in (429, 503)
        details = "; ".join(
            f"{e.get('field')}: {e.get('message')}"
            + (f" (event {e['event']})" if e.get("event") is not None else "")
            for e in self.errors
        )
        super().__init__(f"{status} {title}" + (f": {details}" if details else ""))
