"""The path a saga takes through its choices, inside a transition: the current stage, and
a :class:`~sagas.choice.Choice` decided when reached.

The state keeps the top-level stage index (``SagaState.stage``), the index within the path
a choice took (``substage``) and the key taken (``branches``); the steps of the paths not
taken are skipped, so they are never run nor undone. Pure: no I/O, no clock (``now`` is
given); the flow around it is :class:`sagas.run.Run`'s.

Example::

    stage = current_stage(run)       # None past the last stage
"""

from __future__ import annotations

from bus import ConfigError
from sagas.choice import Choice
from sagas.draft import Draft, members
from sagas.stages import PathStage
from sagas.state import StepStatus

__all__ = ["current_stage", "take_path"]


def current_stage(run: Draft) -> PathStage | None:
    """The stage being run (inside the path a choice took), None past the last one;
    a choice reached is decided here."""
    while run.s.stage < len(run.d.stages):
        top = run.d.stages[run.s.stage]
        if not isinstance(top, Choice):
            return top
        if top.name not in run.s.branches and not take_path(run, top):
            run.s.stage += 1  # its when= is false: every path skipped
            continue
        path = top.path(run.s.branches[top.name])
        if run.s.substage < len(path):
            return path[run.s.substage]
        run.s.stage += 1
        run.s.substage = 0
    return None


def take_path(run: Draft, choice: Choice) -> bool:
    """Take the path ``choice.by`` names (False: ``when=`` skipped the choice); the
    steps of every other path are skipped, so they are never run nor undone."""
    skipped = choice.when is not None and not choice.when(run.data)
    if skipped:
        assert choice.when is not None
        run.log("skipped", choice.name, f"{choice.when.__name__} is false")
        taken: tuple[PathStage, ...] = ()
    else:
        key = choice.by(run.data)
        if not isinstance(key, str):
            raise ConfigError(
                f"saga {run.d.name!r}: choice {choice.name!r} by= returned {key!r}, "
                "expected a branch key (str)"
            )
        run.s.branches = {**run.s.branches, choice.name: key}
        run.s.substage = 0
        taken = choice.path(key)
        how = "" if key in choice.branches else ", no such branch: default"
        run.log("branch", choice.name, f"{key} ({choice.by.__name__}{how})")
    on_path = {m.name for stage in taken for m in members(stage)}
    for _, path in choice.paths():
        for stage in path:
            for m in members(stage):
                if m.name not in on_path and run.s.steps[m.name].status == StepStatus.PENDING:
                    run.own(m.name).status = StepStatus.SKIPPED
    return not skipped
