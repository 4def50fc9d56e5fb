"""Per-partition index of the next due time of each lead's timers.

The timers themselves live in each lead's state (and so in the table's changelog); this index
is only a cache that tells the batch processor which leads to look at. It is rebuilt from the
record headers of a partition before the partition's first batch after an assignment, and
dropped when the partition is revoked. Entries are lazily invalidated: a heap entry is live
only if it still equals the lead's recorded next due time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class PartitionDue:
    """The due index of one partition: ``lead_id -> next due`` plus a min-heap over it."""

    __slots__ = ("_heap", "_next")

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._next)

    def set(self, lead_id: str, due: int | None) -> None:
        """Record the lead's earliest pending due time (``None``: no pending timer)."""
        current = self._next.get(lead_id)
        if due is None:
            if current is not None:
                del self._next[lead_id]
            return
        if current == due:
            return
        self._next[lead_id] = due
        heapq.heappush(self._heap, (due, lead_id))
        if len(self._heap) > 2 * len(self._next) + 1024:
            self._compact()

    def next_due(self, lead_id: str) -> int | None:
        return self._next.get(lead_id)

    def earliest(self) -> int | None:
        heap = self._heap
        while heap:
            due, lead_id = heap[0]
            if self._next.get(lead_id) == due:
                return due
            heapq.heappop(heap)
        return None

    def pop_due(self, now: int, limit: int) -> list[tuple[str, int]]:
        """Remove and return up to ``limit`` leads whose next due time is ``<= now``, earliest
        first. The caller must ``set`` each lead's new next due after firing."""
        out: list[tuple[str, int]] = []
        heap = self._heap
        nxt = self._next
        while heap and len(out) < limit:
            due, lead_id = heap[0]
            if due > now:
                break
            heapq.heappop(heap)
            if nxt.get(lead_id) != due:
                continue  # stale entry
            del nxt[lead_id]
            out.append((lead_id, due))
        return out

    def load(self, entries: Iterable[tuple[str, int]]) -> None:
        """Replace the index with ``(lead_id, next_due)`` entries."""
        self._next = dict(entries)
        self._compact()

    def _compact(self) -> None:
        self._heap = [(due, lead) for lead, due in self._next.items()]
        heapq.heapify(self._heap)
