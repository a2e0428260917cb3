"""What several commands do: import the user's modules, load apps, read an NDJSON file.

Example::

    apps = load_apps("handlers.demo:apps")
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.app import App
    from bus.ingest import Inbound
    from bus.transports.base import Transport

__all__ = ["import_module", "load_apps", "read_messages", "with_transport"]

T = TypeVar("T")

#: Help text of the MODULE[:ATTR] arguments.
TARGET_HELP = "an App or a list of Apps: module.path[:attr] (default attribute: app, then apps)"


def load_apps(target: str) -> list[App]:
    """The App(s) named by ``module[:attr]`` (default attribute ``app``, then ``apps``)."""
    from bus.app import App

    module_name, _, attr = target.partition(":")
    module = import_module(module_name)
    names = [attr] if attr else ["app", "apps"]
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, App):
            return [value]
        if isinstance(value, list | tuple) and value and all(isinstance(v, App) for v in value):
            return list(value)
    raise ConfigError(f"{target!r} names no App or list of Apps (looked for: {', '.join(names)})")


def import_module(module: str) -> object:
    """Import ``module`` (``module:attr`` is fine) from the current directory or sys.path."""
    module = module.partition(":")[0]
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # modules of the current directory, as 'python -m' does
    if module.endswith(".py") or "/" in module or "\\" in module:
        dotted = module.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
        raise ConfigError(
            f"{module!r} is a file path: name the module with dots instead, {dotted!r} "
            "(run from the directory that holds its top-level package)"
        )
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module!r}: {exc}") from exc


def read_messages(path: Path) -> list[Inbound]:
    """The messages of an NDJSON file, validated against the registered types."""
    from bus.ingest import parse_ndjson
    from bus.registry import default_registry

    try:
        with path.open("rb") as fh:
            return parse_ndjson(fh, default_registry)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def with_transport(transport: Transport, work: Callable[[Transport], Awaitable[T]]) -> T:
    """Start ``transport``, run ``work`` on it, stop it on every path (one event loop)."""
    import asyncio

    async def run() -> T:
        try:
            await transport.start()
            return await work(transport)
        finally:
            await transport.stop()

    return asyncio.run(run())
