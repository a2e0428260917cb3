"""The console over HTTP without a browser: a started test client on a saga store, a
log-in as one of the tokens below, a page's text. Shared by the console's integration
tests (tests/integration/test_console_pages.py, test_console_tasks.py).

The tokens are the shared token file's format: one of the ingress's (no role: it may not
log in), an operator (``alice``) and a viewer (``bob``).

Example::

    client = await console_client(store)
    try:
        csrf = await log_in(client, "operator-token-123")
        body = await page_text(client, "/sagas")
    finally:
        await client.close()
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bus import hash_token
from sagas.stores.base import SagaStore
from sagas.web import build_console_app, parse_tokens
from sagas.web.context import CONSOLE

TOKENS = parse_tokens(f"""
[[tokens]]
name = "hr-system"                  # the ingress's: no role, no console
sha256 = "{hash_token("ingress-token-123")}"

[[tokens]]
name = "alice-laptop"
sha256 = "{hash_token("operator-token-123")}"
role = "operator"
subject = "alice"

[[tokens]]
name = "bob"
sha256 = "{hash_token("viewer-token-1234")}"
role = "viewer"
""")


async def console_client(
    store: SagaStore, *, now: datetime | None = None, **options: Any
) -> TestClient:  # type: ignore[type-arg]
    """A started client of the console on ``store`` with :data:`TOKENS` (``options``:
    more of ``build_console_app``'s), its clock fixed at ``now`` when given."""
    app = build_console_app(store, tokens=TOKENS, **options)
    if now is not None:
        app[CONSOLE].now = lambda: now
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def log_in(client: TestClient, token: str, *, next: str = "/sagas") -> str:  # type: ignore[type-arg]
    """Log in; the CSRF token of the session's forms."""
    response = await client.post("/login", data={"token": token, "next": next})
    assert response.status == 200, await response.text()
    found = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert found is not None
    return found.group(1)


async def page_text(client: TestClient, path: str) -> str:  # type: ignore[type-arg]
    """The body of ``GET path``, which must answer 200."""
    response = await client.get(path)
    body = await response.text()
    assert response.status == 200, body[:500]
    return body
