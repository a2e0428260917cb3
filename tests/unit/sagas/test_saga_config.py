"""sagas.config: the saga settings keep their BUS_* variables; bad values are refused at once."""

from __future__ import annotations

import pytest

from bus import BusConfig, ConfigError
from sagas.config import SagaConfig


def test_the_saga_settings_come_from_their_bus_variables_and_a_flag_wins() -> None:
    env = {
        "BUS_SAGA_STORE": "postgresql://bus@db/bus",
        "BUS_SAGA_RETENTION_S": "86400",
        "BUS_FAULT_POINT": "before_commit",
    }
    config = SagaConfig.from_env(env)
    assert config == SagaConfig(
        store="postgresql://bus@db/bus", retention_s=86400.0, fault_point="before_commit"
    )
    assert SagaConfig.from_env(env, store="memory").store == "memory"
    assert SagaConfig.from_env({}) == SagaConfig(
        store="sqlite:sagas.db", retention_s=0.0, fault_point=None
    )


def test_bad_saga_settings_are_refused_with_every_problem_and_no_value() -> None:
    with pytest.raises(ConfigError, match="BUS_SAGA_RETENTION_S: expected a number"):
        SagaConfig.from_env({"BUS_SAGA_RETENTION_S": "s3cret"})
    with pytest.raises(ConfigError) as refused:
        SagaConfig.from_env({"BUS_SAGA_RETENTION_S": "-1", "BUS_FAULT_POINT": "nowhere"})
    assert "retention_s must be 0" in str(refused.value)
    assert "fault point 'nowhere' is unknown" in str(refused.value)


def test_bus_config_knows_nothing_of_sagas() -> None:
    names = set(BusConfig.__dataclass_fields__)
    assert not {n for n in names if "saga" in n or "fault" in n}
