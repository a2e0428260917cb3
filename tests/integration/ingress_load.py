"""A load generator for the ingress, run as its own process by the load test.

``python -m tests.integration.ingress_load URL TOKEN SOURCE EVENTS BATCH CONCURRENCY OUT``
posts EVENTS hires in batches of BATCH from CONCURRENCY connections, writes the ids the
ingress accepted (one a line) to OUT, and prints one JSON line: accepted, events_per_s,
p99_ms (per request), statuses.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson

TYPE = "it.ingress.hired.v1"


async def main(argv: list[str]) -> None:
    url, token, source = argv[0], argv[1], argv[2]
    events, batch, concurrency = int(argv[3]), int(argv[4]), int(argv[5])
    out = Path(argv[6])
    batches = [
        [
            {
                "specversion": "1.0",
                "id": f"load-{n}",
                "source": source,
                "type": TYPE,
                "data": {"employee_id": f"e-{n}", "name": "Load"},
            }
            for n in range(start, min(start + batch, events))
        ]
        for start in range(0, events, batch)
    ]
    todo: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
    for b in batches:
        todo.put_nowait(b)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    accepted: list[str] = []
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/cloudevents-batch+json",
    }

    async def worker(session: aiohttp.ClientSession) -> None:
        while not todo.empty():
            body = todo.get_nowait()
            while True:
                sent = time.perf_counter()
                async with session.post(
                    url + "/events", data=orjson.dumps(body), headers=headers
                ) as r:
                    await r.read()
                    statuses[r.status] += 1
                latencies.append(time.perf_counter() - sent)
                if r.status == 202:
                    accepted.extend(str(e["id"]) for e in body)
                    break
                if r.status not in (429, 503):
                    break  # refused for good: not accepted
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    out.write_text("".join(f"{i}\n" for i in accepted))
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    report = {
        "accepted": len(accepted),
        "events_per_s": round(len(accepted) / elapsed, 1),
        "p99_ms": round(p99 * 1000, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
    }
    print(orjson.dumps(report).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
