"""DBOS Transact's side of ``bench/sagas.py``: the onboarding as a 4-step durable workflow.

For this benchmark only: ``.venv/bin/pip install dbos`` (3.4.0 when written). DBOS keeps
its workflow state (status, inputs, every step's output) in its system tables on the
same PostgreSQL; each step is a DBOS transaction on an ``AsyncSQLAlchemyDatasource`` (DBOS
3.x's form of ``@DBOS.transaction()``: the row and the step's checkpoint commit together)
writing the row that step's handler system keeps. Settings are DBOS's defaults (system
database on PostgreSQL, LISTEN/NOTIFY, SERIALIZABLE transactions) except the pools, sized
to the concurrency so connections are not the limit.

DBOS is a process-wide singleton: :func:`launch` once, :func:`run_round` per round,
:func:`shutdown` at the end.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from typing import Any

from sagas_rows import Hire

try:  # optional, for this benchmark only (never a project dependency)
    import sqlalchemy as sa
    from dbos import DBOS, AsyncSQLAlchemyDatasource, DBOSConfig

    dbos_version: str | None = importlib.metadata.version("dbos")
except ImportError:  # reported by the caller
    dbos_version = None

DBOS_HINT = "DBOS Transact is not installed; for this benchmark only: .venv/bin/pip install dbos"


def available() -> bool:
    return dbos_version is not None


class DbosOnboarding:
    """The workflow and its steps, bound to one datasource and one table schema."""

    def __init__(self, dsn: str, schema: str, *, pool: int, direct: bool = False) -> None:
        self.dsn = dsn
        self.schema = schema
        self.pool = pool
        #: Await the workflow function itself instead of DBOS.start_workflow_async + result.
        self.direct = direct
        self.workflow: Any = None

    async def launch(self) -> None:
        url = self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        config: DBOSConfig = {
            "name": "bench-sagas",
            "system_database_url": self.dsn,
            "sys_db_pool_size": self.pool,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        ds = await AsyncSQLAlchemyDatasource.create(
            url, engine_kwargs={"pool_size": self.pool, "max_overflow": 0}
        )
        s = self.schema

        @ds.transaction(name="create_account")
        async def create_account(employee_id: str, login: str, email: str) -> str:
            await ds.sql_session().execute(
                sa.text(
                    f"INSERT INTO {s}.accounts (employee_id, login, email) VALUES (:e, :l, :m)"
                ),
                {"e": employee_id, "l": login, "m": email},
            )
            return login

        @ds.transaction(name="assign_licenses")
        async def assign_licenses(employee_id: str, email: str, products: list[str]) -> list[str]:
            await ds.sql_session().execute(
                sa.text(
                    f"INSERT INTO {s}.licenses (employee_id, email, products) VALUES (:e, :m, :p)"
                ),
                {"e": employee_id, "m": email, "p": products},
            )
            return products

        @ds.transaction(name="notify_manager")
        async def notify_manager(employee_id: str, manager_email: str, body: str) -> None:
            await ds.sql_session().execute(
                sa.text(
                    f"INSERT INTO {s}.notifications (employee_id, manager_email, body) "
                    "VALUES (:e, :m, :b)"
                ),
                {"e": employee_id, "m": manager_email, "b": body},
            )

        @ds.transaction(name="create_payroll_record")
        async def create_payroll_record(
            employee_id: str, payroll_id: str, full_name: str, start_date: str
        ) -> str:
            await ds.sql_session().execute(
                sa.text(
                    f"INSERT INTO {s}.payroll_records (employee_id, payroll_id, full_name, "
                    "start_date) VALUES (:e, :p, :n, CAST(:d AS date))"
                ),
                {"e": employee_id, "p": payroll_id, "n": full_name, "d": start_date},
            )
            return payroll_id

        @DBOS.workflow(name="onboarding")
        async def onboarding(hire: dict[str, Any]) -> str:
            e = hire["employee_id"]
            await create_account(e, hire["login"], hire["email"])
            await assign_licenses(e, hire["email"], hire["products"])
            await notify_manager(e, hire["manager_email"], hire["note"])
            return await create_payroll_record(
                e, hire["payroll_id"], hire["full_name"], hire["start_date"]
            )

        self.workflow = onboarding
        # DBOS launches synchronously (threads, migrations): off the event loop.
        await asyncio.to_thread(DBOS.launch)
        for name in ("dbos", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)

    async def run_round(self, hires: list[Hire], *, concurrency: int) -> tuple[float, list[float]]:
        """Run one workflow per hire, ``concurrency`` at a time; (workflows/s, durations)."""
        gate = asyncio.Semaphore(concurrency)
        durations: list[float] = []

        async def one(h: Hire) -> None:
            async with gate:
                began = time.monotonic()
                if self.direct:  # the workflow awaited in this task (DBOS checkpoints it)
                    await self.workflow(_payload(h))
                else:
                    handle = await DBOS.start_workflow_async(self.workflow, _payload(h))
                    await handle.get_result()
                durations.append(time.monotonic() - began)

        started = time.monotonic()
        await asyncio.gather(*(one(h) for h in hires))
        elapsed = time.monotonic() - started
        return len(hires) / elapsed, durations

    async def shutdown(self) -> None:
        await asyncio.to_thread(DBOS.destroy)


def _payload(h: Hire) -> dict[str, Any]:
    return {
        "employee_id": h.employee_id,
        "login": h.login,
        "email": h.email,
        "products": h.products,
        "manager_email": h.manager_email,
        "note": h.note,
        "payroll_id": h.payroll_id,
        "full_name": h.full_name,
        "start_date": str(h.start_date),
    }
