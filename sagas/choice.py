"""The :class:`Choice` stage: one path among several, picked by a named function of the data.

How a transition takes a path is :mod:`sagas.paths`'s.

Example::

    Choice("payroll", by=payroll_country, branches={"us": [us_payroll]}, default=[manual])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sagas.stage_types import Chooser, Predicate

if TYPE_CHECKING:  # the stage union names Choice: sagas.stages imports this module
    from sagas.stages import PathStage

__all__ = ["Choice"]


@dataclass(frozen=True, slots=True, init=False)
class Choice:
    """One path among several, picked by a named function of the saga data when reached.

    Example::

        def payroll_country(data: Hire) -> str:
            return data.country

        Choice("payroll", by=payroll_country,
               branches={"us": [us_payroll], "de": [de_payroll, de_tax_id]},
               default=[manual_payroll])

    ``by`` returns a branch key; a key not in ``branches`` takes ``default`` (empty: go
    on). The key taken is kept in the state (``SagaState.branches``) and the timeline
    (``branch``); the steps of the other paths are skipped, so compensation undoes exactly
    the path taken, last completed first. A branch holds steps, groups and waits, not
    another choice.
    """

    #: Unique within the definition (with the step names); lowercase ``snake_case``.
    name: str
    #: A *named* function of the saga data returning the branch key (it labels the diagram).
    by: Chooser
    #: Branch key -> the stages of that path, run in order.
    branches: dict[str, tuple[PathStage, ...]]
    #: The path for any other key; empty by default.
    default: tuple[PathStage, ...]
    #: A named predicate on the saga data; False skips every path.
    when: Predicate | None

    def __init__(
        self,
        name: str,
        *,
        by: Chooser,
        branches: dict[str, Sequence[PathStage]],
        default: Sequence[PathStage] = (),
        when: Predicate | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "by", by)
        paths = branches.items() if isinstance(branches, dict) else ()
        object.__setattr__(self, "branches", {k: tuple(v) for k, v in paths})
        object.__setattr__(self, "default", tuple(default))
        object.__setattr__(self, "when", when)

    def path(self, key: str) -> tuple[PathStage, ...]:
        """The stages of branch ``key`` (``default`` for a key without a branch)."""
        return self.branches.get(key, self.default)

    def paths(self) -> Iterator[tuple[str | None, tuple[PathStage, ...]]]:
        """(key, stages) of every branch, then (None, default)."""
        yield from self.branches.items()
        yield None, self.default
