"""What the console's views share: the session of a request, the role check, rendering."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from sagas.web.access import Session
from sagas.web.context import CONSOLE

__all__ = ["COOKIE", "TEMPLATES", "operator_session", "render", "session_of", "viewer_session"]

#: The session cookie's name.
COOKIE = "bus_console"
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)


def session_of(request: web.Request) -> Session | None:
    return request.app[CONSOLE].sessions.get(request.cookies.get(COOKIE))


def viewer_session(request: web.Request) -> Session:
    """The request's session (the middleware let only logged-in requests through)."""
    session = session_of(request)
    if session is None:
        raise web.HTTPUnauthorized(text="log in first")
    return session


def operator_session(request: web.Request) -> Session:
    """The session, if its role may act; 403 (a page saying so) otherwise."""
    session = viewer_session(request)
    if not session.principal.may_act:
        raise web.HTTPForbidden(
            text=f"{session.principal.subject} is a {session.principal.role}: "
            "only an operator may act",
        )
    return session


def render(
    request: web.Request, template: str, *, status: int = 200, **values: Any
) -> web.Response:
    """``template`` filled with ``values`` plus ``session`` (None when logged out)."""
    env = request.app[TEMPLATES]
    html = env.get_template(template).render(session=session_of(request), **values)
    return web.Response(text=html, status=status, content_type="text/html")
