"""The flags many commands share: transport, logging and Kafka connection settings.

:func:`transport_options` adds them to a command function as keyword parameters and hands
the function one :class:`TransportOptions` instead; :func:`bus_config` and
:func:`make_transport` turn that into settings and a transport. A plugin's commands
(``bus sagas``) get the same decorator through the ``bus.cli`` entry point.

Nothing here imports the runtime (aiokafka, pydantic, aiohttp) at module level: ``bus
--help`` builds every command from these modules alone.

Example::

    @app.command()
    @transport_options(one_shot=True)
    def ensure(targets: list[str], *, options: TransportOptions) -> int:
        transport = make_transport(bus_config(options), options)
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer import _click as click
from typer.core import TyperGroup

if TYPE_CHECKING:
    from bus.config import BusConfig
    from bus.transports.base import Transport

__all__ = [
    "ONE_SHOT_CONNECT_TIMEOUT_S",
    "Group",
    "TransportOptions",
    "bus_config",
    "make_transport",
    "transport_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: How long a one-shot command (publish, dlq, trace, topics) tries to reach the broker
#: before it gives up, unless ``--connect-timeout`` or BUS_KAFKA_CONNECT_TIMEOUT_S says
#: otherwise. A long-running ``bus run`` keeps KafkaConfig's 60 s: it waits for a broker
#: that is starting; a person at a prompt wants to hear about a typo quickly.
ONE_SHOT_CONNECT_TIMEOUT_S = 10.0

#: The start of the Kafka transport's log line (logger bus.kafka) per failed connection attempt.
_CONNECT_RETRY = "kafka %s: broker %s unreachable"
_KAFKA_PANEL = "Kafka (every BUS_KAFKA_* variable also applies; flags win)"


class Group(TyperGroup):
    """A command group whose flags cost no pydantic import while parsing ``bus dlq --help``.

    Typer coerces a parameter's value through pydantic unless it is a bool; ``--help`` and
    the completion flags default to None, so merely passing through a group would import
    pydantic (a tenth of a second). A bool default of False means the same to them.
    """

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        for param in params:
            if param.name in ("install_completion", "show_completion") and param.default is None:
                param.default = False
        return params

    def get_help_option(self, ctx: click.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


class TransportChoice(StrEnum):
    memory = "memory"
    kafka = "kafka"


class SecurityProtocolChoice(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanismChoice(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """The shared flags as given (None: not given, the environment or default applies)."""

    transport: str | None = None
    partitions: int | None = None
    log_level: str | None = None
    log_json: bool = False
    bootstrap_servers: str | None = None
    client_id: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Seconds to keep trying an unreachable broker (``--connect-timeout``).
    connect_timeout_s: float | None = None
    #: A one-shot command: a short connect timeout, and WARNING logs unless asked.
    one_shot: bool = False


def _option(*names: str, help: str, panel: str | None = None, **extra: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **extra)


# name -> (annotation, default): the parameters transport_options adds to a command
_PARAMETERS: dict[str, tuple[Any, Any]] = {
    "transport": (
        Annotated[
            TransportChoice | None, _option("--transport", help="default: memory (BUS_TRANSPORT)")
        ],
        None,
    ),
    "partitions": (
        Annotated[
            int | None,
            _option("--partitions", help="partitions per topic on the memory transport (3)"),
        ],
        None,
    ),
    "log_level": (
        Annotated[
            str | None, _option("--log-level", help="DEBUG shows every handled record (INFO)")
        ],
        None,
    ),
    "log_json": (Annotated[bool, _option("--log-json", help="JSON log lines")], False),
    "bootstrap_servers": (
        Annotated[
            str | None,
            _option(
                "--bootstrap-servers",
                help="host:port[,host:port] (BUS_KAFKA_BOOTSTRAP_SERVERS)",
                panel=_KAFKA_PANEL,
            ),
        ],
        None,
    ),
    "client_id": (
        Annotated[
            str | None,
            _option("--client-id", help="client id (BUS_KAFKA_CLIENT_ID)", panel=_KAFKA_PANEL),
        ],
        None,
    ),
    "security_protocol": (
        Annotated[
            SecurityProtocolChoice | None,
            _option("--security-protocol", help="default PLAINTEXT", panel=_KAFKA_PANEL),
        ],
        None,
    ),
    "sasl_mechanism": (
        Annotated[
            SaslMechanismChoice | None,
            _option(
                "--sasl-mechanism",
                help="the password comes only from BUS_KAFKA_SASL_PASSWORD",
                panel=_KAFKA_PANEL,
            ),
        ],
        None,
    ),
    "sasl_username": (
        Annotated[str | None, _option("--sasl-username", help="SASL user", panel=_KAFKA_PANEL)],
        None,
    ),
    "ssl_cafile": (
        Annotated[
            str | None,
            _option("--ssl-cafile", help="CA bundle to verify the brokers", panel=_KAFKA_PANEL),
        ],
        None,
    ),
    "ssl_certfile": (
        Annotated[
            str | None,
            _option("--ssl-certfile", help="client certificate (mutual TLS)", panel=_KAFKA_PANEL),
        ],
        None,
    ),
    "ssl_keyfile": (
        Annotated[
            str | None,
            _option("--ssl-keyfile", help="client key (mutual TLS)", panel=_KAFKA_PANEL),
        ],
        None,
    ),
    "connect_timeout_s": (
        Annotated[
            float | None,
            _option(
                "--connect-timeout",
                help="seconds to keep trying an unreachable broker (BUS_KAFKA_CONNECT_TIMEOUT_S; "
                f"{ONE_SHOT_CONNECT_TIMEOUT_S:g} for one-shot commands, 60 for run)",
                panel=_KAFKA_PANEL,
                metavar="SECONDS",
            ),
        ],
        None,
    ),
}
_KAFKA_FLAGS = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "connect_timeout_s",
)


def transport_options(*, one_shot: bool) -> Callable[[F], F]:
    """Add the shared flags to a command; it receives them as ``options: TransportOptions``.

    ``one_shot``: the command talks to the broker briefly and exits (publish, dlq, trace,
    topics), so it gives up on an unreachable broker after
    :data:`ONE_SHOT_CONNECT_TIMEOUT_S` and logs only warnings unless ``--log-level`` says
    otherwise.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=a)
            for name, (a, default) in _PARAMETERS.items()
        ]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in _PARAMETERS}
            values = {k: v.value if isinstance(v, Enum) else v for k, v in given.items()}
            return fn(**kwargs, options=TransportOptions(**values, one_shot=one_shot))

        parameters = [*own, *added]
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command  # type: ignore[return-value]

    return decorate


