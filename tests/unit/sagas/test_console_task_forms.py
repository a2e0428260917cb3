"""The console's task forms: inputs from a model's JSON schema, posted strings back."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from sagas.web.task_forms import field_errors, form_fields, parsed_form


class Size(StrEnum):
    S = "s"
    L = "l"


class Address(BaseModel):
    street: str


class Everything(BaseModel):
    name: str = Field(description="who")
    count: int
    ratio: float = 0.5
    on: date
    at: datetime | None = None
    ok: bool = True
    size: Size = Size.L
    maybe_size: Size | None = None
    address: Address
    tags: list[str] = []


def test_each_field_gets_the_input_its_schema_calls_for() -> None:
    fields = {f.name: f for f in form_fields(Everything)}
    kinds = {name: f.kind for name, f in fields.items()}
    assert kinds == {
        "name": "text", "count": "integer", "ratio": "number", "on": "date", "at": "datetime",
        "ok": "checkbox", "size": "select", "maybe_size": "select", "address": "json",
        "tags": "json",
    }  # fmt: skip
    assert fields["size"].options == ("s", "l")
    assert fields["size"].initial == "l"
    assert fields["maybe_size"].options == ("s", "l")
    assert not fields["maybe_size"].required
    assert fields["name"].required
    assert fields["name"].description == "who"
    assert (fields["ok"].initial, fields["tags"].initial, fields["ratio"].initial) == (
        "on",
        "[]",
        "0.5",
    )


def test_posted_strings_become_the_models_values_and_defaults_fill_empty_inputs() -> None:
    posted = {"name": "ada", "count": "3", "on": "2026-12-24", "ok": "on", "size": "s",
              "address": '{"street": "Main 1"}', "ratio": "", "maybe_size": ""}  # fmt: skip
    data, bad = parsed_form(form_fields(Everything), posted)
    assert bad == {}
    assert data == {"name": "ada", "count": 3, "on": "2026-12-24", "ok": True, "size": "s",
                    "address": {"street": "Main 1"}}  # fmt: skip
    assert field_errors(Everything, data) == {}
    assert Everything.model_validate(data).ratio == 0.5


def test_bad_values_are_named_by_their_field() -> None:
    posted = {"name": "", "count": "many", "on": "someday", "address": "{not json"}
    data, bad = parsed_form(form_fields(Everything), posted)
    assert set(bad) == {"address"}
    assert "not valid JSON" in bad["address"]
    errors = field_errors(Everything, data)
    assert "valid integer" in errors["count"]
    assert errors["name"] == "Field required"  # an empty input is an unfilled one
    assert "valid date" in errors["on"]
    assert "ok" not in errors  # an unticked checkbox is False, not missing
    nested = field_errors(Everything, {**data, "count": 1, "on": "2026-01-01", "address": {}})
    assert nested["address"].startswith("street: Field required")
