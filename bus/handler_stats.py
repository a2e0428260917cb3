"""The per-route recording object of the consume hot path: plain counters, no labels.

A worker takes one :class:`HandlerStats` per (app, topic, handler) from
:meth:`bus.metrics.Metrics.handler_stats` and adds to it once per record; the scrape
(:mod:`bus.metrics_scrape`) turns the counters into Prometheus samples.

Example::

    stats = HandlerStats("identity", "hr.events", "create_account")
    stats.handled(duration_s=0.002, publish_s=0.0001, records=emitted_records)
    stats.handled_count  # 1
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from bus.metric_catalog import DURATION_BUCKETS_S
from bus.record import OutgoingRecord

__all__ = ["HandlerStats"]

_INF_INDEX = len(DURATION_BUCKETS_S)


class HandlerStats:
    """Counters of one (app, topic, handler), updated on the hot path without labels.

    ``produced`` counts emitted records by their ``ce_type`` header, a tuple the codec
    shares between all records of a type (so no label is built per record; a type always
    goes to its one topic, kept in ``produced_topics``); ``*_buckets`` are per-bucket (not
    cumulative) counts over :data:`DURATION_BUCKETS_S` plus +Inf.
    """

    __slots__ = (
        "app",
        "dead_lettered",
        "delayed",
        "duplicates",
        "duration_buckets",
        "duration_sum_s",
        "handler",
        "produced",
        "produced_topics",
        "publish_buckets",
        "publish_sum_s",
        "skipped",
        "topic",
    )

    def __init__(self, app: str, topic: str, handler: str) -> None:
        self.app = app
        self.topic = topic
        self.handler = handler
        self.dead_lettered = 0
        self.skipped = 0
        self.delayed = 0
        self.duplicates = 0
        self.duration_buckets = [0] * (_INF_INDEX + 1)
        self.duration_sum_s = 0.0
        self.publish_buckets = [0] * (_INF_INDEX + 1)
        self.publish_sum_s = 0.0
        self.produced: dict[tuple[str, bytes], int] = {}
        self.produced_topics: dict[tuple[str, bytes], str] = {}

    def handled(
        self,
        duration_s: float,
        publish_s: float,
        records: Sequence[OutgoingRecord] = (),
        _bisect: Callable[[Sequence[float], float], int] = bisect_left,
        _bounds: tuple[float, ...] = DURATION_BUCKETS_S,
    ) -> None:
        """One record handled: handler time, time to send its outputs, the outputs.

        The hot path (once per record): globals bound as defaults, no label building.
        """
        self.duration_buckets[_bisect(_bounds, duration_s)] += 1
        self.duration_sum_s += duration_s
        if records:
            self.publish_buckets[_bisect(_bounds, publish_s)] += 1
            self.publish_sum_s += publish_s
            counts = self.produced
            for record in records:
                header = record[3][3]  # codec.encode puts ce_type fourth
                if header[0] != "ce_type":
                    header = _type_header(record[3])
                n = counts.get(header)
                if n is None:
                    counts[header] = 1
                    self.produced_topics[header] = record[0]
                else:
                    counts[header] = n + 1

    @property
    def handled_count(self) -> int:
        """Records handled (every one is in exactly one duration bucket)."""
        return sum(self.duration_buckets)


def _type_header(headers: Sequence[tuple[str, bytes]]) -> tuple[str, bytes]:
    for header in headers:
        if header[0] == "ce_type":
            return header
    return ("ce_type", b"unknown")
