"""Operator requests (``bus sagas cancel/retry``): rows in the store's request table.

The CLI needs only the store, it works the same with one or many coordinator replicas,
and the coordinator deletes the request in the same transaction that carries it out.

Example::

    await request_action(store, "onboarding:e-2003", "retry", reason="payroll fixed")
"""

from __future__ import annotations

from datetime import datetime

from bus import ConfigError, new_id, utc_now
from sagas.state import SagaStatus
from sagas.stores.base import ControlAction, ControlRequest, SagaStore

__all__ = ["request_action"]


async def request_action(
    store: SagaStore,
    saga_id: str,
    action: ControlAction,
    *,
    reason: str,
    now: datetime | None = None,
) -> ControlRequest:
    """Queue ``cancel`` or ``retry`` of ``saga_id`` for the coordinator (``bus sagas ...``).

    Refuses what the coordinator could not do: an unknown saga, cancelling a saga that is
    not running, retrying one that does not need attention.
    """
    stored = await store.load(saga_id)
    if stored is None:
        raise ConfigError(f"no saga {saga_id!r} in the store; 'bus sagas list' shows the ids")
    status = stored.state.status
    if action == "cancel" and status != SagaStatus.RUNNING:
        raise ConfigError(f"saga {saga_id} is {status.value}: only a running saga can be cancelled")
    if action == "retry" and status != SagaStatus.NEEDS_ATTENTION:
        raise ConfigError(
            f"saga {saga_id} is {status.value}: only a saga in needs_attention can be retried"
        )
    request = ControlRequest(new_id(), saga_id, action, reason, now or utc_now())
    await store.request(request)
    return request
