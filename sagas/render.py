"""A saga definition as a Mermaid state diagram (``bus sagas graph NAME``).

Steps are states labelled with their command; a ``when=`` becomes a choice labelled by the
predicate's name; a :class:`~sagas.definition.Choice` is a choice state with an edge per
branch labelled ``by = key`` (``(taken)`` on the one an instance took, given its branches); a parallel group is a composite state with one region per member; a wait
is a state labelled with its event and deadline. Failure edges lead into the compensation
chain (``undo_<step>``), drawn in reverse declaration order - at run time compensations run
in reverse order of *completion*, which differs only inside a parallel group.

Example::

    print(render_mermaid(onboarding))   # paste into a ```mermaid block
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sagas.definition import (
    Choice,
    Delay,
    Parallel,
    SagaDefinition,
    Stage,
    Step,
    SubSaga,
    Task,
    Wait,
)

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
    out = [f"{indent}{s.name} : {s.command.__name__} ({retry})"]
    if s.not_before is not None:
        out.append(f"{indent}{s.name} : not before {s.not_before.__name__}")
    if s.rerun_on is not None:
        out.append(f"{indent}{s.name} : re-run (undone, sent again) on {_label(s.rerun_on)}")
    return out


def _task_lines(t: Task, nxt: str) -> list[str]:
    """A task: who does it, the form that completes it, when it is overdue."""
    who = t.assignee if isinstance(t.assignee, str) else getattr(t.assignee, "__name__", "")
    who = "" if not who or who.startswith("<") else f" for {who}"  # a lambda has no name
    due = _duration(t.deadline) if isinstance(t.deadline, timedelta) else t.deadline.__name__
    out = [f"    {t.name} : task{who}: form {t.form.__name__}"]
    then = f", sends {t.escalate.__name__}" if t.escalate is not None else ""
    out.append(f"    {t.name} : overdue after {due}{then}")
    out.append(f"    {t.name} --> {nxt} : {t.form.__name__} submitted")
    return out


def _label(fn: object) -> str:
    name = getattr(fn, "__name__", "<lambda>")
    return "an update" if name == "<lambda>" else name


def _entry(stage: Stage) -> str:
    return f"if_{stage.name}" if stage.when is not None else stage.name


def render_mermaid(definition: SagaDefinition, *, taken: Mapping[str, str] | None = None) -> str:
    """The Mermaid ``stateDiagram-v2`` source of ``definition`` (no trailing newline).

    ``taken``: an instance's ``SagaState.branches`` (choice -> branch key); the edge of each
    branch it took is labelled ``(taken)``.
    """
    d = definition
    out = [
        "stateDiagram-v2",
        f"    %% saga {d.name} v{d.version}: trigger {d.trigger.__name__}, "
        f"correlation key {d.correlation_key}",
    ]
    stages = list(d.stages)
    chain = _UndoChain.of(d)
    # Choices are declared before any edge names them, or Mermaid draws plain states.
    for stage in _all_stages(stages):
        if stage.when is not None:
            out.append(f"    state if_{stage.name} <<choice>>")
        if isinstance(stage, Choice):
            out.append(f"    state {stage.name} <<choice>>")
    out.append(f"    [*] --> {_entry(stages[0])} : {d.trigger.__name__}")
    out += _sequence_lines(stages, "completed", chain, taken or {})
    compensable = [s for s in d.iter_steps() if isinstance(s, Step | Task) and s.compensation]
    for s in reversed(compensable):
        assert s.compensation is not None
        out.append(f"    undo_{s.name} : {s.compensation.command.__name__}")
        for target in chain.targets(chain.before[s.name], end="compensated"):
            out.append(f"    undo_{s.name} --> {target} : {_types(s.compensation.success)}")
        out.append(f"    undo_{s.name} --> needs_attention : keeps failing")
    if compensable:
        out.append("    needs_attention : retry re-sends the stuck compensation")
    cancel = _types(list(d.cancel_on)) if d.cancel_on else "Cancel"
    out.append("    note right of completed")
    out.append(f"        {cancel} while running: in-flight steps settle,")
    out.append("        then completed steps are undone, then cancelled")
    if d.deadline is not None:
        dl = d.deadline
        then = f"sends {dl.escalate.__name__}, " if dl.escalate else ""
        then += "compensates" if dl.compensate else "goes on"
        out.append(f"        late after {dl.at.__name__}: {then}")
    for u in d.on_update:
        out.append(
            f"        {_types(list(u.event))} while running: {u.apply.__name__} changes the data,"
        )
        out.append("        waiting delays and held steps re-planned")
    out.append("    end note")
    for end in ("completed", "compensated", "failed", "cancelled"):
        out.append(f"    {end} --> [*]")
    return "\n".join(out)


def _sequence_lines(
    seq: Sequence[Stage], after: str, chain: _UndoChain, taken: Mapping[str, str]
) -> list[str]:
    """The states and edges of stages run in order; the last one leads to ``after``."""
    out: list[str] = []
    for i, stage in enumerate(seq):
        nxt = _entry(seq[i + 1]) if i + 1 < len(seq) else after
        if stage.when is not None:
            choice = f"if_{stage.name}"
            out.append(f"    {choice} --> {stage.name} : {stage.when.__name__}")
            out.append(f"    {choice} --> {nxt} : otherwise")
        if isinstance(stage, Choice):
            out += _choice_lines(stage, nxt, chain, taken)
        elif isinstance(stage, Step):
            out += _step_lines(stage, "    ")
            out.append(f"    {stage.name} --> {nxt} : {_types(stage.success)}")
            undo = chain.targets(chain.before[stage.name])
            if stage.compensation is None:
                out += [f"    {stage.name} --> {t} : fails or times out" for t in undo]
            else:  # out of attempts it may have taken effect: undone too (uncertain)
                out += [f"    {stage.name} --> {t} : fails" for t in undo]
                out.append(f"    {stage.name} --> undo_{stage.name} : times out")
        elif isinstance(stage, Task):
            out += _task_lines(stage, nxt)
        elif isinstance(stage, Delay):
            out.append(f"    {stage.name} : wait until {stage.until.__name__}")
            out.append(f"    {stage.name} --> {nxt} : time reached")
        elif isinstance(stage, Wait):
            out.append(f"    {stage.name} : wait for {_types(stage.event)}")
            out.append(f"    {stage.name} : deadline {_duration(stage.deadline)}")
            out.append(f"    {stage.name} --> {nxt} : {_types(stage.event)}")
            why = f"{_types(stage.rejected)} or deadline" if stage.rejected else "deadline"
            out += [
                f"    {stage.name} --> {t} : {why}" for t in chain.targets(chain.before[stage.name])
            ]
        elif isinstance(stage, SubSaga):
            out.append(f"    {stage.name} : child saga {stage.saga}, awaited to its end")
            out.append(f"    {stage.name} --> {nxt} : child completed")
            out += [
                f"    {stage.name} --> {t} : child did not complete"
                for t in chain.targets(chain.before[stage.name])
            ]
        else:
            out += _group_lines(stage)
            out.append(f"    {stage.name} --> {nxt} : all succeeded")
            out += [
                f"    {stage.name} --> {t} : one failed"
                for t in chain.targets(chain.after[stage.name])
            ]
    return out


def _choice_lines(c: Choice, nxt: str, chain: _UndoChain, taken: Mapping[str, str]) -> list[str]:
    """A choice state with an edge per branch (``by = key``, default ``otherwise``), then
    each path, leading to ``nxt``."""
    out: list[str] = []
    chosen = taken.get(c.name)
    took_default = chosen is not None and chosen not in c.branches
    for key, path in c.paths():
        label = "otherwise" if key is None else f"{c.by.__name__} = {key}"
        if (key is not None and key == chosen) or (key is None and took_default):
            label += " (taken)"
        out.append(f"    {c.name} --> {_entry(path[0]) if path else nxt} : {label}")
    for _, path in c.paths():
        out += _sequence_lines(path, nxt, chain, taken)
    return out


@dataclass(frozen=True, slots=True)
class _UndoChain:
    """Which compensations may run right before each point of the flow, along every path:
    ``before[step]`` the latest compensable steps (None: none) before a step or wait,
    ``after[group]`` those after a group. Run time undoes in reverse order of completion,
    which differs from this declaration order only inside a parallel group."""

    before: dict[str, list[str | None]]
    after: dict[str, list[str | None]]

    @classmethod
    def of(cls, d: SagaDefinition) -> _UndoChain:
        chain = cls({}, {})
        chain.walk(d.stages, [None])
        return chain

    def walk(self, seq: Sequence[Stage], lasts: list[str | None]) -> list[str | None]:
        for stage in seq:
            if isinstance(stage, Choice):
                ends: list[str | None] = list(lasts) if stage.when is not None else []
                for _, path in stage.paths():
                    ends += self.walk(path, list(lasts))
                lasts = list(dict.fromkeys(ends))
                continue
            for m in stage.steps if isinstance(stage, Parallel) else (stage,):
                self.before[m.name] = list(lasts)
                if isinstance(m, Step | Task) and m.compensation is not None:
                    lasts = [m.name]
            self.after[stage.name] = list(lasts)
        return lasts

    @staticmethod
    def targets(lasts: list[str | None], *, end: str = "failed") -> list[str]:
        return [end if n is None else f"undo_{n}" for n in lasts]


def _all_stages(stages: Sequence[Stage]) -> list[Stage]:
    """The stages in drawing order, the stages of every branch included."""
    out: list[Stage] = []
    for stage in stages:
        out.append(stage)
        if isinstance(stage, Choice):
            for _, path in stage.paths():
                out += path
    return out


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
