"""The sagas list, a saga's page, and what an operator may do to a saga."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from bus import BusError, ConfigError, build_trace, new_id, read_hops, render_trace
from sagas.render import render_mermaid
from sagas.requests import request_action
from sagas.state import SagaState, SagaStatus, StepStatus
from sagas.stores.base import UnreadableSaga
from sagas.timeline import format_duration, timeline_rows
from sagas.web.context import CONSOLE, Console
from sagas.web.diagram import saga_svg
from sagas.web.pages import operator_session, render, viewer_session
from sagas.web.queries import SagaFilter, decode_cursor, encode_cursor
from sagas.web.task_views import saga_tasks
from sagas.web.waits import answer_record, prefilled, waiting_steps

__all__ = ["AGES", "PAGE_SIZE", "add_routes", "highlighted_mermaid"]

PAGE_SIZE = 50
#: The age filter's choices: started within / more than this long ago.
AGES: dict[str, tuple[str, timedelta]] = {
    "lt1h": ("started < 1 h ago", timedelta(hours=1)),
    "lt1d": ("started < 1 day ago", timedelta(days=1)),
    "gt1h": ("started > 1 h ago", timedelta(hours=1)),
    "gt1d": ("started > 1 day ago", timedelta(days=1)),
    "gt7d": ("started > 7 days ago", timedelta(days=7)),
}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sagas", sagas_list)
    router.add_get("/sagas/{saga_id}", saga_page)
    router.add_get("/sagas/{saga_id}/trace", saga_trace)
    router.add_post("/sagas/{saga_id}/retry", saga_action)
    router.add_post("/sagas/{saga_id}/cancel", saga_action)
    router.add_post("/sagas/{saga_id}/answer", saga_answer)


def _filter(console: Console, query: Any) -> SagaFilter:
    age = AGES.get(query.get("age", ""))
    now = console.now()
    return SagaFilter(
        name=query.get("name") or None,
        status=query.get("status") or None,
        started_after=now - age[1] if age and query["age"].startswith("lt") else None,
        started_before=now - age[1] if age and query["age"].startswith("gt") else None,
        search=query.get("q") or None,
        names=tuple(console.definitions),
    )


async def sagas_list(request: web.Request) -> web.StreamResponse:
    """Newest first, filtered, a keyset page at a time (``?after=`` the cursor)."""
    viewer_session(request)
    console = request.app[CONSOLE]
    after = decode_cursor(request.query.get("after"))
    page = await console.queries.page(_filter(console, request.query), after=after, limit=PAGE_SIZE)
    kept = {k: v for k, v in request.query.items() if k in ("name", "status", "age", "q") and v}
    next_query = None
    if page.next is not None:
        next_query = urlencode({**kept, "after": encode_cursor(page.next)})
    template = "saga_rows.html" if request.query.get("fragment") else "sagas.html"
    return render(
        request, template,
        sagas=[_row(s, console) for s in page.sagas], next_query=next_query, query=kept,
        statuses=[s.value for s in SagaStatus], names=sorted(console.definitions), ages=AGES,
        first_page=after is None,
    )  # fmt: skip


def _row(s: SagaState, console: Console) -> dict[str, Any]:
    current = [n for n, st in s.steps.items() if st.status in _ACTIVE_STEPS]
    return {
        "id": s.saga_id, "name": s.name, "status": s.status.value,
        "started": s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "age": format_duration(console.now() - s.started_at),
        "current": ", ".join(current) or "-", "reason": s.attention or s.reason or "",
    }  # fmt: skip


_ACTIVE_STEPS = (StepStatus.RUNNING, StepStatus.COMPENSATING)


def highlighted_mermaid(source: str, state: SagaState) -> str:
    """The diagram's Mermaid source with the saga's current steps (or its end) marked."""
    current = [n for n, st in state.steps.items() if st.status in _ACTIVE_STEPS]
    if not current and state.terminal:
        current = [state.status.value]
    lines = [source, "    classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px"]
    lines += [f"    class {name} current" for name in current]
    return "\n".join(lines)


async def saga_page(request: web.Request) -> web.StreamResponse:
    viewer_session(request)
    console = request.app[CONSOLE]
    saga_id = request.match_info["saga_id"]
    stored = await console.store.read(saga_id)
    if stored is None:
        raise web.HTTPNotFound(text=f"no saga {saga_id!r}")
    audit = await console.queries.audit(saga_id)
    if isinstance(stored, UnreadableSaga):
        return render(request, "saga_unreadable.html", saga=stored, audit=audit)
    state = stored.state
    definition = console.definitions.get(state.name)
    waits = waiting_steps(definition, state)
    fragment = bool(request.query.get("fragment"))
    template = "saga_live.html" if fragment else "saga.html"
    tasks = [] if fragment else await saga_tasks(console.store, state)
    return render(
        request, template,
        state=state, quarantine=stored.quarantine, revision=stored.revision,
        mermaid=highlighted_mermaid(render_mermaid(definition), state) if definition else None,
        diagram=Markup(saga_svg(definition, state)) if definition and not fragment else None,
        timeline=timeline_rows(state), format_duration=format_duration,
        steps=list(state.steps.values()), outbox=await console.queries.outbox(saga_id),
        data=json.dumps(state.data, indent=2, default=str), audit=audit,
        waits=[(w, _payloads(w, state)) for w in waits], tasks=tasks,
        may_retry=state.status == SagaStatus.NEEDS_ATTENTION or stored.quarantine is not None,
        may_cancel=not state.terminal, has_transport=console.transport is not None,
    )  # fmt: skip


def _payloads(w: Any, state: SagaState) -> dict[str, str]:
    out = {}
    for verdict in ("approve", "reject"):
        model = w.event_type(verdict)
        if model is not None:
            out[verdict] = json.dumps(prefilled(model, state), indent=2, default=str)
    return out


async def saga_trace(request: web.Request) -> web.StreamResponse:
    """The causal tree of the saga's messages (reads the topics: seconds, not ms)."""
    viewer_session(request)
    console = request.app[CONSOLE]
    saga_id = request.match_info["saga_id"]
    if console.transport is None:
        lines = ["(the console has no transport: no trace)"]
    else:
        topics = sorted({t for app in console.apps for t in app.topics} | _saga_topics(console))
        existing = set(await console.transport.list_topics())
        hops = await read_hops(console.transport, [t for t in topics if t in existing], saga_id)
        lines = render_trace(build_trace(hops)) or ["(no message of this saga was found)"]
    return render(request, "trace.html", saga_id=saga_id, lines=lines)


