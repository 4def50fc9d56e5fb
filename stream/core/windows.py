"""Exact event-time sliding windows over small, bounded, sorted lists of timestamps.

Events may arrive out of order: inserts keep the list sorted by event time, and every count is
taken over the event times themselves, never arrival order. A window of width ``w`` is the
half-open interval ``[a, a + w)``. Memory stays bounded: entries older than the retention
horizon are pruned and at most ``cap`` entries (the newest) are kept.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from typing import Any


def insert_sorted(items: list[Any], item: Any, cap: int) -> None:
    """Insert keeping sort order; drop the oldest entries beyond ``cap``."""
    if not items or item >= items[-1]:
        items.append(item)
    else:
        insort(items, item)
    if len(items) > cap:
        del items[: len(items) - cap]


def with_item(items: tuple[Any, ...], item: Any, cap: int) -> tuple[Any, ...]:
    """``items`` (sorted) with ``item`` inserted in order, only the newest ``cap`` kept."""
    if not items or item >= items[-1]:
        out = (*items, item)
    else:
        lst = list(items)
        insort(lst, item)
        out = tuple(lst)
    return out[len(out) - cap :] if len(out) > cap else out


def prune_before(items: list[Any], horizon: int) -> None:
    """Drop entries whose first element (event time) is older than ``horizon``."""
    n = 0
    for it in items:
        t = it[0] if isinstance(it, tuple) else it
        if t >= horizon:
            break
        n += 1
    if n:
        del items[:n]


def count_in(times: Sequence[int], start: int, end: int) -> int:
    """How many of the sorted ``times`` fall in ``[start, end)``."""
    return bisect_left(times, end) - bisect_left(times, start)


def max_in_window_containing(times: Sequence[int], t: int, width: int) -> int:
    """The largest count of sorted ``times`` in any window ``[a, a + width)`` that contains ``t``.

    ``t`` itself is expected among ``times``. Order-independent: the same set gives the same
    answer whatever order its events arrived in.
    """
    lo = bisect_right(times, t - width)
    hi = bisect_left(times, t + width)
    near = times[lo:hi]
    best = 0
    j = 0
    # windows starting at each candidate a = near[i] with a <= t < a + width
    for i, a in enumerate(near):
        if a > t:
            break
        if j < i:
            j = i
        while j < len(near) and near[j] < a + width:
            j += 1
        if t < a + width:
            best = max(best, j - i)
    return best