def bus_config(options: object, **overrides: Any) -> BusConfig:
    """Settings from the environment and the flags in ``options``; logging configured.

    ``options`` is a :class:`TransportOptions` or any object with its attributes (a
    plugin's ``argparse.Namespace``-like object); ``overrides`` are further flags (None:
    not given).
    """
    from bus.config import BusConfig
    from bus.logs import configure_logging

    one_shot = getattr(options, "one_shot", False)
    log_level = getattr(options, "log_level", None)
    config = BusConfig.from_env(
        transport=getattr(options, "transport", None),
        partitions=getattr(options, "partitions", None),
        log_level=log_level,
        log_json=True if getattr(options, "log_json", False) else None,
        **overrides,
    )
    # a one-shot command's output is its answer: INFO lines ("producer connected") and the
    # line per connection attempt are noise there (an unreachable broker ends the command
    # with one error line saying so), unless the operator asks for them with --log-level
    quiet = one_shot and log_level is None
    configure_logging(level="WARNING" if quiet else config.log_level, json=config.log_json)
    if quiet:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_not_connect_retries)
    return config


def _not_connect_retries(record: logging.LogRecord) -> bool:
    """False for the Kafka transport's "broker unreachable; retrying" line per attempt."""
    return not (
        record.name == "bus.kafka"
        and isinstance(record.msg, str)
        and record.msg.startswith(_CONNECT_RETRY)
    )


def make_transport(
    config: BusConfig, options: object, *, kafka_defaults: Mapping[str, Any] | None = None
) -> Transport:
    """The transport ``config`` selects, with the Kafka flags of ``options`` applied;
    ``kafka_defaults`` replace KafkaConfig's defaults for this command (variables win)."""
    if config.transport == "kafka":
        from bus.config import KafkaConfig
        from bus.transports.kafka import KafkaTransport

        flags = {name: getattr(options, name, None) for name in _KAFKA_FLAGS}
        defaults = dict(kafka_defaults or {})
        if getattr(options, "one_shot", False):
            defaults["connect_timeout_s"] = ONE_SHOT_CONNECT_TIMEOUT_S
        return KafkaTransport(KafkaConfig.from_env(defaults=defaults, **flags))
    from bus.transports.memory import MemoryBroker, MemoryTransport

    broker = MemoryBroker(
        default_partitions=config.partitions, retention_records=config.memory_retention_records
    )
    return MemoryTransport(broker)
