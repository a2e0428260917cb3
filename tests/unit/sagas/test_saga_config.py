"""sagas.config: the saga settings keep their BUS_* variables; bad values are refused at once."""

from __future__ import annotations

import pytest

from bus import BusConfig, ConfigError, PostgresTimeouts
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


def test_the_postgres_store_timeouts_have_bounded_defaults_and_their_own_variables() -> None:
    assert SagaConfig.from_env({}).store_timeouts() == PostgresTimeouts(
        lock_timeout_s=5.0, statement_timeout_s=30.0, idle_in_transaction_timeout_s=60.0
    )
    config = SagaConfig.from_env(
        {
            "BUS_SAGA_STORE_LOCK_TIMEOUT_S": "1.5",
            "BUS_SAGA_STORE_STATEMENT_TIMEOUT_S": "0",
            "BUS_SAGA_STORE_IDLE_IN_TRANSACTION_TIMEOUT_S": "20",
        }
    )
    assert config.store_timeouts().server_settings() == {
        "lock_timeout": "1500",
        "statement_timeout": "0",
        "idle_in_transaction_session_timeout": "20000",
    }


def test_bad_store_timeouts_are_refused_naming_each_variable() -> None:
    with pytest.raises(ConfigError) as refused:
        SagaConfig.from_env(
            {"BUS_SAGA_STORE_LOCK_TIMEOUT_S": "soon", "BUS_SAGA_STORE_STATEMENT_TIMEOUT_S": "x"}
        )
    assert "BUS_SAGA_STORE_LOCK_TIMEOUT_S: expected a number" in str(refused.value)
    assert "BUS_SAGA_STORE_STATEMENT_TIMEOUT_S: expected a number" in str(refused.value)
    with pytest.raises(ConfigError, match="lock_timeout_s must be 0"):
        SagaConfig.from_env({"BUS_SAGA_STORE_LOCK_TIMEOUT_S": "-1"})
