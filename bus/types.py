"""The vocabulary shared by every module: small aliases with one meaning each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias

__all__ = ["Headers", "OffsetReset", "Stamp"]

#: Kafka record headers as (name, value) pairs; names may repeat, order is kept.
Headers: TypeAlias = Sequence[tuple[str, bytes]]

#: Where a consumer starts on a partition that has no committed offset for its group.
OffsetReset: TypeAlias = Literal["earliest", "latest"]

#: Makes the ``ce_id`` and ``ce_time`` headers of one emitted record, from one clock read.
Stamp: TypeAlias = Callable[[], tuple[tuple[str, bytes], tuple[str, bytes]]]
