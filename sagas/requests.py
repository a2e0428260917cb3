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
from sagas.stores.base import ControlAction, ControlRequest, SagaStore, UnreadableSaga

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
    not running, retrying one that does not need attention; for a quarantined saga
    (:mod:`sagas.quarantine`), anything but a retry of a row that reads again.
    """
    if action not in ("cancel", "retry"):  # a task's completion: sagas.tasks.complete_task
        raise ConfigError(f"unknown request {action!r}: use cancel or retry")
    stored = await store.read(saga_id)
    if stored is None:
        raise ConfigError(f"no saga {saga_id!r} in the store; 'bus sagas list' shows the ids")
    if isinstance(stored, UnreadableSaga):
        raise ConfigError(
            f"saga {saga_id} is quarantined: its stored state cannot be read ({stored.error}). "
            f"Fix its row ('bus sagas show {saga_id}' prints it), then 'bus sagas retry "
            f"{saga_id}' applies the inputs set aside meanwhile"
        )
    if stored.quarantine is not None and action == "cancel":
        raise ConfigError(
            f"saga {saga_id} is quarantined ({stored.quarantine}): 'bus sagas retry "
            f"{saga_id}' first (it applies the inputs set aside meanwhile), then cancel it"
        )
    status = SagaStatus.NEEDS_ATTENTION if stored.quarantine is not None else stored.state.status
    if action == "cancel" and status != SagaStatus.RUNNING:
        raise ConfigError(f"saga {saga_id} is {status.value}: only a running saga can be cancelled")
    if action == "retry" and status != SagaStatus.NEEDS_ATTENTION:
        raise ConfigError(
            f"saga {saga_id} is {status.value}: only a saga in needs_attention can be retried"
        )
    request = ControlRequest(new_id(), saga_id, action, reason, now or utc_now())
    await store.request(request)
    return request
