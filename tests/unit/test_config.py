"""Settings: parsed from the environment, validated once, secrets kept out of sight."""

from __future__ import annotations

import pytest

from bus import BusConfig, ConfigError
from bus.config import KafkaConfig, Secret
from bus.transports.kafka import client_options, producer_options


def test_bus_settings_come_from_the_environment_and_flags_win() -> None:
    config = BusConfig.from_env({"BUS_PARTITIONS": "6", "BUS_LOG_JSON": "true"}, partitions=2)
    assert config.partitions == 2
    assert config.log_json is True


def test_every_bad_bus_setting_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        BusConfig.from_env({"BUS_PARTITIONS": "many", "BUS_LOG_JSON": "maybe"})
    assert "BUS_PARTITIONS" in str(err.value)
    assert "BUS_LOG_JSON" in str(err.value)
    with pytest.raises(ConfigError, match="offset_reset"):
        BusConfig.from_env({"BUS_OFFSET_RESET": "middle"})


def test_kafka_settings_come_from_bus_kafka_variables() -> None:
    config = KafkaConfig.from_env(
        {
            "BUS_KAFKA_BOOTSTRAP_SERVERS": "a:9092,b:9093",
            "BUS_KAFKA_LINGER_MS": "20",
            "BUS_KAFKA_COMPRESSION": "gzip",
            "BUS_KAFKA_ENABLE_IDEMPOTENCE": "yes",
        }
    )
    assert config.bootstrap_servers == "a:9092,b:9093"
    assert config.linger_ms == 20
    assert config.compression == "gzip"
    assert config.enable_idempotence is True


def test_producer_settings_reach_aiokafka() -> None:
    config = KafkaConfig.from_env(
        {},
        acks="1",
        linger_ms=7,
        max_batch_bytes=1000,
        max_request_bytes=5000,
        compression="gzip",
        enable_idempotence=True,
    )
    options = producer_options(config)
    assert options["acks"] == 1
    assert options["linger_ms"] == 7
    assert options["max_batch_size"] == 1000
    assert options["max_request_size"] == 5000
    assert options["compression_type"] == "gzip"
    assert options["enable_idempotence"] is True
    assert producer_options(KafkaConfig())["compression_type"] is None
    assert "transactional_id" not in producer_options(KafkaConfig())


def test_a_transactional_id_is_refused_naming_the_dedup_store_instead() -> None:
    # nothing begins a transaction, and aiokafka refuses any send outside one: the
    # setting would break all publishing, so it is refused at start, not passed on
    with pytest.raises(ConfigError, match=r"transactional_id is not supported") as refused:
        KafkaConfig.from_env({"BUS_KAFKA_TRANSACTIONAL_ID": "tx-1"})
    assert "BUS_KAFKA_TRANSACTIONAL_ID" in str(refused.value)
    assert "dedup store (docs/dedup.md)" in str(refused.value)
    with pytest.raises(ConfigError, match=r"transactional_id is not supported"):
        KafkaConfig(transactional_id="tx-1").validated()


def test_sasl_settings_reach_aiokafka_and_the_password_never_shows() -> None:
    config = KafkaConfig.from_env(
        {"BUS_KAFKA_SASL_PASSWORD": "hunter2"},
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
    )
    options = client_options(config)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "svc"
    assert options["sasl_plain_password"] == "hunter2"
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.sasl_password)


def test_a_bad_value_is_reported_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        KafkaConfig.from_env({"BUS_KAFKA_LINGER_MS": "s3cret-not-a-number"})
    assert "BUS_KAFKA_LINGER_MS" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_every_kafka_setting_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        KafkaConfig.from_env(
            {},
            bootstrap_servers="no-port",
            security_protocol="SASL_SSL",
            heartbeat_interval_ms=20_000,
            ssl_cafile="/does/not/exist.pem",
            ssl_certfile="/x.pem",
        )
    text = str(err.value)
    for expected in (
        "'no-port' must be host:port",
        "sasl_mechanism",
        "sasl_username",
        "heartbeat_interval_ms must be below session_timeout_ms",
        "ssl_cafile",
        "ssl_certfile and ssl_keyfile go together",
    ):
        assert expected in text


def test_request_timeout_must_exceed_the_session_timeout() -> None:
    with pytest.raises(ConfigError, match="request_timeout_ms must exceed"):
        KafkaConfig.from_env({}, session_timeout_ms=10_000, request_timeout_ms=5_000)


def test_secrets_compare_by_value_but_print_masked() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert repr(Secret("a")) == "Secret('********')"


def test_publish_timeout_comes_from_the_environment_and_must_be_positive() -> None:
    assert KafkaConfig.from_env({"BUS_KAFKA_PUBLISH_TIMEOUT_S": "2.5"}).publish_timeout_s == 2.5
    with pytest.raises(ConfigError, match="publish_timeout_s must be positive"):
        KafkaConfig.from_env({"BUS_KAFKA_PUBLISH_TIMEOUT_S": "0"})
