"""The vocabulary shared by every module: small aliases with one meaning each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

__all__ = ["Headers", "OffsetReset"]

#: Kafka record headers as (name, value) pairs; names may repeat, order is kept.
Headers: TypeAlias = Sequence[tuple[str, bytes]]

#: Where a consumer starts on a partition that has no committed offset for its group.
OffsetReset: TypeAlias = Literal["earliest", "latest"]
