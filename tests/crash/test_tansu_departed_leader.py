"""Pins the Tansu fault that stalled the rebalance/zombie crash test: a leader that leaves
a group while it is forming stays its leader.

Raw group requests (the ones aiokafka's coordinator sends), in an order no timing can
change: A joins and leads, the group is Stable; B asks to join (the group is forming
again, A still its leader); A leaves; B joins. Kafka would make B the leader. Tansu names
A, who is gone, so B is a follower, its SyncGroup gets no assignment, and the group has
no member that could ever send one. A member joining under a new id changes nothing:
bus cannot work around it, so ``test_rebalance_zombie`` removes members only from a
Stable group (docs/architecture.md, "Tansu strands a group whose leader leaves while it
forms").

If this test fails on a newer Tansu, the fault is fixed: drop ``group_settled`` from the
rebalance test and this paragraph's counterpart in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import MemberIdRequired, NoError, RebalanceInProgressError
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest

from bus.devbroker import DevBroker
from tests.conftest import unique

pytestmark = [pytest.mark.kafka]

SESSION_MS = 3000
METADATA = ConsumerProtocol.METADATA(0, ["t"], b"").encode()
ASSIGNMENT = ConsumerProtocol.ASSIGNMENT(0, [("t", [0])], b"").encode()


class Member:
    """One group member speaking the group protocol itself (no aiokafka coordinator)."""

    def __init__(self, client: AIOKafkaClient, node: int, group: str) -> None:
        self.client, self.node, self.group = client, node, group
        self.id = ""
        self.generation = -1

    async def ask_to_join(self) -> None:
        """The first JoinGroup of a new member: Tansu answers MEMBER_ID_REQUIRED with its id."""
        response = await self._join()
        assert response.error_code == MemberIdRequired.errno, response
        self.id = response.member_id

    async def join(self) -> Any:
        response = await self._join()
        assert response.error_code == NoError.errno, response
        self.generation = response.generation_id
        return response

    async def sync(self, assignments: list[tuple[str, bytes]]) -> Any:
        request = SyncGroupRequest(self.group, self.generation, self.id, None, assignments)
        return await self.client.send(self.node, request)

    async def leave(self) -> None:
        response = await self.client.send(self.node, LeaveGroupRequest(self.group, self.id))
        assert response.error_code == NoError.errno, response

    async def _join(self) -> Any:
        request = JoinGroupRequest(
            self.group, SESSION_MS, SESSION_MS, self.id, None, "consumer",
            [("roundrobin", METADATA)],
        )  # fmt: skip
        return await self.client.send(self.node, request)


@pytest.fixture
async def client(kafka_broker: DevBroker) -> AsyncIterator[AIOKafkaClient]:
    c = AIOKafkaClient(bootstrap_servers=kafka_broker.bootstrap_servers, request_timeout_ms=30000)
    await c.bootstrap()
    yield c
    await c.close()


async def test_tansu_keeps_a_leader_that_left_a_forming_group_as_its_leader(
    client: AIOKafkaClient,
) -> None:
    group = unique("departed-leader")
    node = await client.coordinator_lookup(CoordinationType.GROUP, group)
    a, b, c = (Member(client, node, group) for _ in range(3))
    await a.ask_to_join()
    assert (await a.join()).leader_id == a.id
    assert (await a.sync([(a.id, ASSIGNMENT)])).error_code == NoError.errno  # Stable, A leads

    await b.ask_to_join()  # the group forms again; A is still the leader
    await a.leave()  # A leaves the forming group
    joined = await b.join()

    assert joined.leader_id == a.id != b.id  # Kafka: B, the only member, leads
    synced = await b.sync([])
    assert synced.error_code == RebalanceInProgressError.errno, synced  # no assignment
    await c.ask_to_join()  # a member under a new id does not change the leader either
    assert (await c.join()).leader_id == a.id


async def test_tansu_lets_the_next_member_lead_once_the_leader_left_a_stable_group(
    client: AIOKafkaClient,
) -> None:
    """Why removing members only from a Stable group avoids the fault."""
    group = unique("departed-leader")
    node = await client.coordinator_lookup(CoordinationType.GROUP, group)
    a, b = (Member(client, node, group) for _ in range(2))
    await a.ask_to_join()
    await a.join()
    assert (await a.sync([(a.id, ASSIGNMENT)])).error_code == NoError.errno  # Stable

    await a.leave()  # A leaves the Stable group
    await b.ask_to_join()
    joined = await b.join()

    assert joined.leader_id == b.id
    assert (await b.sync([(b.id, ASSIGNMENT)])).error_code == NoError.errno
