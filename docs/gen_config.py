"""Writes docs/configuration.md from the settings classes, so the reference cannot drift.

Every setting is a field of a frozen dataclass documented by the ``#:`` comment above it:
``bus.BusConfig`` (``BUS_*``), ``bus.KafkaConfig`` (``BUS_KAFKA_*``),
``sagas.config.SagaConfig`` (``BUS_SAGA_*``) and the two Python-only ones the first fills
in, ``bus.worker.WorkerSettings`` and ``bus.http_connections.HttpSettings``. A field without
a comment stops the script. It lives outside both packages because it documents both, and
bus may not import sagas. ``tests/docs/test_configuration_doc.py`` checks the file equals
this script's output and that every variable named here is the one the class reads.

    .venv/bin/python docs/gen_config.py > docs/configuration.md
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from bus import BusConfig
from bus.config import KafkaConfig
from bus.http_connections import HttpSettings
from bus.worker import WorkerSettings
from sagas.config import SagaConfig

REGENERATE = ".venv/bin/python docs/gen_config.py > docs/configuration.md"

#: SagaConfig fields whose variable is not ``BUS_SAGA_<FIELD>``.
SAGA_VARIABLES = {
    "store_password": "BUS_SAGA_STORE_PASSWORD` or `BUS_SAGA_STORE_PASSWORD_FILE",
    "fault_point": "BUS_FAULT_POINT",
}
#: WorkerSettings and HttpSettings fields that a BusConfig variable sets in ``bus run``.
WORKER_VARIABLES = {
    "max_concurrency": "BUS_MAX_CONCURRENCY",
    "commit_interval_s": "BUS_COMMIT_INTERVAL_S",
    "shutdown_deadline_s": "BUS_SHUTDOWN_DEADLINE_S",
    "offset_reset": "BUS_OFFSET_RESET",
    "tracing": "BUS_OTEL",
}
HTTP_VARIABLES = {
    "header_timeout_s": "BUS_HTTP_HEADER_TIMEOUT_S",
    "idle_timeout_s": "BUS_HTTP_IDLE_TIMEOUT_S",
    "max_connections": "BUS_HTTP_MAX_CONNECTIONS",
    "readiness_interval_s": "BUS_HTTP_READINESS_INTERVAL_S",
}


@dataclass(frozen=True)
class Section:
    """One table of the page: a settings class and how its fields are named outside."""

    title: str
    intro: str
    cls: type[Any]
    #: The environment variable of a field (None: set in Python only).
    variable: Callable[[str], str | None]
    #: Column heading of ``variable``.
    column: str = "variable"


SECTIONS = [
    Section(
        "Process: `bus.BusConfig`",
        "Read by `bus run`, `bus publish`, `bus topics`, `bus dlq`, `bus trace` and "
        "`bus sagas ...` (`BusConfig.from_env()`). A command's flag of the same name wins.",
        BusConfig,
        lambda name: f"BUS_{name.upper()}",
    ),
    Section(
        "Kafka: `bus.config.KafkaConfig`",
        "Read when the transport is `kafka` (`KafkaConfig.from_env()`). All are validated at "
        "start with one error listing every problem; secrets never appear in logs or errors.",
        KafkaConfig,
        lambda name: f"BUS_KAFKA_{name.upper()}",
    ),
    Section(
        "Sagas: `sagas.config.SagaConfig`",
        "Read by `bus sagas ...` (`SagaConfig.from_env()`); bus itself knows nothing of sagas.",
        SagaConfig,
        lambda name: SAGA_VARIABLES.get(name, f"BUS_SAGA_{name.upper()}"),
    ),
    Section(
        "Consuming: `bus.worker.WorkerSettings`",
        "How one worker consumes, passed to `Worker(app, transport, settings)` or "
        "`Runner(...)`. `bus run` builds it from `BusConfig` (`BusConfig.worker_settings()`); "
        "the fields without a variable keep their default there.",
        WorkerSettings,
        WORKER_VARIABLES.get,
        "set by",
    ),
    Section(
        "HTTP server: `bus.http_connections.HttpSettings`",
        "Limits of `bus.http.HttpServer`; `bus run` builds them from `BusConfig` "
        "(`BusConfig.http_settings()`).",
        HttpSettings,
        HTTP_VARIABLES.get,
        "set by",
    ),
]


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Each field's ``#:`` comment lines, joined; ``ValueError`` names undocumented fields."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    [node] = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    docs: dict[str, str] = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            comment: list[str] = []
            row = item.lineno - 2  # the line above, 0-based
            while row >= 0 and lines[row].strip().startswith("#:"):
                comment.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            docs[item.target.id] = markdown(" ".join(comment))
    missing = [f.name for f in fields(cls) if not docs.get(f.name)]
    if missing:
        raise ValueError(f"{cls.__qualname__}: no '#:' comment above {', '.join(missing)}")
    return docs


def markdown(text: str) -> str:
    """A docstring-style comment as Markdown: ````x```` -> ```x```, Sphinx roles dropped."""
    return re.sub(r":(?:class|data|func|meth):", "", text).replace("``", "`")


def default_text(field: Field[Any]) -> str:
    """The field's default as a user would write it in the environment."""
    value = field.default if field.default is not MISSING else None
    if value is None:
        return "-"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def choices_text(cls: type[Any], name: str) -> str:
    """``one of `a`, `b``` when the field's type is a Literal, else empty."""
    hint = typing.get_type_hints(cls)[name]
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(options) == 1:
        hint = options[0]  # Optional[Literal[...]]
    if typing.get_origin(hint) is not typing.Literal:
        return ""
    return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(hint)) + ". "


def render_section(section: Section) -> str:
    docs = field_docs(section.cls)
    rows = [
        f"## {section.title}",
        "",
        section.intro,
        "",
        f"| field | {section.column} | default | meaning |",
        "|---|---|---|---|",
    ]
    for field in fields(section.cls):
        variable = section.variable(field.name)
        shown = f"`{variable}`" if variable else "-"
        meaning = choices_text(section.cls, field.name) + docs[field.name]
        rows.append(f"| `{field.name}` | {shown} | {default_text(field)} | {meaning} |")
    return "\n".join(rows)


def render() -> str:
    """The whole page."""
    head = [
        "# Configuration reference",
        "",
        f"<!-- generated by docs/gen_config.py; do not edit: run `{REGENERATE}` -->",
        "",
        "Every setting is an environment variable read once at start and validated with one "
        "error naming every bad variable (never its value). Booleans take `true`/`false` "
        "(also `1`/`0`, `yes`/`no`, `on`/`off`); durations are seconds (`_s`) or "
        "milliseconds (`_ms`) as the name says. `bus COMMAND --help` lists the flags.",
    ]
    return "\n\n".join(["\n".join(head), *(render_section(s) for s in SECTIONS)]) + "\n"


if __name__ == "__main__":
    print(render(), end="")
