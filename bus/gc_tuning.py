"""Garbage-collector settings for a long-running bus process.

CPython's cyclic collector runs a young collection every 700 net allocations and, every
so often, a full one that walks every tracked object - the imported modules, pydantic's
schemas and the app's own state included. A bus process allocates a few dozen objects per
message and keeps few of them, so at the defaults the collector costs a large share of
the CPU (measured: the saga benchmark ran 230 sagas/s at the defaults, 390 with the start-up
objects frozen and a young threshold of 50,000; ``bench/sagas.py``). Two changes, applied
once the process has started (``bus run``, ``bus sagas run``, ``bus sagas demo``):

- ``gc.freeze()`` moves everything alive at start-up (modules, classes, schemas) to the
  permanent generation, which collections skip;
- the young threshold goes to ``young`` (``BUS_GC_YOUNG``, 50,000; 0 keeps Python's), so
  young collections run 70x less often; each scans more objects, but most are already
  garbage, freed by reference counting before any collection sees them.

Reference cycles are still collected; only their timing changes.

Example::

    tune_gc(50_000)     # after imports and set-up, before serving
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc(young: int = 50_000) -> None:
    """Freeze the start-up heap and raise the young-generation threshold to ``young``.

    ``young`` 0 leaves the collector as Python set it (nothing frozen either).
    """
    if young <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
