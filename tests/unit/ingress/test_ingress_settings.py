"""The ingress's dedup settings reach the writer they tune."""

from __future__ import annotations

import pytest

from bus import App, Publisher
from bus.config import IngressConfig
from bus.errors import ConfigError
from bus.ingress.service import ingress_server, ingress_setup
from bus.transports.memory import MemoryTransport


async def _linger_s(env: dict[str, str]) -> float:
    config = IngressConfig.from_env(
        {"BUS_INGRESS_ALLOW_ANONYMOUS": "true", "BUS_INGRESS_DEDUP_STORE": "memory", **env}
    )
    setup = ingress_setup([App("settings")], config)
    async with ingress_server(
        setup, config, Publisher(MemoryTransport(), source="bus://settings")
    ) as server:
        assert server.idempotency is not None
        return server.idempotency.linger_s


async def test_the_dedup_linger_is_2_ms_unless_set() -> None:
    assert await _linger_s({}) == 0.002
    assert await _linger_s({"BUS_INGRESS_DEDUP_LINGER_MS": "0"}) == 0.0
    assert await _linger_s({"BUS_INGRESS_DEDUP_LINGER_MS": "0.5"}) == 0.0005


def test_a_negative_dedup_linger_is_refused_naming_its_variable() -> None:
    with pytest.raises(ConfigError, match="BUS_INGRESS_DEDUP_LINGER_MS"):
        IngressConfig.from_env(
            {"BUS_INGRESS_ALLOW_ANONYMOUS": "true", "BUS_INGRESS_DEDUP_LINGER_MS": "-1"}
        )
