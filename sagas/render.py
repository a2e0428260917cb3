"""A saga definition as a Mermaid state diagram (``bus sagas graph NAME``).

Steps are states labelled with their command; a ``when=`` becomes a choice labelled by the
predicate's name; a parallel group is a composite state with one region per member; a wait
is a state labelled with its event and deadline. Failure edges lead into the compensation
chain (``undo_<step>``), drawn in reverse declaration order - at run time compensations run
in reverse order of *completion*, which differs only inside a parallel group.

Example::

    print(render_mermaid(onboarding))   # paste into a ```mermaid block
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sagas.definition import Parallel, SagaDefinition, Stage, Step, Wait

__all__ = ["render_mermaid"]


def _types(types: Sequence[type]) -> str:
    return " | ".join(t.__name__ for t in types)


def _duration(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _step_lines(s: Step, indent: str) -> list[str]:
    retry = f"timeout {_duration(s.timeout)} x{s.max_attempts}"
    return [f"{indent}{s.name} : {s.command.__name__} ({retry})"]


def _entry(stage: Stage) -> str:
    return f"if_{stage.name}" if stage.when is not None else stage.name


def render_mermaid(definition: SagaDefinition) -> str:
    """The Mermaid ``stateDiagram-v2`` source of ``definition`` (no trailing newline)."""
    d = definition
    out = [
        "stateDiagram-v2",
        f"    %% saga {d.name} v{d.version}: trigger {d.trigger.__name__}, "
        f"correlation key {d.correlation_key}",
    ]
    stages = list(d.stages)
    compensable = [s for s in d.iter_steps() if isinstance(s, Step) and s.compensation]
    order = [s.name for s in d.iter_steps()]
    # Choices are declared before any edge names them, or Mermaid draws plain states.
    out += [f"    state if_{s.name} <<choice>>" for s in stages if s.when is not None]
    out.append(f"    [*] --> {_entry(stages[0])} : {d.trigger.__name__}")

    def undo_target(upto: Stage) -> str:
        """First compensation run when ``upto`` fails: the latest compensable step
        declared up to and including the stage (group members included)."""
        last = order.index(list(_names(upto))[-1])
        before = [s for s in compensable if order.index(s.name) <= last]
        if isinstance(upto, Step) and before and before[-1].name == upto.name:
            before = before[:-1]  # a failed step did not complete: nothing of it to undo
        return f"undo_{before[-1].name}" if before else "failed"

    for i, stage in enumerate(stages):
        nxt = _entry(stages[i + 1]) if i + 1 < len(stages) else "completed"
        if stage.when is not None:
            choice = f"if_{stage.name}"
            out.append(f"    {choice} --> {stage.name} : {stage.when.__name__}")
            out.append(f"    {choice} --> {nxt} : otherwise")
        if isinstance(stage, Step):
            out += _step_lines(stage, "    ")
            out.append(f"    {stage.name} --> {nxt} : {_types(stage.success)}")
            if stage.compensation is None:
                out.append(f"    {stage.name} --> {undo_target(stage)} : fails or times out")
            else:  # out of attempts it may have taken effect: undone too (uncertain)
                out.append(f"    {stage.name} --> {undo_target(stage)} : fails")
                out.append(f"    {stage.name} --> undo_{stage.name} : times out")
        elif isinstance(stage, Wait):
            out.append(f"    {stage.name} : wait for {_types(stage.event)}")
            out.append(f"    {stage.name} : deadline {_duration(stage.deadline)}")
            out.append(f"    {stage.name} --> {nxt} : {_types(stage.event)}")
            why = f"{_types(stage.rejected)} or deadline" if stage.rejected else "deadline"
            out.append(f"    {stage.name} --> {undo_target(stage)} : {why}")
        else:
            out += _group_lines(stage)
            out.append(f"    {stage.name} --> {nxt} : all succeeded")
            out.append(f"    {stage.name} --> {undo_target(stage)} : one failed")
    undo = list(reversed(compensable))
    for j, s in enumerate(undo):
        assert s.compensation is not None
        target = f"undo_{undo[j + 1].name}" if j + 1 < len(undo) else "compensated"
        out.append(f"    undo_{s.name} : {s.compensation.command.__name__}")
        out.append(f"    undo_{s.name} --> {target} : {_types(s.compensation.success)}")
        out.append(f"    undo_{s.name} --> needs_attention : keeps failing")
    if undo:
        out.append("    needs_attention : retry re-sends the stuck compensation")
    cancel = _types(list(d.cancel_on)) if d.cancel_on else "Cancel"
    out.append("    note right of completed")
    out.append(f"        {cancel} while running: in-flight steps settle,")
    out.append("        then completed steps are undone, then cancelled")
    out.append("    end note")
    for end in ("completed", "compensated", "failed", "cancelled"):
        out.append(f"    {end} --> [*]")
    return "\n".join(out)


def _names(stage: Stage) -> list[str]:
    return [m.name for m in stage.steps] if isinstance(stage, Parallel) else [stage.name]


def _group_lines(group: Parallel) -> list[str]:
    out = [f"    state {group.name} {{"]
    for k, m in enumerate(group.steps):
        if k:
            out.append("        --")
        if m.when is not None:
            choice = f"if_{m.name}"
            out.append(f"        state {choice} <<choice>>")
            out.append(f"        [*] --> {choice}")
            out.append(f"        {choice} --> {m.name} : {m.when.__name__}")
            out.append(f"        {choice} --> [*] : otherwise")
        else:
            out.append(f"        [*] --> {m.name}")
        out += _step_lines(m, "        ")
        out.append(f"        {m.name} --> [*] : {_types(m.success)}")
    out.append("    }")
    return out
