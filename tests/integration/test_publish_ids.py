"""``bus publish --file``: a line's ``id``, ``source`` and ``time`` are kept, so a file
sent twice is deduplicated by the consumers; ``--dry-run`` shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from bus import App, Event, MemoryDedupStore, RetryPolicy, TestBus
from bus.ingest import parse_ndjson
from bus.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
BUS = [sys.executable, "-m", "bus"]


class Imported(Event, type="it.publish_ids.imported.v1", topic="it.publish_ids", key="key"):
    key: str


def ndjson(*lines: dict[str, object]) -> list[bytes]:
    return [orjson.dumps(line) for line in lines]


async def test_a_file_sent_twice_runs_the_dedup_handler_once_per_line() -> None:
    lines = ndjson(
        *(
            {
                "type": Imported.bus_type,
                "data": {"key": f"k{n}"},
                "id": f"import-{n}",
                "source": "bus://importer",
                "time": "2026-01-31T08:30:00Z",
            }
            for n in range(3)
        )
    )
    runs: Counter[str] = Counter()
    app = App("it-publish-ids", retry=RetryPolicy(max_attempts=1))

    @app.handler(dedup=MemoryDedupStore())
    async def handle(event: Imported) -> None:
        runs[event.key] += 1

    async with TestBus(app) as bus:
        for _ in range(2):  # the operator runs `bus publish --file` twice
            for item in parse_ndjson(lines, default_registry):
                await bus.publish(
                    item.message,
                    correlationid=item.correlationid,
                    subject=item.subject,
                    id=item.id,
                    source=item.source,
                    time=item.time,
                )
        await bus.drain()
        stats = bus.runner.workers[0].stats
        envelopes = bus.envelopes(Imported)
    assert runs == Counter({"k0": 1, "k1": 1, "k2": 1})
    assert (stats.handled, stats.duplicates) == (3, 3)
    assert {(e.id, e.source) for e in envelopes} == {
        (f"import-{n}", "bus://importer") for n in range(3)
    }


def publish_dry_run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BUS, "publish", "--file", str(path), "-m", "handlers.hr.contracts", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


HIRE = {
    "type": "hr.employee.hired.v1",
    "data": {
        "employee_id": "e-1",
        "full_name": "Ada Lovelace",
        "department": "engineering",
        "manager_email": "grace@example.com",
        "start_date": "2026-12-01",
    },
}


def test_dry_run_shows_the_id_source_and_time_a_line_gives(tmp_path: Path) -> None:
    f = tmp_path / "hires.ndjson"
    given = {"id": "hire-e-1", "source": "bus://hr-import", "time": "2026-01-31T09:30:00+01:00"}
    f.write_bytes(b"\n".join(ndjson({**HIRE, **given}, HIRE)))
    runs = [publish_dry_run(f) for _ in range(2)]
    for out in runs:
        assert out.returncode == 0, out.stderr
    first, again = ([json.loads(line) for line in out.stdout.splitlines()] for out in runs)
    kept = first[0]["headers"]
    assert (kept["ce_id"], kept["ce_source"], kept["ce_time"]) == (
        "hire-e-1",
        "bus://hr-import",
        "2026-01-31T09:30:00+01:00",
    )
    assert again[0] == first[0]  # the same event again
    generated = first[1]["headers"]
    assert generated["ce_source"] == "bus://cli"
    assert generated["ce_id"] != again[1]["headers"]["ce_id"]  # new each run


def test_a_bad_time_names_the_line_and_the_field_and_sends_nothing(tmp_path: Path) -> None:
    f = tmp_path / "hires.ndjson"
    f.write_bytes(b"\n".join(ndjson(HIRE, {**HIRE, "time": "2024-01-01T10:00Z"})))
    out = publish_dry_run(f)
    assert out.returncode == 2
    assert "line 2: field 'time' '2024-01-01T10:00Z' is not an RFC 3339 timestamp" in out.stderr
    assert out.stdout == ""
