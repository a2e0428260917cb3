"""A saga definition drawn as inline SVG, an instance's progress on it (pure).

Stages top to bottom; a group's members side by side; a choice's branches side by side,
the branch taken marked; waits, delays, tasks and child sagas each with a shape and a
label of their own; every step coloured by its status, the current one (running or
compensating) highlighted with the class ``current``. No script and no style sheet: the
colours are SVG presentation attributes, which the console's Content-Security-Policy
allows.

Example::

    svg = saga_svg(onboarding, state)   # '<svg class="saga-diagram" ...>...</svg>'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from sagas.children import SubSaga
from sagas.choice import Choice
from sagas.definition import SagaDefinition
from sagas.stages import Parallel, Stage, steps_of
from sagas.state import SagaState, StepState, StepStatus
from sagas.step import Step
from sagas.task_stage import Task
from sagas.waits import Delay, Wait

__all__ = ["saga_svg"]

_W, _H, _GAP, _ROW_GAP, _PAD, _LABEL = 190, 46, 16, 30, 20, 18
#: status -> (fill, stroke)
_COLOURS = {
    StepStatus.PENDING: ("#f9fafb", "#9ca3af"),
    StepStatus.SKIPPED: ("#f3f4f6", "#d1d5db"),
    StepStatus.RUNNING: ("#fde68a", "#b45309"),
    StepStatus.COMPLETED: ("#bbf7d0", "#15803d"),
    StepStatus.FAILED: ("#fecaca", "#b91c1c"),
    StepStatus.ABANDONED: ("#e5e7eb", "#6b7280"),
    StepStatus.COMPENSATING: ("#fde68a", "#b45309"),
    StepStatus.COMPENSATED: ("#bfdbfe", "#1d4ed8"),
}
_CURRENT = (StepStatus.RUNNING, StepStatus.COMPENSATING)


@dataclass(frozen=True)
class _Box:
    x: int
    y: int
    member: Step | Wait | Delay | Task | SubSaga


def _kind(m: Step | Wait | Delay | Task | SubSaga) -> tuple[str, str, int, str]:
    """(kind, second label line, corner radius, dash pattern) of a member."""
    if isinstance(m, Wait):
        return "wait", "wait for " + " | ".join(t.__name__ for t in m.event), 23, ""
    if isinstance(m, Delay):
        return "delay", f"delay until {m.until.__name__}", 23, "6 3"
    if isinstance(m, Task):
        return "task", f"task: form {m.form.__name__}", 4, "2 2"
    if isinstance(m, SubSaga):
        return "child", f"child saga {m.saga}", 10, "10 3 2 3"
    return "step", m.command.__name__, 4, ""


def _member_svg(box: _Box, steps: dict[str, StepState]) -> str:
    m = box.member
    state = steps.get(m.name)
    status = state.status if state is not None else StepStatus.PENDING
    fill, stroke = _COLOURS[status]
    kind, label, radius, dash = _kind(m)
    classes = f"step kind-{kind} status-{status.value}"
    width = 1.5
    if status in _CURRENT:
        classes += " current"
        width = 4
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    cx = box.x + _W // 2
    return (
        f'<g class="{classes}" id="step-{escape(m.name)}">'
        f"<title>{escape(m.name)}: {kind}, {status.value}</title>"
        f'<rect x="{box.x}" y="{box.y}" width="{_W}" height="{_H}" rx="{radius}" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dashed}/>'
        f'<text x="{cx}" y="{box.y + 19}" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{escape(m.name)}</text>'
        f'<text x="{cx}" y="{box.y + 36}" text-anchor="middle" font-size="11">'
        f"{escape(_clip(label))}</text></g>"
    )


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Canvas:
    """Where the next row goes, and the SVG drawn so far."""

    def __init__(self, state: SagaState) -> None:
        self.y = _PAD
        self.width = 2 * _PAD + _W
        self.parts: list[str] = []
        self.state = state

    def arrow(self) -> None:
        self.parts.append(f'<line class="edge" x1="@C" y1="{self.y}" x2="@C" '
                          f'y2="{self.y + _ROW_GAP - 4}" stroke="#6b7280" '
                          'marker-end="url(#arrow)"/>')  # fmt: skip
        self.y += _ROW_GAP

    def node(self, text: str, css: str, fill: str) -> None:
        self.parts.append(
            f'<g class="{css}"><rect x="@L" y="{self.y}" width="{_W}" height="{_H - 14}" '
            f'rx="16" fill="{fill}" stroke="#374151"/><text x="@C" y="{self.y + 21}" '
            f'text-anchor="middle" font-size="12">{escape(_clip(text, 34))}</text></g>'
        )
        self.y += _H - 14

    def members(self, members: Sequence[Step | Wait | Delay | Task | SubSaga], x: int) -> int:
        """One row of ``members`` side by side from ``x``; its width."""
        for i, m in enumerate(members):
            box = _Box(x + i * (_W + _GAP), self.y, m)
            self.parts.append(_member_svg(box, self.state.steps))
        return len(members) * (_W + _GAP) - _GAP

    def stage(self, stage: Stage) -> None:
        if isinstance(stage, Choice):
            self.choice(stage)
            return
        label = ""
        if isinstance(stage, Parallel):
            label = f"parallel {stage.name}"
        if stage.when is not None:
            label = (label + " " if label else "") + f"if {stage.when.__name__}"
        if label:
            self.parts.append(f'<text x="{_PAD}" y="{self.y + 12}" font-size="11" '
                              f'fill="#4b5563">{escape(label)}</text>')  # fmt: skip
            self.y += _LABEL
        width = self.members(list(steps_of(stage)), _PAD)
        self.width = max(self.width, 2 * _PAD + width)
        self.y += _H

    def choice(self, choice: Choice) -> None:
        taken = self.state.branches.get(choice.name)
        by = f"choice {choice.name}: by {choice.by.__name__}"
        self.parts.append(f'<text x="{_PAD}" y="{self.y + 12}" font-size="11" '
                          f'fill="#4b5563">{escape(by)}</text>')  # fmt: skip
        self.y += _LABEL
        top, x, bottom = self.y, _PAD, self.y
        for key, path in choice.paths():
            is_taken = taken is not None and (
                key == taken or (key is None and taken not in choice.branches)
            )
            name = key if key is not None else "default"
            members = [m for stage in path for m in steps_of(stage)]
            css = "branch taken" if is_taken else "branch"
            mark = " (taken)" if is_taken else ""
            self.parts.append(f'<g class="{css}" id="branch-{escape(choice.name)}-'
                              f'{escape(name)}">')  # fmt: skip
            self.parts.append(f'<text x="{x}" y="{top + 12}" font-size="11" '
                              f'font-weight="{"bold" if is_taken else "normal"}">'
                              f"{escape(name + mark)}</text>")  # fmt: skip
            y = top + _LABEL
            for m in members or []:
                self.parts.append(_member_svg(_Box(x, y, m), self.state.steps))
                y += _H + _GAP // 2
            height = max(y - top, _LABEL + _H // 2)
            stroke = "#b45309" if is_taken else "#d1d5db"
            self.parts.append(
                f'<rect x="{x - 6}" y="{top - 4}" width="{_W + 12}" height="{height + 4}" '
                f'rx="6" fill="none" stroke="{stroke}" stroke-width="{3 if is_taken else 1}" '
                f'stroke-dasharray="{"" if is_taken else "4 3"}"/></g>'
            )
            bottom = max(bottom, top + height)
            x += _W + 2 * _GAP
        self.width = max(self.width, x - 2 * _GAP + _PAD)
        self.y = bottom


def saga_svg(definition: SagaDefinition, state: SagaState) -> str:
    """``definition`` as an SVG diagram, ``state``'s progress on it (steps coloured by
    status, the current one with the class ``current``, the branches taken marked)."""
    canvas = _Canvas(state)
    canvas.node(f"trigger {definition.trigger.__name__}", "start", "#e0e7ff")
    for stage in definition.stages:
        canvas.arrow()
        canvas.stage(stage)
    canvas.arrow()
    end = state.status.value if state.terminal else "…"
    fill = "#fde68a" if state.terminal else "#f9fafb"
    canvas.node(end, "end current" if state.terminal else "end", fill)
    canvas.y += _PAD
    centre, left = _PAD + _W // 2, _PAD  # the start, the end and the arrows: left column
    body = "".join(canvas.parts).replace('"@C"', f'"{centre}"').replace('"@L"', f'"{left}"')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="saga-diagram" role="img" '
        f'aria-label="saga {escape(definition.name)}" width="{canvas.width}" '
        f'height="{canvas.y}" viewBox="0 0 {canvas.width} {canvas.y}" '
        f'font-family="sans-serif">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/>'
        f"</marker></defs>{body}</svg>"
    )
