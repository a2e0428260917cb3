"""docs/configuration.md is docs/gen_config.py's output, and names the variables really read."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bus import BusConfig
from bus.config import KafkaConfig
from sagas.config import SagaConfig

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config", ROOT / "docs" / "gen_config.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_configuration_reference_is_the_generators_output() -> None:
    gen = generator()
    checked_in = (ROOT / "docs" / "configuration.md").read_text()
    assert checked_in == gen.render(), (
        f"docs/configuration.md is out of date: run `{gen.REGENERATE}` and commit it"
    )


def sample(value: object) -> str:
    """A valid setting other than ``value``, as text in the environment."""
    if isinstance(value, bool):
        return "false" if value else "true"
    if isinstance(value, int | float):
        return str(value + 7)
    return "x"


@pytest.mark.parametrize("cls", [BusConfig, KafkaConfig])
def test_every_documented_bus_variable_sets_its_field(cls: type[Any]) -> None:
    gen = generator()
    [section] = [s for s in gen.SECTIONS if s.cls is cls]
    for field in fields(cls):
        if not isinstance(field.default, bool | int | float):
            continue  # choices and text: their own validation tests cover them
        variable = section.variable(field.name)
        config = cls.from_env({variable: sample(field.default)})
        assert getattr(config, field.name) != field.default, f"{variable} does not set it"


def test_every_documented_saga_variable_sets_its_field() -> None:
    gen = generator()
    [section] = [s for s in gen.SECTIONS if s.cls is SagaConfig]
    values = {
        "store": "memory",
        "retention_s": "86400",
        "store_lock_timeout_s": "1",
        "store_statement_timeout_s": "2",
        "store_idle_in_transaction_timeout_s": "3",
        "fault_point": "before_commit",
    }
    for name, text in values.items():
        config = SagaConfig.from_env({section.variable(name): text})
        assert getattr(config, name) != getattr(SagaConfig(), name), section.variable(name)
    for variable in section.variable("store_password").split("` or `"):
        assert variable in ("BUS_SAGA_STORE_PASSWORD", "BUS_SAGA_STORE_PASSWORD_FILE")
    assert SagaConfig.from_env({"BUS_SAGA_STORE_PASSWORD": "s"}).store_password is not None


def test_worker_and_http_settings_are_set_by_the_variables_the_reference_names() -> None:
    gen = generator()
    for mapping, settings in (
        (gen.WORKER_VARIABLES, lambda c: c.worker_settings()),
        (gen.HTTP_VARIABLES, lambda c: c.http_settings()),
    ):
        for field, variable in mapping.items():
            default = getattr(settings(BusConfig()), field)
            text = "latest" if field == "offset_reset" else sample(default)
            changed = settings(BusConfig.from_env({variable: text}))
            assert getattr(changed, field) != default, f"{variable} does not set {field}"
