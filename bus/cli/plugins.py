"""Commands other packages add: entry points of the group ``bus.cli`` (``bus sagas``).

bus imports neither ``handlers`` nor ``sagas`` (layering): a package above it registers
its commands instead. The entry point is a function called as::

    register(app: typer.Typer, *, transport_options, make_transport, invoke)

It adds its commands to ``app`` (a new Typer group named like the entry point) and may use:

- ``transport_options``: bus's decorator adding the transport, log and Kafka flags
  (:func:`bus.cli.options.transport_options`, long-running flavour); the command receives
  them as ``options``;
- ``make_transport(config, options)``: the transport those flags select;
- ``invoke(body, options, **params)``: runs ``body(args, config)``, the argparse-style
  command body, with ``args`` an ``argparse.Namespace`` of ``params`` and the flags, and
  ``config`` the :class:`~bus.config.BusConfig` they give (logging configured); returns
  its exit code.

A plugin is loaded only when its command runs: ``bus --help`` lists it by name without
importing it (importing sagas imports the whole runtime).
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from bus.cli.options import Group, TransportOptions, bus_config, make_transport, transport_options
from bus.cli.output import warning

if TYPE_CHECKING:
    from bus.config import BusConfig

__all__ = ["invoke", "load_plugin", "plugin_names"]

GROUP = "bus.cli"


def plugin_names() -> dict[str, str]:
    """Command name -> the module that registers it (nothing imported)."""
    return {e.name: e.module for e in importlib.metadata.entry_points(group=GROUP)}


def load_plugin(name: str) -> typer.Typer | None:
    """The Typer group of plugin ``name``, or None (with a warning) when it fails to load."""
    for entry in importlib.metadata.entry_points(group=GROUP, name=name):
        try:
            register = entry.load()
            app = typer.Typer(name=name, cls=Group, no_args_is_help=True, rich_markup_mode=None)
            register(
                app,
                transport_options=transport_options(one_shot=False),
                make_transport=make_transport,
                invoke=invoke,
            )
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            warning(f"commands of {name!r} not loaded: {exc}")
            return None
        return app
    return None


def invoke(
    body: Callable[[argparse.Namespace, BusConfig], int],
    options: TransportOptions | None = None,
    **params: Any,
) -> int:
    """``body(args, config)`` with ``args`` made of ``params`` and the shared flags."""
    flags = asdict(options) if options is not None else {}
    args = argparse.Namespace(**flags, **params)
    return body(args, bus_config(args))
