"""Settings from the environment: the only module that reads ``os.environ``.

Every setting has a ``BUS_*`` variable and a CLI flag (flags win). Values are validated
once, with an error naming the variable and what it accepts.

| variable | default | meaning |
|---|---|---|
| ``BUS_TRANSPORT`` | ``memory`` | ``memory`` (in-process) or ``kafka`` |
| ``BUS_PARTITIONS`` | ``3`` | partitions of topics the memory transport creates |
| ``BUS_MAX_CONCURRENCY`` | ``16`` | partitions handled at once per app |
| ``BUS_COMMIT_INTERVAL_S`` | ``0.5`` | seconds between offset commits |
| ``BUS_SHUTDOWN_DEADLINE_S`` | ``10`` | longest graceful shutdown, seconds |
| ``BUS_OFFSET_RESET`` | ``earliest`` | where a new group starts: ``earliest``/``latest`` |
| ``BUS_LOG_LEVEL`` | ``INFO`` | log level |
| ``BUS_LOG_JSON`` | ``false`` | JSON log lines |

Example::

    config = BusConfig.from_env()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from bus.errors import ConfigError
from bus.types import OffsetReset
from bus.worker import WorkerSettings

__all__ = ["BusConfig", "TransportName"]

TransportName = Literal["memory", "kafka"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class BusConfig:
    """One process's settings (see the module docstring for the variables)."""

    transport: TransportName = "memory"
    partitions: int = 3
    max_concurrency: int = 16
    commit_interval_s: float = 0.5
    shutdown_deadline_s: float = 10.0
    offset_reset: OffsetReset = "earliest"
    log_level: str = "INFO"
    log_json: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> BusConfig:
        """Settings from ``env`` (default ``os.environ``), then ``overrides`` that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            var = "BUS_" + f.name.upper()
            if var in env:
                try:
                    values[f.name] = _parse(env[var], f.type)
                except ValueError as exc:
                    problems.append(f"{var}={env[var]!r}: {exc}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if problems:
            raise ConfigError("bad environment: " + "; ".join(problems))
        return cls(**values).validated()

    def validated(self) -> BusConfig:
        problems = []
        if self.transport not in ("memory", "kafka"):
            problems.append(f"transport must be 'memory' or 'kafka', not {self.transport!r}")
        if self.partitions < 1:
            problems.append("partitions must be at least 1")
        if self.max_concurrency < 1:
            problems.append("max_concurrency must be at least 1")
        if self.commit_interval_s <= 0:
            problems.append("commit_interval_s must be positive")
        if self.shutdown_deadline_s < 0:
            problems.append("shutdown_deadline_s must not be negative")
        if self.offset_reset not in ("earliest", "latest"):
            problems.append("offset_reset must be 'earliest' or 'latest'")
        if problems:
            raise ConfigError("bad settings: " + "; ".join(problems))
        return self

    def worker_settings(self) -> WorkerSettings:
        return replace(
            WorkerSettings(),
            max_concurrency=self.max_concurrency,
            commit_interval_s=self.commit_interval_s,
            shutdown_deadline_s=self.shutdown_deadline_s,
            offset_reset=self.offset_reset,
        )


def _parse(text: str, type_name: object) -> Any:
    kind = str(type_name)
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text.strip()
