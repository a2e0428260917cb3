"""The step: send a command built from the saga data, await its reply, undo it if need be.

A :class:`Step` is the stage a system answers; its :class:`Compensation` is the command
that undoes it once completed, when the saga compensates.

Example::

    Step("create_account", command=CreateAccount, success=AccountCreated,
         compensation=Compensation(DeprovisionAccount, success=AccountDeprovisioned))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bus import Command, Event
from sagas.stage_types import Builder, Predicate, Rerun, Schedule, Updater, event_types

__all__ = ["Compensation", "Step"]


@dataclass(frozen=True, slots=True, init=False)
class Compensation:
    """The command that undoes a completed step, and the replies that confirm it.

    Example::

        Compensation(RevokeLicenses, success=LicensesRevoked, timeout=timedelta(minutes=1))

    A failure reply or a timeout re-sends it, up to ``max_attempts`` sends in all; then the
    saga goes to ``needs_attention`` (an operator fixes the cause and calls retry).
    """

    #: The compensation command class.
    command: type[Command]
    #: Builds the command from the saga data; default: the command's fields taken by name
    #: from the saga data.
    build: Builder | None
    #: Reply events meaning "undone".
    success: tuple[type[Event], ...]
    #: Reply events meaning "could not undo" (re-sent like a timeout).
    failure: tuple[type[Event], ...]
    #: How long to wait for a reply before re-sending.
    timeout: timedelta
    #: Sends in all, first included (>= 1).
    max_attempts: int

    def __init__(
        self,
        command: type[Command],
        *,
        success: type[Event] | Sequence[type[Event]],
        failure: type[Event] | Sequence[type[Event]] | None = None,
        build: Builder | None = None,
        timeout: timedelta = timedelta(minutes=1),
        max_attempts: int = 3,
    ) -> None:
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "build", build)
        object.__setattr__(self, "success", event_types(success))
        object.__setattr__(self, "failure", event_types(failure))
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "max_attempts", max_attempts)


@dataclass(frozen=True, slots=True, init=False)
class Step:
    """Send a command built from the saga data; a reply event says how it went.

    Example::

        Step("assign_licenses", command=AssignLicenses, success=LicensesGranted,
             failure=LicenseGrantFailed, update=remember_products,
             compensation=Compensation(RevokeLicenses, success=LicensesRevoked),
             timeout=timedelta(seconds=30), max_attempts=3)

    Re-send policy: no reply within ``timeout`` re-sends the command with a *new* command
    id (attempt n+1; the ids are deterministic from saga id, step and attempt) and the
    first attempt's id as its ``idempotencykey`` (a dedup handler matches it), up to
    ``max_attempts`` sends; then the step has failed and the saga compensates. A timeout
    fires only once the inputs on the topics then are applied (``sagas/fence.py``). A failure
    reply fails the step at once (it is a business answer, not a lost message).
    """

    #: Unique within the definition; lowercase ``snake_case`` (it names diagram states).
    name: str
    #: The command class sent.
    command: type[Command]
    #: Builds the command from the saga data; default: fields taken by name from the data.
    build: Builder | None
    #: Reply events meaning success (at least one).
    success: tuple[type[Event], ...]
    #: Reply events meaning failure.
    failure: tuple[type[Event], ...]
    #: ``(data, reply) -> data``: how a success reply updates the saga data; default none.
    update: Updater | None
    #: How to undo the step once completed; None when nothing needs undoing.
    compensation: Compensation | None
    #: How long to wait for a reply before re-sending.
    timeout: timedelta
    #: Sends in all, first included (>= 1).
    max_attempts: int
    #: A named predicate on the saga data; False skips the step.
    when: Predicate | None
    #: ``(data, now) -> datetime``: the step's command is not sent before then (a timer
    #: holds it, durably); None: sent when the step is reached.
    not_before: Schedule | None
    #: ``(old, new) -> bool``: an update of the saga data (``SagaDefinition.on_update``)
    #: that makes it true re-runs the step if it completed: compensated, then sent again.
    rerun_on: Rerun | None

    def __init__(
        self,
        name: str,
        *,
        command: type[Command],
        success: type[Event] | Sequence[type[Event]],
        failure: type[Event] | Sequence[type[Event]] | None = None,
        build: Builder | None = None,
        update: Updater | None = None,
        compensation: Compensation | None = None,
        timeout: timedelta = timedelta(minutes=1),
        max_attempts: int = 3,
        when: Predicate | None = None,
        not_before: Schedule | None = None,
        rerun_on: Rerun | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "not_before", not_before)
        object.__setattr__(self, "rerun_on", rerun_on)
        object.__setattr__(self, "build", build)
        object.__setattr__(self, "success", event_types(success))
        object.__setattr__(self, "failure", event_types(failure))
        object.__setattr__(self, "update", update)
        object.__setattr__(self, "compensation", compensation)
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "when", when)
