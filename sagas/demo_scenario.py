"""The demo's scenario: who is hired and who leaves, and how the simulated world and the
people in it (managers, HR) treat them. Read from ``sagas/demo_hires.json``.

Example::

    scenario = load_scenario(DEFAULT_SCENARIO)
    scenario.expected("onboarding:e-2003")   # SagaStatus.COMPENSATED (payroll refuses)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

import orjson

from bus import ConfigError
from handlers.hr.contracts import EmployeeHired, EmployeeLeft
from sagas.state import SagaStatus

__all__ = ["DEFAULT_SCENARIO", "Scenario", "load_scenario"]

T = TypeVar("T")

DEFAULT_SCENARIO = Path(__file__).with_name("demo_hires.json")


@dataclass(frozen=True)
class Scenario:
    """Hires to onboard, leavers to offboard, and how the simulated world treats them."""

    hires: tuple[EmployeeHired, ...]
    #: employee id -> approver, sent when the saga waits for approval.
    approvals: dict[str, str] = field(default_factory=dict)
    #: employee id -> why payroll refuses the record.
    payroll_rejects: dict[str, str] = field(default_factory=dict)
    #: employee id -> why the directory refuses the account.
    identity_refuses: dict[str, str] = field(default_factory=dict)
    #: employee id -> approver, sent with the hire: before the saga waits (kept early).
    early_approvals: dict[str, str] = field(default_factory=dict)
    #: employee id -> the desk their manager assigns (the ``assign_desk`` task).
    desks: dict[str, str] = field(default_factory=dict)
    #: People who worked here before the demo and leave during it.
    leavers: tuple[EmployeeLeft, ...] = ()
    #: employee id -> what the manager gets back (the ``recover_equipment`` task).
    equipment: dict[str, list[str]] = field(default_factory=dict)
    #: employee id -> the start date HR moves it to while the saga waits for the old one.
    moves: dict[str, date] = field(default_factory=dict)

    def with_suffix(self, suffix: str) -> Scenario:
        """The same scenario with ``suffix`` appended to every employee id."""
        if not suffix:
            return self
        ids = _Suffixed(suffix)
        return Scenario(
            tuple(h.model_copy(update={"employee_id": h.employee_id + suffix}) for h in self.hires),
            ids(self.approvals),
            ids(self.payroll_rejects),
            ids(self.identity_refuses),
            ids(self.early_approvals),
            ids(self.desks),
            tuple(
                p.model_copy(update={"employee_id": p.employee_id + suffix}) for p in self.leavers
            ),
            ids(self.equipment),
            ids(self.moves),
        )

    def expected(self, saga_id: str) -> SagaStatus:
        """How the saga ``name:employee id`` should end."""
        name, _, employee_id = saga_id.partition(":")
        if name == "onboarding" and employee_id in self.identity_refuses:
            return SagaStatus.FAILED
        if name == "onboarding" and employee_id in self.payroll_rejects:
            return SagaStatus.COMPENSATED
        return SagaStatus.COMPLETED


@dataclass(frozen=True)
class _Suffixed:
    suffix: str

    def __call__(self, by_id: dict[str, T]) -> dict[str, T]:
        return {k + self.suffix: v for k, v in by_id.items()}


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file (see ``sagas/demo_hires.json``); errors name the file and field."""
    try:
        raw = orjson.loads(path.read_bytes())
        return Scenario(
            tuple(EmployeeHired.model_validate(h) for h in raw["hires"]),
            dict(raw.get("approvals", {})),
            _reasons(raw.get("payroll_rejects", {}), "payroll refuses the record"),
            _reasons(raw.get("identity_refuses", {}), "the directory refuses the account"),
            dict(raw.get("early_approvals", {})),
            dict(raw.get("desks", {})),
            tuple(EmployeeLeft.model_validate(p) for p in raw.get("leavers", [])),
            {str(k): list(v) for k, v in raw.get("equipment", {}).items()},
            {str(k): date.fromisoformat(v) for k, v in raw.get("moves", {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the demo scenario {path}: {exc}") from exc


def _reasons(raw: object, default: str) -> dict[str, str]:
    """``{"e-1": "why"}``, or a list of ids (each with ``default`` as the reason)."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return dict.fromkeys(map(str, raw), default)
    raise TypeError(f"expected a list of employee ids or an object of reasons, not {raw!r}")
