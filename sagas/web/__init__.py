"""The operator console: sagas, dead letters and the event catalog in a web page.

``build_console_app`` (tests, embedding) and ``serve_console`` (``bus console``) are the
public entry points; :mod:`sagas.web.access` reads the token file. See docs/console.md.

Example::

    app = build_console_app(store, definitions=[onboarding], apps=apps,
                            transport=transport, tokens=load_tokens("tokens.toml"))
"""

from sagas.web.access import ConsoleTokens, Principal, load_tokens, parse_tokens
from sagas.web.app import build_console_app, serve_console

__all__ = [
    "ConsoleTokens",
    "Principal",
    "build_console_app",
    "load_tokens",
    "parse_tokens",
    "serve_console",
]
