"""Serves GrantRepositoryAccess and RevokeRepositoryAccess with reply events."""

from __future__ import annotations

from bus import App, Context
from handlers.repositories.contracts import (
    GrantRepositoryAccess,
    RepositoryAccessDenied,
    RepositoryAccessGranted,
    RepositoryAccessRevoked,
    RevokeRepositoryAccess,
)
from handlers.repositories.system import AccessDeniedError, CodeHost


def build_app(host: CodeHost) -> App:
    """The repositories App, wired to ``host``. Transient errors raise (the bus retries)."""
    app = App("repositories")

    @app.handler
    async def grant(
        command: GrantRepositoryAccess, ctx: Context
    ) -> RepositoryAccessGranted | RepositoryAccessDenied:
        try:
            repos = host.grant(command.employee_id, command.login, command.department)
        except AccessDeniedError as exc:
            return RepositoryAccessDenied(employee_id=command.employee_id, reason=str(exc))
        ctx.logger.info("%s may use %s", command.login, ",".join(repos))
        return RepositoryAccessGranted(
            employee_id=command.employee_id, login=command.login, repositories=repos
        )

    @app.handler
    async def revoke(command: RevokeRepositoryAccess, ctx: Context) -> RepositoryAccessRevoked:
        host.revoke(command.login)
        ctx.logger.info("repository access of %s revoked", command.login)
        return RepositoryAccessRevoked(employee_id=command.employee_id, login=command.login)

    return app


host = CodeHost()
app = build_app(host)
