"""Dead letters: the list per topic with ``bus dlq list``'s filters, a letter's page, and
replay (one, a selection, or every match) with a dry run first.

Reading and replaying are :mod:`bus.dlq`'s: ``read_dead_letters`` (a snapshot),
``plan_replay`` (newest copy per ID, the ``max_replays`` loop guard) and
``replay_dead_letters``. Nothing here decides differently from the command line.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bus import (
    BusError,
    DeadLetter,
    DeadLetterFilter,
    Transport,
    list_dead_letter_topics,
    parse_since,
    plan_replay,
    read_dead_letters,
    replay_dead_letters,
)
from sagas.web.context import CONSOLE, Console
from sagas.web.pages import operator_session, render, viewer_session

__all__ = ["FILTER_FIELDS", "add_routes"]

FILTER_FIELDS = ("topic", "type", "handler", "error", "reason", "since")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/dlq", dlq_list)
    router.add_get("/dlq/letter", dlq_letter)
    router.add_post("/dlq/replay", dlq_replay)


def _transport(console: Console) -> Transport:
    if console.transport is None:
        raise web.HTTPServiceUnavailable(text="the console was started without a transport")
    return console.transport


def _filter(console: Console, values: Any, ids: frozenset[str] = frozenset()) -> DeadLetterFilter:
    since = values.get("since") or None
    try:
        when = parse_since(since, console.now()) if since else None
    except BusError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    return DeadLetterFilter(
        topic=values.get("topic") or None, type=values.get("type") or None,
        handler=values.get("handler") or None, error=values.get("error") or None,
        reason=values.get("reason") or None, since=when, ids=ids,
    )  # fmt: skip


async def _letters(
    console: Console, dlq_topic: str | None, f: DeadLetterFilter
) -> list[DeadLetter]:
    transport = _transport(console)
    topics = await list_dead_letter_topics(transport, [dlq_topic] if dlq_topic else ())
    return await read_dead_letters(transport, topics, keep=f.matches, quiet_s=0.3, timeout_s=10)


async def dlq_list(request: web.Request) -> web.StreamResponse:
    viewer_session(request)
    console = request.app[CONSOLE]
    topics = await list_dead_letter_topics(_transport(console))
    dlq_topic = request.query.get("dlq") or None
    letters = await _letters(console, dlq_topic, _filter(console, request.query))
    query = {k: request.query.get(k, "") for k in FILTER_FIELDS}
    return render(
        request, "dlq.html", topics=topics, dlq=dlq_topic or "", letters=letters, query=query,
        max_replays=console.max_replays,
    )  # fmt: skip


async def dlq_letter(request: web.Request) -> web.StreamResponse:
    viewer_session(request)
    console = request.app[CONSOLE]
    wanted = request.query.get("id", "")
    letters = await _letters(console, None, DeadLetterFilter(ids=frozenset([wanted])))
    if not letters:
        raise web.HTTPNotFound(text=f"no dead letter {wanted!r}")
    newest = letters[-1]
    return render(
        request, "letter.html", letter=newest, copies=letters,
        payload=newest.record.value.decode("utf-8", "replace") if newest.record.value else "",
        headers=[(k, v.decode("utf-8", "replace")) for k, v in newest.record.headers],
    )  # fmt: skip


async def dlq_replay(request: web.Request) -> web.StreamResponse:
    """Selected ids (``id`` fields) or every match of the filter: a dry run, then a send."""
    session = operator_session(request)
    console = request.app[CONSOLE]
    form = await request.post()
    ids = frozenset(str(v) for v in form.getall("id", []))
    dlq_topic = str(form.get("dlq", "")) or None
    f = _filter(console, form, ids)
    letters = await _letters(console, dlq_topic, f)
    plan = plan_replay(letters, max_replays=console.max_replays)
    reason = str(form.get("why", "")).strip()
    if not form.get("confirmed") or not reason:
        fields = {k: str(form.get(k, "")) for k in (*FILTER_FIELDS, "dlq")}
        return render(
            request, "replay_plan.html", plan=plan, fields=fields, ids=sorted(ids),
            reason=reason, need_reason=bool(form.get("confirmed")) and not reason,
            max_replays=console.max_replays,
        )  # fmt: skip
    progress = [0]  # how many were handed to the broker so far

    def _progress(done: int, _total: int) -> None:
        progress[0] = done

    failure: str | None = None
    try:
        sent = await replay_dead_letters(_transport(console), plan, on_progress=_progress)
    except BusError as exc:  # some may have gone: say how far it got, and audit that
        failure, sent = str(exc), progress[0]
    chosen = {k: str(form[k]) for k in (*FILTER_FIELDS, "dlq") if form.get(k)}
    target = ",".join(sorted(ids)) if ids else f"dlq filter {chosen}"
    await console.audit(
        session,
        "replay",
        target[:500],
        reason,
        sent=sent,
        refused=len(plan.refused),
        ids=[d.id for d, _ in plan.send],
        failure=failure,
    )
    # Sends are pipelined: after a failed acknowledgement, those handed over are unconfirmed.
    done = "sent" if failure is None else "unconfirmed"
    outcomes = [
        (d.id, r.topic, done if i < sent else "not sent") for i, (d, r) in enumerate(plan.send)
    ]
    return render(
        request, "replayed.html", sent=sent, plan=plan, outcomes=outcomes, failure=failure,
        status=502 if failure else 200,
    )  # fmt: skip
