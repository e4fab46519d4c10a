"""How tenants are split between worker shards: `--shard k/N`, `--tenants a,b`, and the
stable hash behind them. Pure functions, shared by the shard map, the queues a worker
consumes and the capacity signal."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import ShardMap


def shard_index(slug: str, count: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(slug.encode()) % count


def parse_shard(text: str) -> tuple[int, int]:
    """`"k/N"` → (k, N), with 0 ≤ k < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like k/N (e.g. 0/4), not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= k < N")
    return index, count


@dataclass(frozen=True)
class Shard:
    """The tenants one worker process serves."""

    index: int = 0
    count: int = 1
    tenants: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_options(cls, shard: str | None, tenants: str | None) -> Shard:
        names = frozenset(t.strip() for t in (tenants or "").split(",") if t.strip())
        index, count = parse_shard(shard) if shard else (0, 1)
        return cls(index=index, count=count, tenants=names)

    def owns(self, slug: str, *, dedicated: bool, maps: Sequence[ShardMap] = ()) -> bool:
        """Under the shard maps given (the active one and one being added), else under
        this worker's own `k/N`."""
        if self.tenants:
            return slug in self.tenants
        if dedicated:
            return False
        if maps:
            return any(shard_map.shard_of(slug) == self.index for shard_map in maps)
        return shard_index(slug, self.count) == self.index

    def __str__(self) -> str:
        if self.tenants:
            return f"dedicated to {', '.join(sorted(self.tenants))}"
        return f"shard {self.index}/{self.count}"
