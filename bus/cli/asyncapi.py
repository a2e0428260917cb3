"""``bus asyncapi``: the AsyncAPI 3.0 document of apps (channels per topic, operations per
handler, payload schemas, CloudEvents headers, Kafka bindings).

Example::

    bus asyncapi handlers.demo:apps --out asyncapi.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bus.cli.common import TARGET_HELP, load_apps

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command(
        "asyncapi",
        help="Write the AsyncAPI 3.0 document of the apps: one channel per topic, a receive "
        "operation per handler (with its group), send operations for what handlers emit, "
        "payload schemas and the CloudEvents ce_* headers.",
        short_help="the AsyncAPI 3.0 document of apps",
    )(asyncapi)


def asyncapi(
    targets: Annotated[list[str], typer.Argument(metavar="MODULE[:ATTR]", help=TARGET_HELP)],
    title: Annotated[str, typer.Option(help="the document's title")] = "bus",
    version: Annotated[str, typer.Option(help="the API's version")] = "1.0.0",
    out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write here (default: stdout)")
    ] = None,
) -> int:
    import orjson

    from bus.asyncapi import asyncapi_document

    apps = [app for target in targets for app in load_apps(target)]
    document = asyncapi_document(apps, title=title, version=version)
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote the AsyncAPI document of {len(apps)} app(s) to {out}")
    return 0
