"""Log lines for people (default) or machines (``--log-json``), with message ids attached.

While a Kafka broker is unreachable, aiokafka's line per failed try is dropped (except at
DEBUG): the transport logs the loss once and the recovery once.

Handlers log through ``ctx.logger``, which attaches ``app``, ``handler``, ``message_id``,
``message_type`` and ``correlation_id``; both formats print them.

Example::

    configure_logging(level="INFO", json=False)
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

__all__ = [
    "CONTEXT_FIELDS",
    "HumanFormatter",
    "JsonFormatter",
    "configure_logging",
    "is_connection_noise",
]

CONTEXT_FIELDS = ("app", "handler", "message_type", "message_id", "correlation_id")

# What aiokafka logs on every failed try while a broker is unreachable (about a hundred
# lines a second): the Kafka transport says it once, and once more when the broker is back
_CONNECTION_NOISE = (
    "NodeNotReadyError",
    "KafkaConnectionError",
    "Unable connect to",  # a node, or a bootstrap server (TLS faults: the transport says)
    "Unable to update metadata",
    "Connect call failed",
    "Marking the coordinator dead",
)


def is_connection_noise(logger: str, level: int, message: str) -> bool:
    """True for an aiokafka line about one failed try to reach a broker (not CRITICAL)."""
    return (
        (logger == "aiokafka" or logger.startswith("aiokafka."))
        and level < logging.CRITICAL
        and any(marker in message for marker in _CONNECTION_NOISE)
    )


def _drop_connection_noise(record: logging.LogRecord) -> bool:
    return not is_connection_noise(record.name, record.levelno, record.getMessage())


class HumanFormatter(logging.Formatter):
    """``12:00:01.123 INFO  [identity] text  corr=... type=... id=...``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        app = getattr(record, "app", None)
        where = f"[{app}] " if app else ""
        line = f"{stamp} {record.levelname:<5} {where}{record.getMessage()}"
        corr = getattr(record, "correlation_id", None)
        if corr:
            line += f"  corr={corr} type={getattr(record, 'message_type', '')} id={getattr(record, 'message_id', '')}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure_logging(*, level: str = "INFO", json: bool = False) -> None:
    """Send every log line to stderr in the chosen format (replaces existing handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else HumanFormatter())
    if level.upper() != "DEBUG":  # a DEBUG run shows every try
        handler.addFilter(_drop_connection_noise)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka narrates every group join at INFO; keep that for DEBUG runs
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    logging.getLogger("aiokafka").setLevel(quiet)
