"""The operator console's aiohttp application: login, sessions, CSRF, pages, assets.

Server-rendered pages (Jinja2 templates beside this module), a little plain JavaScript
(``static/console.js``: ``fetch`` for live updates), every asset served by the app itself:
no CDN, no build step. Bound to 127.0.0.1 unless told otherwise. ``serve_console`` runs it
on bus's HTTP server (:class:`bus.HttpServer`), which adds ``/healthz``, ``/readyz`` (here:
the saga store answers, :mod:`sagas.web.health`) and ``/metrics`` as for every bus process.

Example::

    app = build_console_app(store, definitions=[onboarding], apps=apps,
                            transport=transport, tokens=load_tokens("tokens.toml"))
    # or, in a process of its own:
    await serve_console("sqlite:sagas.db", definitions=[onboarding], apps=apps,
                        transport=transport, tokens_file="tokens.toml", port=8081)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import jinja2
from aiohttp import web

from bus import App, BusConfig, HttpServer, Metrics, Transport, default_metrics
from sagas.definition import SagaDefinition
from sagas.stores.base import SagaStore
from sagas.stores.url import describe_store, store_from_url
from sagas.web import catalog_views, dlq_views, saga_views, task_views
from sagas.web.access import ConsoleTokens, Session, find_token, load_tokens
from sagas.web.context import CONSOLE, Console
from sagas.web.health import ConsoleMetrics, store_readiness
from sagas.web.pages import COOKIE, TEMPLATES, render, session_of
from sagas.web.queries import queries_for

__all__ = ["build_console_app", "console_routes", "serve_console"]

_HERE = Path(__file__).parent
_OPEN_PATHS = ("/login", "/static/")
#: bus's HTTP server answers these for probes and Prometheus: no login, no session
_PROBE_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))
#: seconds between the console's own store probes (bus_console_store_up)
_STORE_PROBE_INTERVAL_S = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_console_app(
    store: SagaStore,
    *,
    definitions: Sequence[SagaDefinition] = (),
    apps: Sequence[App] = (),
    transport: Transport | None = None,
    tokens: ConsoleTokens,
    max_replays: int = 3,
    saga_group: str = "sagas",
    migrate: bool = True,
    metrics: Metrics | None = None,
) -> web.Application:
    """The console on an opened ``store`` (it adds its own migrations at start-up), as an
    application of its own: the pages without ``/healthz``, ``/readyz`` and ``/metrics``,
    which :func:`serve_console` adds (tests and embedding use this).

    Example::

        app = build_console_app(store, tokens=load_tokens("tokens.toml"))
    """
    app = web.Application()
    console_routes(
        store, definitions=definitions, apps=apps, transport=transport, tokens=tokens,
        max_replays=max_replays, saga_group=saga_group, migrate=migrate,
        observer=ConsoleMetrics(metrics or default_metrics()),
    )(app)  # fmt: skip
    return app


def console_routes(
    store: SagaStore,
    *,
    definitions: Sequence[SagaDefinition] = (),
    apps: Sequence[App] = (),
    transport: Transport | None = None,
    tokens: ConsoleTokens,
    max_replays: int = 3,
    saga_group: str = "sagas",
    migrate: bool = True,
    observer: ConsoleMetrics,
) -> Callable[[web.Application], None]:
    """What adds the console to an application: its pages, assets, middlewares (request
    metrics, security headers, login) and start-up migrations. ``bus.HttpServer(routes=[...])``
    takes it, so the console shares the one HTTP server (and its limits) of every bus process.

    Example::

        routes = console_routes(store, tokens=tokens, observer=ConsoleMetrics(Metrics()))
        async with HttpServer(port=0, routes=[routes]) as http: ...
    """
    console = Console(
        store=store,
        queries=queries_for(store),
        definitions={d.name: d for d in definitions},
        apps=list(apps),
        transport=transport,
        tokens=tokens,
        max_replays=max_replays,
        saga_group=saga_group,
    )

    def add(app: web.Application) -> None:
        app.middlewares.extend([observer.middleware, _security_headers, _login_required])
        app[CONSOLE] = console
        app[TEMPLATES] = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        if migrate:

            async def _migrate(_: web.Application) -> None:
                await console.queries.migrate()

            app.on_startup.append(_migrate)
        app.router.add_get("/login", _login_form)
        app.router.add_post("/login", _login)
        app.router.add_post("/logout", _logout)
        app.router.add_get("/", _home)
        app.router.add_static("/static/", _HERE / "static", show_index=False)
        saga_views.add_routes(app.router)
        dlq_views.add_routes(app.router)
        catalog_views.add_routes(app.router)
        task_views.add_routes(app.router)

    return add


async def serve_console(
    store_url: str | SagaStore,
    *,
    definitions: Sequence[SagaDefinition] = (),
    apps: Sequence[App] = (),
    transport: Transport | None = None,
    tokens_file: str | Path,
    host: str = "127.0.0.1",
    port: int = 8081,
    max_replays: int = 3,
    saga_group: str = "sagas",
    stop: asyncio.Event | None = None,
    started: Callable[[str], None] | None = None,
    config: BusConfig | None = None,
    metrics: Metrics | None = None,
    store_name: str = "store",
) -> None:
    """Serve the console until ``stop`` is set (or the task is cancelled): ``bus console``.

    ``store_url`` is a store URL or an unopened store; the store, and the transport if
    given, are opened and closed here. ``started`` gets the URL once it listens (with
    ``port=0``, the port the system chose). Beside the pages, without a login:
    ``/healthz`` (the event loop is responsive), ``/readyz`` (the saga store answers) and
    ``/metrics`` (``metrics``, default the process's: requests, the store's health), on
    bus's HTTP server with ``config``'s connection limits (``BUS_HTTP_*``).
    """
    tokens = load_tokens(tokens_file)
    if isinstance(store_url, str):
        store_name = describe_store(store_url)
    store = store_from_url(store_url) if isinstance(store_url, str) else store_url
    observer = ConsoleMetrics(metrics or default_metrics())
    await store.open()
    try:
        if transport is not None:
            await transport.start()
        try:
            http = HttpServer(
                host=host,
                port=port,
                metrics=observer.metrics,
                readiness=store_readiness(store, observer, name=store_name),
                settings=(config or BusConfig()).http_settings(),
                routes=[
                    console_routes(
                        store, definitions=definitions, apps=apps, transport=transport,
                        tokens=tokens, max_replays=max_replays, saga_group=saga_group,
                        observer=observer,
                    )
                ],
            )  # fmt: skip
            async with http, asyncio.TaskGroup() as tasks:
                if started is not None:
                    started(f"{http.url}/")
                prober = tasks.create_task(_probe_store(http), name="console-store-probe")
                await (stop or asyncio.Event()).wait()
                prober.cancel()
        finally:
            if transport is not None:
                await transport.stop()
    finally:
        await store.close()


async def _probe_store(http: HttpServer) -> None:
    # keeps bus_console_store_up current between scrapes, whether or not anyone asks
    # /readyz (the readiness cache keeps it to one read per interval either way)
    while True:
        await http.readiness()
        await asyncio.sleep(_STORE_PROBE_INTERVAL_S)


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    )
    return response


@web.middleware
async def _login_required(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but the login form needs a session; every POST its CSRF token."""
    if request.path in _PROBE_PATHS or request.path.startswith(_OPEN_PATHS):
        return await handler(request)
    session = session_of(request)
    if session is None:
        if request.path.startswith("/api/"):
            raise web.HTTPUnauthorized(text="log in first")
        raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
    if request.method == "POST":
        form = await request.post()
        if form.get("csrf") != session.csrf:
            raise web.HTTPForbidden(text="the form's CSRF token does not match the session")
    return await handler(request)


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/sagas")


async def _login_form(request: web.Request) -> web.StreamResponse:
    return render(request, "login.html", error=None, next=_next(request.query.get("next")))


async def _login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    principal = find_token(console.tokens, str(form.get("token", "")))
    target = _next(str(form.get("next", "")))
    if principal is None:
        return render(request, "login.html", status=401, error="unknown token", next=target)
    session = console.sessions.open(
        principal, session_id=console.new_secret(), csrf=console.new_secret()
    )
    response = web.HTTPSeeOther(target)
    _set_cookie(response, session)
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if session is not None:
        request.app[CONSOLE].sessions.close(session.id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


def _set_cookie(response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE, session.id, path="/", httponly=True, samesite="Strict", max_age=12 * 3600
    )


def _next(target: str | None) -> str:
    """Only a path of this site (no ``//host``): a login cannot send anyone elsewhere."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/sagas"
