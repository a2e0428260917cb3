"""``bus sagas list/show/cancel/retry/graph`` against a SQLite store the coordinator wrote."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bus.cli import main
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import IdentityAccountProvisioned
from sagas import SagaStatus
from sagas.definitions.onboarding import onboarding
from sagas.stores import SagaWrite, SqliteSagaStore
from sagas.testing import SagaTestKit

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def admin(employee_id: str) -> EmployeeHired:
    return EmployeeHired(
        employee_id=employee_id,
        full_name=f"Person {employee_id}",
        department="sales",
        manager_email="boss@example.com",
        role="admin",
        start_date=date(2026, 7, 1),
    )


async def _prepare(path: Path) -> None:
    """a-1 waits for approval; a-2 was cancelled and its compensation is stuck."""
    async with SagaTestKit(onboarding, store=SqliteSagaStore(path), start=START) as kit:
        for e in ("a-1", "a-2"):
            await kit.publish(admin(e))
            await kit.drain()
            reply = IdentityAccountProvisioned(employee_id=e, login=e, email=f"{e}@example.com")
            await kit.reply(reply, saga_id=f"onboarding:{e}")
            await kit.drain()
        await kit.cancel("onboarding:a-2", "hire called off")
        await kit.drain()
        for _ in range(3):
            await kit.advance(timedelta(minutes=1))
        assert await kit.status("onboarding:a-2") == SagaStatus.NEEDS_ATTENTION


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    # The CLI runs its own event loop (asyncio.run), so these tests are synchronous.
    asyncio.run(_prepare(tmp_path / "sagas.db"))
    return f"sqlite:{tmp_path / 'sagas.db'}"


def bus(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sagas", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_a_table_and_filters_by_state(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = bus(capsys, "list", "--store", store_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SAGA", "STATUS", "STEPS"]
    assert {line.split()[0] for line in lines[1:3]} == {"onboarding:a-1", "onboarding:a-2"}
    assert lines[-1] == "2 sagas: 1 needs_attention, 1 running"
    code, out, _ = bus(capsys, "list", "--store", store_url, "--state", "needs_attention", "--json")
    [only] = json.loads(out)
    assert only["saga_id"] == "onboarding:a-2"
    assert "history" not in only
    code, out, _ = bus(capsys, "list", "--store", store_url, "--since", "2026-06-02T00:00")
    assert out.splitlines()[-1] == "0 sagas: none"


def test_show_tells_the_timeline_and_why(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = bus(capsys, "show", "onboarding:a-2", "--store", store_url)
    assert code == 0
    story, header = out.splitlines()[:2]
    assert story == (
        "Person a-2 (sales, employee, admin): account a-2 created -> needs attention: "
        "compensation of step create_account failed after 3 attempt(s): no reply within "
        "0:01:00; fix the cause, then retry the saga"
    )
    assert header.startswith("onboarding:a-2  (onboarding v1)  NEEDS_ATTENTION")
    assert "why: hire called off" in out
    assert "needs attention: compensation of step create_account failed after 3 attempt(s)" in out
    assert "identity.account.deprovision.v1 attempt 3" in out
    assert "create_account           completed           identity.account.provisioned.v1" in out
    code, out, _ = bus(capsys, "show", "onboarding:a-2", "--store", store_url, "--json")
    shown = json.loads(out)
    assert shown["status"] == "needs_attention"
    assert shown["revision"] >= 5
    assert shown["timeline"][0]["event"] == "started"
    assert shown["timeline"][-1]["offset_s"] == 180.0


def test_retry_and_cancel_queue_requests_the_coordinator_carries_out(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = bus(capsys, "retry", "onboarding:a-2", "--store", store_url, "--reason", "fixed")
    assert code == 0
    assert "retry of onboarding:a-2 requested" in out
    code, out, _ = bus(capsys, "cancel", "onboarding:a-1", "--store", store_url)
    assert code == 0
    code, _, err = bus(capsys, "retry", "onboarding:a-1", "--store", store_url)
    assert code == 2
    assert "only a saga in needs_attention can be retried" in err
    asyncio.run(_coordinator_carries_out_the_requests(tmp_path / "sagas.db"))


async def _coordinator_carries_out_the_requests(path: Path) -> None:
    store = SqliteSagaStore(path)
    async with SagaTestKit(onboarding, store=store, start=START + timedelta(hours=1)) as kit:
        assert len(await store.pending_requests(limit=10)) == 2
        await kit.drain()
        assert await store.pending_requests(limit=10) == []
        assert await kit.status("onboarding:a-2") == SagaStatus.COMPENSATING
        assert await kit.status("onboarding:a-1") == SagaStatus.COMPENSATING
        assert ("retried", None) in await kit.timeline("onboarding:a-2")


def test_an_unknown_saga_or_store_is_an_error_that_says_what_to_do(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = bus(capsys, "show", "onboarding:zz", "--store", store_url)
    assert code == 2
    assert "no saga 'onboarding:zz' in the store; 'bus sagas list' shows the ids" in err
    code, _, err = bus(capsys, "list", "--store", "mysql://x")
    assert code == 2
    assert "sqlite:PATH" in err
    code, _, err = bus(capsys, "list", "--store", store_url, "--since", "yesterday")
    assert "use a duration like 90s" in err


def test_graph_prints_the_mermaid_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = bus(capsys, "graph", "onboarding")
    assert code == 0
    assert out.startswith("stateDiagram-v2")
    assert "create_account : CreateAccount (timeout 30s x3)" in out
    code, _, err = bus(capsys, "graph", "relocation")
    assert code == 2
    assert (
        "no saga named 'relocation' (known: equipment_issue, equipment_recovery, offboarding, onboarding)"
        in err
    )


def test_graph_draws_every_stage_of_onboarding_v2_and_of_offboarding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = bus(capsys, "graph", "onboarding")  # the latest version: 2
    assert code == 0
    assert out.startswith("stateDiagram-v2\n    %% saga onboarding v2")
    for line in (
        "assign_desk : task for manager_of: form DeskAssigned",
        "payroll --> if_create_payroll_record : payroll_route = contractor",
        "payroll --> de_registration_window : payroll_route = de",
        "until_start_date : wait until start_morning",
        "until_start_date --> activate_account : time reached",
        "activate_account --> completed : IdentityAccountActivated",
    ):
        assert line in out, line
    code, out, _ = bus(capsys, "graph", "onboarding", "--version", "1")
    assert code == 0
    assert "assign_desk" not in out
    code, out, _ = bus(capsys, "graph", "offboarding")
    assert code == 0
    for line in (
        "[*] --> revoke_access : EmployeeLeft",
        "account --> notify_legal : account_fate = legal_hold",
        "account --> remove_account : otherwise",
        "recover_equipment : child saga equipment_recovery, awaited to its end",
        "run_final_payroll --> completed : FinalPayrollRun",
    ):
        assert line in out, line


async def _create_store(path: Path) -> None:
    async with SqliteSagaStore(path):
        pass


def test_the_store_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUS_SAGA_STORE", f"sqlite:{tmp_path / 'env.db'}")
    asyncio.run(_create_store(tmp_path / "env.db"))  # as 'bus sagas run' does
    code, out, _ = bus(capsys, "list")
    assert code == 0
    assert out.splitlines()[-1] == "0 sagas: none"


@pytest.mark.parametrize("action", ["list", "show onboarding:a-1", "purge --older-than 1d"])
def test_reading_commands_never_create_a_store_and_name_the_missing_one(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "sgas.db"
    code, out, err = bus(capsys, *action.split(), "--store", f"sqlite:{typo}")
    assert code == 2
    assert out == ""
    assert err == (
        f"bus: error: no saga store at {typo} (sqlite:{typo}): run 'bus sagas run' first "
        "or pass --store\n"
    )
    assert not typo.exists()


def test_the_default_store_is_named_by_its_absolute_path_when_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BUS_SAGA_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = bus(capsys, "list")
    assert code == 2
    assert f"no saga store at {tmp_path / 'sagas.db'} (sqlite:sagas.db)" in err
    assert not (tmp_path / "sagas.db").exists()


def test_bus_sagas_run_serves_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 's.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", "sagas", "run", "--http-port", "0", "--store", store],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url, logged = "", ""
        for line in proc.stderr:
            logged += line
            if "serving /metrics /healthz /readyz on " in line:
                url = line.rsplit(" on ", 1)[1].strip()
                break
        assert url, "the coordinator did not start its HTTP endpoints"
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            assert json.loads(response.read())["checks"] == {
                "transport": "ok",
                "definitions": "equipment_issue v1, equipment_recovery v1, offboarding v1, onboarding v1, onboarding v2",
                "store": f"sqlite:{tmp_path / 's.db'}",
            }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (
            f"coordinator of equipment_issue v1, equipment_recovery v1, offboarding v1, onboarding v1, onboarding v2 on memory, store sqlite:{tmp_path / 's.db'}"
            in logged
        )
    finally:
        if proc.poll() is None:
            proc.kill()


async def _add_ended(path: Path) -> None:
    async with SqliteSagaStore(path) as store:
        running = await store.load("onboarding:a-1")
        assert running is not None
        done = dataclasses.replace(
            running.state, saga_id="onboarding:done-1", status=SagaStatus.COMPLETED
        )
        await store.save(SagaWrite(done, 0))


def test_purge_deletes_only_ended_sagas_older_than_asked(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_add_ended(tmp_path / "sagas.db"))
    code, out, _ = bus(capsys, "purge", "--older-than", "2026-06-01T08:00", "--store", store_url)
    assert code == 0
    assert out.startswith("purged 0 sagas that ended before 2026-06-01T08:00:00")
    code, out, _ = bus(capsys, "purge", "--older-than", "1d", "--store", store_url)
    assert out.startswith("purged 1 saga that ended before ")
    code, out, _ = bus(capsys, "list", "--store", store_url)
    assert out.splitlines()[-1] == "2 sagas: 1 needs_attention, 1 running"
    code, _, err = bus(capsys, "purge", "--store", store_url)  # --older-than is required
    assert code == 2
    assert "Missing option '--older-than'" in err
    code, _, err = bus(capsys, "purge", "--older-than", "soon", "--store", store_url)
    assert code != 0
    assert "--older-than 'soon': use a duration like 90s" in err


def test_an_unreadable_saga_is_listed_marked_shown_raw_and_not_cancelled(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = '{"saga_id": "onboarding:a-1", "sta'
    with sqlite3.connect(store_url.removeprefix("sqlite:")) as db:
        db.execute("UPDATE saga_state SET state = ? WHERE saga_id = 'onboarding:a-1'", (broken,))
    code, out, _ = bus(capsys, "list", "--store", store_url)
    assert code == 0
    [line] = [x for x in out.splitlines() if x.startswith("onboarding:a-1")]
    assert line.split()[1] == "needs_attention"
    assert "unreadable state" in line
    assert out.splitlines()[-1] == "2 sagas: 2 needs_attention"
    code, out, _ = bus(capsys, "show", "onboarding:a-1", "--store", store_url)
    assert code == 0
    assert broken in out
    assert "bus sagas retry onboarding:a-1" in out
    code, out, _ = bus(capsys, "show", "onboarding:a-1", "--store", store_url, "--json")
    assert json.loads(out)["raw_state"] == broken
    for action in ("cancel", "retry"):  # nothing to do until the row is fixed
        code, _, err = bus(capsys, action, "onboarding:a-1", "--store", store_url)
        assert code == 2
        assert "stored state cannot be read" in err