def _saga_topics(console: Console) -> set[str]:
    topics: set[str] = set()
    for d in console.definitions.values():
        topics |= {m.bus_topic for m in d.consumed_types()}
        for stage in d.iter_steps():
            command = getattr(stage, "command", None)
            if command is not None:
                topics.add(command.bus_topic)
    return topics


async def saga_action(request: web.Request) -> web.StreamResponse:
    """Retry or cancel: a confirmation page first, then the request and its audit record."""
    session = operator_session(request)
    console = request.app[CONSOLE]
    saga_id = request.match_info["saga_id"]
    action = request.path.rsplit("/", 1)[1]
    form = await request.post()
    reason = str(form.get("why", "")).strip()
    if not form.get("confirmed") or not reason:
        return render(
            request, "confirm.html", title=f"{action} saga {saga_id}", action=request.path,
            fields={}, reason=reason, need_reason=not reason,
            what=_ACTION_TEXT[action], back=f"/sagas/{saga_id}",
        )  # fmt: skip
    who = f"{session.principal.subject} ({session.principal.role}) via the console"
    try:
        await request_action(console.store, saga_id, action, reason=f"{reason} [{who}]")  # type: ignore[arg-type]
    except ConfigError as exc:
        return render(request, "error.html", status=409, message=str(exc), back=f"/sagas/{saga_id}")
    await console.audit(session, action, saga_id, reason)
    raise web.HTTPSeeOther(f"/sagas/{saga_id}?done={action}")


_ACTION_TEXT = {
    "retry": "The coordinator re-sends the stuck step's command (or compensation).",
    "cancel": "In-flight steps settle, then completed steps are undone, then the saga is "
    "cancelled.",
}


async def saga_answer(request: web.Request) -> web.StreamResponse:
    """Approve or reject a running wait by publishing its event (confirmed, audited)."""
    session = operator_session(request)
    console = request.app[CONSOLE]
    saga_id = request.match_info["saga_id"]
    form = await request.post()
    step, verdict = str(form.get("step", "")), str(form.get("verdict", ""))
    reason, payload_text = str(form.get("why", "")).strip(), str(form.get("payload", "{}"))
    stored = await console.store.load(saga_id)
    if stored is None:
        raise web.HTTPNotFound(text=f"no saga {saga_id!r}")
    waits = {
        w.step: w for w in waiting_steps(console.definitions.get(stored.state.name), stored.state)
    }
    model = waits[step].event_type(verdict) if step in waits else None
    back = f"/sagas/{saga_id}"
    if model is None or console.transport is None:
        why = (
            "no transport to publish on"
            if model
            else f"step {step!r} is not waiting for a {verdict}"
        )
        return render(request, "error.html", status=409, message=why, back=back)
    if not form.get("confirmed") or not reason:
        return render(
            request, "confirm.html", title=f"{verdict} {step} of saga {saga_id}",
            action=request.path, fields={"step": step, "verdict": verdict, "payload": payload_text},
            reason=reason, need_reason=not reason, back=back,
            what=f"Publishes {model.bus_type} to {model.bus_topic} with this payload:\n{payload_text}",
        )  # fmt: skip
    try:
        payload = json.loads(payload_text)
        record = answer_record(
            model, payload, stored.state, source=console.source, id=new_id(), time=console.now()
        )
        await console.transport.publish(record)
    except (ValueError, BusError) as exc:
        return render(request, "error.html", status=400, message=str(exc), back=back)
    await console.audit(session, verdict, saga_id, reason, step=step, type=model.bus_type)
    raise web.HTTPSeeOther(f"{back}?done={verdict}")
