"""An HTML form from a task's form model (its JSON schema), and the submitted form back.

Pure: the console's task page renders :func:`form_fields` and hands what the browser
posts to :func:`parsed_form`; validation is the model's own (``model_validate``), its
errors mapped to the field they name by :func:`field_errors`. A field's input follows its
schema: text, number, date, date-time, checkbox, a select for an enum; anything else
(nested objects, lists) is a JSON textarea.

Example::

    fields = form_fields(DeskAssigned)            # [FormField("desk", "text", ...)]
    data, bad = parsed_form(fields, {"desk": "B-204"})
    problems = field_errors(DeskAssigned, data)   # {} when valid
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["FormField", "field_errors", "form_fields", "parsed_form"]

#: The input kinds a field can have.
_SIMPLE = {"string": "text", "integer": "integer", "number": "number", "boolean": "checkbox"}
_FORMATS = {"date": "date", "date-time": "datetime"}


@dataclass(frozen=True, slots=True)
class FormField:
    """One input of a task's form."""

    name: str
    #: text, integer, number, date, datetime, checkbox, select or json.
    kind: str
    label: str
    required: bool
    #: The enum's values (a select's options).
    options: tuple[str, ...] = ()
    #: The value the input starts with (the model's default, as the input shows it).
    initial: str = ""
    description: str = ""


def form_fields(model: type[BaseModel]) -> list[FormField]:
    """The inputs for ``model``'s fields, in declaration order."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        resolved = _resolve(prop, defs)
        kind, options = _kind(resolved)
        out.append(
            FormField(
                name, kind, str(prop.get("title") or name.replace("_", " ").capitalize()),
                name in required, options,
                _initial(kind, prop.get("default")), str(prop.get("description") or ""),
            )
        )  # fmt: skip
    return out


def _resolve(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The property's own schema: ``$ref`` followed, ``Optional``'s null branch dropped."""
    if "$ref" in prop:
        return _resolve(defs.get(str(prop["$ref"]).rsplit("/", 1)[-1], {}), defs)
    branches = [b for b in prop.get("anyOf", ()) if b.get("type") != "null"]
    if len(branches) == 1:
        return _resolve(branches[0], defs)
    return prop


def _kind(prop: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    if "enum" in prop:
        return "select", tuple(str(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "string" and prop.get("format") in _FORMATS:
        return _FORMATS[prop["format"]], ()
    if isinstance(kind, str) and kind in _SIMPLE:
        return _SIMPLE[kind], ()
    return "json", ()


def _initial(kind: str, default: Any) -> str:
    if default is None:
        return ""
    if kind == "json":
        return json.dumps(default, indent=2)
    if kind == "checkbox":
        return "on" if default else ""
    return str(default)


def parsed_form(
    fields: list[FormField], posted: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The data for the model from the browser's strings, and the inputs not even parsable.

    An empty input is left out, as a browser leaves out an unfilled field: the model's
    default applies, or it names the field required. A number that is not one is passed
    on as typed, for the model to name the problem.
    """
    data: dict[str, Any] = {}
    bad: dict[str, str] = {}
    for f in fields:
        raw = posted.get(f.name, "")
        if f.kind == "checkbox":
            data[f.name] = bool(raw)
            continue
        if raw.strip() == "":
            continue
        if f.kind == "json":
            try:
                data[f.name] = json.loads(raw)
            except ValueError as exc:
                bad[f.name] = f"not valid JSON ({exc})"
        elif f.kind in ("integer", "number"):
            data[f.name] = _number(raw.strip(), f.kind)
        else:
            data[f.name] = raw
    return data, bad


def _number(raw: str, kind: str) -> Any:
    try:
        return int(raw) if kind == "integer" else float(raw)
    except ValueError:
        return raw


def field_errors(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with ``data`` for ``model``, by top-level field ("" for the whole)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        out: dict[str, str] = {}
        for e in exc.errors():
            loc = e["loc"]
            field = str(loc[0]) if loc else ""
            inner = ".".join(str(p) for p in loc[1:])
            message = f"{inner}: {e['msg']}" if inner else str(e["msg"])
            out[field] = f"{out[field]}; {message}" if field in out else message
        return out
    return {}
