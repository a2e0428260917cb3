"""Settings from ``BUS_*`` environment variables: the only module of bus that reads ``os.environ``.

The settings classes (:class:`bus.config.BusConfig`, :class:`bus.kafka_config.KafkaConfig`,
:class:`bus.ingress_config.IngressConfig`) are frozen dataclasses; :func:`settings_from_env`
fills one from ``<PREFIX><FIELD>`` variables, parsed by each field's type, and reports every
bad variable at once by name (never its value: some are secrets). :class:`Secret` keeps a
credential out of logs and reprs.

Example::

    secret = env_secret("HR_WEBHOOK_SECRET", {"HR_WEBHOOK_SECRET": "s3cret"})
    assert repr(secret) == "Secret('********')"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from bus.errors import ConfigError

__all__ = ["Secret", "env_secret", "settings_from_env"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def settings_from_env(
    cls: type[Any],
    prefix: str,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Field values of dataclass ``cls`` from ``<prefix><FIELD>`` variables, then overrides.

    Every unparsable variable is reported at once, by name: values are never echoed (some
    are secrets).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = dict(defaults or {})
    problems: list[str] = []
    for f in fields(cls):
        var = prefix + f.name.upper()
        if var in env:
            try:
                values[f.name] = _parse(env[var], f.type)
            except ValueError as exc:
                problems.append(f"{var}: {exc}")
    if problems:
        raise ConfigError("bad environment: " + "; ".join(problems))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def _parse(text: str, type_name: object) -> Any:
    kind = str(type_name).replace(" | None", "")
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"expected {'a whole number' if kind == 'int' else 'a number'}") from None
    return text.strip()


class Secret:
    """A credential that never shows itself in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def env_secret(name: str, env: Mapping[str, str] | None = None) -> Secret:
    """The secret in environment variable ``name`` (a webhook's HMAC key);
    :class:`ConfigError` naming the variable when it is unset or empty."""
    value = (os.environ if env is None else env).get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} (a secret) is not set")
    return Secret(value)
