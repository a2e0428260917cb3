"""``bus publish`` of bulk files: NDJSON or CSV, paced, with a progress bar, a summary and
the rejected lines with their reasons; sent to Kafka or through an HTTP ingress (``--via``).

Example::

    bus publish --csv hires.csv --type hr.employee.hired.v1 --map emp=employee_id \\
        -m handlers.hr.contracts --via http://ingress:9400 --rate 500 --rejects bad.ndjson
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bus.cli.output import progress
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.bulk import Item, Reject
    from bus.transports.base import Transport

__all__ = ["BulkRequest", "paced", "publish_bulk", "read_items"]

#: Events per request or produce batch: small enough that a progress bar moves.
_CHUNK = 100


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """What the bulk flags asked for."""

    file: Path | None = None
    csv: Path | None = None
    type_name: str | None = None
    mapping: str | None = None
    mapping_file: Path | None = None
    rate_per_s: float | None = None
    rejects: Path | None = None
    via: str | None = None
    token: str | None = None
    source: str = "bus://cli"


def read_items(request: BulkRequest) -> tuple[list[Item], list[Reject]]:
    """The file's valid lines and its rejects (CSV through the mapping)."""
    from bus.bulk import parse_mapping, read_csv, read_ndjson
    from bus.registry import default_registry

    try:
        if request.csv is not None:
            if not request.type_name:
                raise ConfigError("--csv needs --type TYPE (the message type of every row)")
            text = request.mapping or ""
            if request.mapping_file is not None:
                text += "\n" + request.mapping_file.read_text()
            with request.csv.open(newline="", encoding="utf-8-sig") as fh:
                return read_csv(fh, request.type_name, parse_mapping(text), default_registry)
        assert request.file is not None
        with request.file.open("rb") as fh:
            return read_ndjson(fh, default_registry)
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from exc


def paced(items: Sequence[Item], rate_per_s: float | None) -> Iterator[Sequence[Item]]:
    """``items`` in chunks, no faster than ``rate_per_s`` events per second on average."""
    chunk = _CHUNK if rate_per_s is None else max(1, min(_CHUNK, int(rate_per_s // 10) or 1))
    started = time.monotonic()
    for start in range(0, len(items), chunk):
        if rate_per_s is not None:
            due = started + start / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield items[start : start + chunk]


def publish_bulk(
    request: BulkRequest,
    items: Sequence[Item],
    rejects: Sequence[Reject],
    transport: Callable[[], Transport] | None,
) -> int:
    """Send ``items``, write ``rejects``, print the summary; 1 if any line was rejected."""
    if rejects and request.rejects is None:
        lines = "\n".join(f"line {r.line}: {r.reason}" for r in rejects[:20])
        raise ConfigError(
            f"{len(rejects)} invalid line(s), nothing was sent (--rejects FILE sends the "
            f"valid ones and lists these):\n{lines}"
        )
    if request.rejects is not None:
        request.rejects.write_bytes(b"".join(r.as_json() + b"\n" for r in rejects))
    with progress("publishing", total=len(items)) as update:
        if request.via is not None:
            duplicates = _via_http(request, items, update)
        else:
            assert transport is not None
            duplicates = _via_kafka(request, items, transport(), update)
    summary = f"accepted {len(items)}, rejected {len(rejects)}"
    if request.via is not None:
        summary += f" ({duplicates} duplicate(s) of events accepted before)"
    print(summary)
    return 1 if rejects else 0


def _via_http(
    request: BulkRequest, items: Sequence[Item], update: Callable[[int, int], None]
) -> int:
    from bus.client import Client
    from bus.ids import new_id
    from bus.stamping import utc_now

    done = 0
    with Client(request.via or "", request.token, source=request.source) as client:
        for chunk in paced(items, request.rate_per_s):
            events = [
                item.cloudevent(request.source, id=new_id(), time=utc_now()) for item in chunk
            ]
            client.publish_many(events)
            done += len(chunk)
            update(done, len(items))
    return client.duplicates


def _via_kafka(
    request: BulkRequest,
    items: Sequence[Item],
    transport: Transport,
    update: Callable[[int, int], None],
) -> int:
    import asyncio

    from bus.ids import new_id
    from bus.publisher import Publisher, envelope_for, record_for
    from bus.stamping import utc_now

    async def send() -> None:
        async with Publisher(transport, source=request.source) as publisher:
            done = 0
            for chunk in paced(items, request.rate_per_s):  # a short sleep blocks nothing else
                records = [
                    record_for(
                        item.message,
                        envelope_for(
                            item.message,
                            source=item.source or request.source,
                            id=item.id or new_id(),
                            time=item.time or utc_now(),
                            correlationid=item.correlationid,
                            subject=item.subject,
                        ),
                    )
                    for item in chunk
                ]
                await publisher.forward(records)
                done += len(chunk)
                update(done, len(items))

    asyncio.run(send())
    return 0
