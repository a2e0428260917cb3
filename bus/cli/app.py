"""The ``bus`` command: the Typer app, its groups, ``--version``, and :func:`main`.

Every command validates its input fully before acting. A user error (a bad flag, a
module that does not import, an unreachable broker) is one line ``bus: error: ...`` on
stderr and exit code 2; a command's own "no" (``--check`` found differences, a replay was
refused) is exit code 1.

Example::

    raise SystemExit(main(["dlq", "list", "--json"]))
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer import _click as click
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from bus.cli.options import Group
from bus.cli.output import error
from bus.cli.plugins import load_plugin, plugin_names

__all__ = ["build", "main"]

_HELP = (
    "Typed CloudEvents on Kafka: run handler apps, publish messages, export schemas, "
    "inspect dead letters."
)
_EPILOG = "Settings also come from BUS_* environment variables (flags win); see the README."


#: bus's commands: name -> (the module that registers it, its line in `bus --help`). A
#: module is imported, and its Typer command built, only when its command runs: building
#: every command's parameters from its signature costs more than the rest of `bus --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bus.cli.run", "run one or more apps in this process"),
    "publish": ("bus.cli.publish", "validate and publish messages"),
    "ingress": (
        "bus.cli.ingress",
        "accept events over HTTP (CloudEvents, webhooks) and publish them",
    ),
    "schema": ("bus.cli.schema", "message schemas: export"),
    "topics": ("bus.cli.topics", "topic provisioning: ensure"),
    "trace": ("bus.cli.trace", "print the causal tree of one process's messages"),
    "dlq": ("bus.cli.dlq", "inspect and replay dead letters: list, show, replay"),
    "up": ("bus.cli.up", "run a Procfile's processes together until Ctrl-C"),
    "asyncapi": ("bus.cli.asyncapi", "the AsyncAPI 3.0 document of apps"),
    "dev": ("bus.cli.dev", "local development helpers: broker"),
}


class _BusGroup(Group):
    """The root group: bus's commands, then the plugins', each loaded when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in plugin_names() if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return _load_command(cmd_name)
        if cmd_name not in plugin_names():
            return None
        group = load_plugin(cmd_name)
        if group is None:
            return None
        command = typer.main.get_group(group)
        # a plugin that adds one command named like itself is that command (`bus console`)
        single = command.commands.get(cmd_name)
        return single if single is not None and len(command.commands) == 1 else command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, short) in COMMANDS.items()]
        rows += [
            (name, f"commands of the {name} package: bus {name} --help")
            for name in plugin_names()
            if name not in COMMANDS
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _load_command(name: str) -> click.Command:
    module = importlib.import_module(COMMANDS[name][0])
    holder = typer.Typer(cls=Group, rich_markup_mode=None)
    holder.callback()(lambda: None)  # a group even when the module adds a single command
    module.register(holder)
    command = typer.main.get_group(holder).commands[name]
    command.short_help = command.short_help or COMMANDS[name][1]
    return command


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"bus {version('bus')}")
        raise typer.Exit()


def build() -> typer.Typer:
    """The ``bus`` root; its commands (:data:`COMMANDS`, plugins) join when invoked."""
    app = typer.Typer(
        name="bus",
        help=_HELP,
        epilog=_EPILOG,
        cls=_BusGroup,
        no_args_is_help=True,
        # plain help: Rich would cost `bus --help` a tenth of a second to import
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        version: bool = typer.Option(
            False,
            "--version",
            callback=_version,
            is_eager=True,
            help="print the version and exit",
        ),
    ) -> None:
        """Typed CloudEvents on Kafka."""

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bus`` console script; returns the exit code."""
    from bus.errors import BusError

    _exit_on_sigterm_as_pid_1()

    command = typer.main.get_command(build())
    try:
        result: Any = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="bus",
            standalone_mode=False,
        )
    except UsageError as exc:
        return _usage_error(exc)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        error("aborted")
        return 130
    except click.ClickException as exc:
        error(exc.format_message())
        return exc.exit_code
    except BusError as exc:
        error(str(exc))
        return 2
    return result if isinstance(result, int) else 0


def _exit_on_sigterm_as_pid_1() -> None:
    """As a container's PID 1 the kernel drops signals that have no handler, so a
    ``docker stop`` during start-up (imports, connecting) would wait out its grace period
    and kill. Until a command installs its own (the runner drains), SIGTERM exits 143."""
    if os.getpid() != 1:
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def _usage_error(exc: UsageError) -> int:
    """The usage of the command that was mistyped (not the top level's), then the error."""
    ctx = exc.ctx
    if isinstance(exc, NoArgsIsHelpError) and ctx is not None:  # `bus dlq`: its help
        print(ctx.get_help(), file=sys.stderr)
        return 2
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        hint = f" (see '{ctx.command_path} --help')"
    else:
        hint = ""
    error(f"{exc.format_message().rstrip('.')}{hint}")
    return 2
