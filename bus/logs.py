"""Log lines for people (default) or machines (``--log-json``), with message ids attached.

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

__all__ = ["CONTEXT_FIELDS", "HumanFormatter", "JsonFormatter", "configure_logging"]

CONTEXT_FIELDS = ("app", "handler", "message_type", "message_id", "correlation_id")


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka narrates every group join at INFO; keep that for DEBUG runs
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    logging.getLogger("aiokafka").setLevel(quiet)
