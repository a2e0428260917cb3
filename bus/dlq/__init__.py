"""Dead-letter tooling: read, filter, show and replay the records in ``*.dlq`` topics.

Three modules, read in this order:

- ``letters.py`` (pure): a dead-letter :class:`~bus.record.Record` as a :class:`DeadLetter`,
  :class:`DeadLetterFilter`, and the replay decisions (:func:`plan_replay`,
  :func:`replay_record`);
- ``render.py`` (pure): the table's cells, the detail, JSON;
- ``io.py`` (shell): :func:`read_dead_letters` reads a snapshot of the dead-letter topics
  through a :class:`~bus.transports.base.Transport` (:data:`READ_CONCURRENCY` topics at
  once, listed in a fixed order), :func:`replay_dead_letters` sends
  replays. ``bus dlq`` (``bus/cli/dlq.py``) is the command line on top.

Every name is re-exported here, so ``from bus.dlq import ...`` is the one import.

Decisions (see docs/dlq.md):

- **ID**: the CloudEvents ``ce_id`` header when present, else ``<dlq-topic>:<partition>:
  <offset>``. The location form always names exactly one dead letter.
- **Replay count**: a replayed record carries ``bus_dlq_replays`` (1 after the first
  replay). Dead-lettered again, it keeps that header, so the new dead letter knows how
  often it went round; a replay of it above ``max_replays`` is refused.
- **Superseded copies**: a replayed event that fails again is a second dead letter with the
  same ID and a higher replay count; a replay by ID or filter takes only the newest copy
  of each ID, so one run never sends the same event twice.
- **Snapshot**: a read stops at the end of each partition as first seen by the consumer
  (its high watermark; not ``end_offsets()``, which Tansu gets wrong), so a replay into a
  scanned topic is never read back by the same run.

Example::

    letters = await read_dead_letters(transport, ["hr.events.dlq"])
    wanted = [d for d in letters if DeadLetterFilter(reason="invalid").matches(d)]
    print(format_detail(wanted[0]))
"""

from bus.dlq.io import (
    READ_CONCURRENCY,
    list_dead_letter_topics,
    read_dead_letters,
    replay_dead_letters,
)
from bus.dlq.letters import (
    DEFAULT_MAX_REPLAYS,
    DLQ_SUFFIX,
    REPLAYS_HEADER,
    DeadLetter,
    DeadLetterFilter,
    ReplayPlan,
    newest_copies,
    newest_first,
    parse_since,
    plan_replay,
    replay_record,
)
from bus.dlq.render import (
    TABLE_HEADERS,
    format_copies,
    format_detail,
    format_nothing_matched,
    format_summary,
    table_rows,
    to_json,
)

__all__ = [
    "DEFAULT_MAX_REPLAYS",
    "DLQ_SUFFIX",
    "READ_CONCURRENCY",
    "REPLAYS_HEADER",
    "TABLE_HEADERS",
    "DeadLetter",
    "DeadLetterFilter",
    "ReplayPlan",
    "format_copies",
    "format_detail",
    "format_nothing_matched",
    "format_summary",
    "list_dead_letter_topics",
    "newest_copies",
    "newest_first",
    "parse_since",
    "plan_replay",
    "read_dead_letters",
    "replay_dead_letters",
    "replay_record",
    "table_rows",
    "to_json",
]
