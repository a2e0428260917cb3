"""What a handler gets besides its message: the envelope, a logger, and ``publish``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bus.dedup.base import DedupTransaction
from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.message import Message
from bus.record import Record

__all__ = ["BatchContext", "Context", "MessageLogger"]


class MessageLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line carries the message id, correlation id, type and app."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


class Context:
    """The handled message's surroundings.

    ``publish`` does not send at once: what a handler publishes is sent, with what it
    returns, after it returns successfully, so a failed try (retried or dead-lettered)
    emits nothing. Emitted messages keep the handled message's correlation id and get
    its id as their causation id.

    A handler declared with ``dedup=store`` runs inside a transaction of that store:
    ``ctx.transaction`` gives it, and an effect written through its connection commits
    together with the dedup record (or not at all), so a crash cannot double it.

    Example::

        @app.handler
        async def create_account(event: EmployeeHired, ctx: Context) -> None:
            ctx.logger.info("creating account for %s", event.employee_id)
            ctx.publish(AccountCreated(employee_id=event.employee_id, login="ada"))
    """

    __slots__ = ("_logger", "_outbox", "_transaction", "app", "envelope", "handler", "record")

    def __init__(self, envelope: Envelope, record: Record, *, app: str, handler: str) -> None:
        self.envelope = envelope
        self.record = record
        self.app = app
        self.handler = handler
        self._outbox: list[Message] = []
        self._logger: MessageLogger | None = None
        self._transaction: DedupTransaction[Any] | None = None

    @property
    def transaction(self) -> DedupTransaction[Any]:
        """The dedup store's transaction this try runs in (handlers with ``dedup=`` only).

        Example (SQLite store; the effect and the dedup record commit together)::

            await ctx.transaction.run(lambda db: db.execute("INSERT INTO payroll ..."))
        """
        if self._transaction is None:
            raise ConfigError(
                f"handler {self.handler} has no dedup store: declare it with "
                "@app.handler(dedup=store) to write effects in the dedup transaction"
            )
        return self._transaction

    def use_transaction(self, transaction: DedupTransaction[Any] | None) -> None:
        """Set the transaction of the current try (used by the runtime)."""
        self._transaction = transaction

    @property
    def correlation_id(self) -> str:
        """The business process this message belongs to."""
        return self.envelope.correlationid or self.envelope.id

    @property
    def logger(self) -> MessageLogger:
        """A logger named after the app that tags each line with this message's ids."""
        if self._logger is None:
            self._logger = MessageLogger(
                logging.getLogger(f"bus.app.{self.app}"), self.log_fields()
            )
        return self._logger

    def log_fields(self) -> Mapping[str, object]:
        env = self.envelope
        return {
            "app": self.app,
            "handler": self.handler,
            "message_id": env.id,
            "message_type": env.type,
            "correlation_id": env.correlationid or env.id,
        }

    def publish(self, message: Message) -> None:
        """Emit ``message`` when the handler returns (see the class docstring)."""
        self._outbox.append(message)

    def take_outbox(self) -> list[Message]:
        """The messages published so far, emptying the outbox (used by the runtime)."""
        out, self._outbox = self._outbox, []
        return out


class BatchContext:
    """What a batch handler gets besides its messages: their envelopes and records (by
    the same index), a logger, and ``publish``.

    A returned message is caused by the batch's last message; ``publish(m, cause=i)``
    names the message (by index in the batch) that caused ``m``, so its correlation and
    causation ids are that message's. Nothing is sent unless the handler returns.

    Example::

        @app.batch_handler
        async def bill(batch: list[OrderPlaced], ctx: BatchContext) -> None:
            for i, order in enumerate(batch):
                ctx.publish(InvoiceSent(order_id=order.order_id), cause=i)
    """

    __slots__ = ("_outbox", "app", "envelopes", "handler", "logger", "records")

    def __init__(
        self, envelopes: list[Envelope], records: list[Record], *, app: str, handler: str
    ) -> None:
        self.envelopes = envelopes
        self.records = records
        self.app = app
        self.handler = handler
        self._outbox: list[tuple[int, Message]] = []
        self.logger = MessageLogger(
            logging.getLogger(f"bus.app.{app}"), {"app": app, "handler": handler}
        )

    def publish(self, message: Message, *, cause: int = -1) -> None:
        """Emit ``message`` when the handler returns; ``cause``: index of the message that
        caused it (default: the last)."""
        self.envelopes[cause]  # an IndexError now rather than a wrong lineage later
        self._outbox.append((cause, message))

    def take_outbox(self) -> list[tuple[int, Message]]:
        """``(cause index, message)`` published so far, emptying the outbox (the runtime)."""
        out, self._outbox = self._outbox, []
        return out
