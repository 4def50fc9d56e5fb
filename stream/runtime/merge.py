"""Event-time merge of one partition's co-partitioned input topics (no Faust, no clock).

Kafka orders a lead's messages only within one topic. Within a partition the worker therefore
takes the heads of its input topics in ``occurred_at`` order, and holds all of them while an
input topic of the partition has nothing buffered but unread data on the broker behind it
(Kafka Streams' ``max.task.idle.ms``): a backfill produced one topic after the other, or a
worker back from an outage, is read in event time, not in fetch order. The wait is bounded:
after ``max_idle`` seconds the merge goes on without that topic (counted in
``idle_timeouts``) until the topic delivers again or has nothing left to read.

Equal event times on different topics are taken in the merge's topic order (the worker's:
CRM, product, email). Messages that failed validation carry the lowest time and go first
(they change no state).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# (topic) -> whether the broker holds data of this topic-partition not yet delivered to us
Unread = Callable[[str], bool]


@dataclass(slots=True)
class Slot:
    """One buffered input message: its event time (``at``) and what the runner needs."""

    at: int
    offset: int
    item: Any


class PartitionMerge:
    """Buffers of one partition's input topics and the event-time merge over their heads."""

    __slots__ = ("forced", "held_since", "idle_timeouts", "queues")

    def __init__(self, topics: Iterable[str]) -> None:
        self.queues: dict[str, deque[Slot]] = {t: deque() for t in topics}
        self.held_since: float | None = None
        self.forced: set[str] = set()  # topics the merge stopped waiting for
        self.idle_timeouts = 0

    def push(self, topic: str, slot: Slot) -> int:
        """Buffer a message; returns the topic's buffered count. A message at or below the
        topic's last buffered offset means the consumer went back (a seek to the committed
        offset): it delivers everything from there again, so the buffered copies from that
        offset on are dropped (one copy of each message, in offset order)."""
        queue = self.queues[topic]
        while queue and queue[-1].offset >= slot.offset:
            queue.pop()
        queue.append(slot)
        self.forced.discard(topic)
        return len(queue)

    def buffered(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def clear(self) -> None:
        for q in self.queues.values():
            q.clear()
        self.held_since = None
        self.forced.clear()

    def waiting_for(self, unread: Unread) -> list[str]:
        """Empty topics with unread data that the merge still waits for."""
        return [t for t, q in self.queues.items() if not q and t not in self.forced and unread(t)]

    def caught_up(self, unread: Unread) -> bool:
        """Nothing buffered and nothing unread: the partition's stream time may follow the
        wall clock."""
        return all(not q and not unread(t) for t, q in self.queues.items())

    def hold_remaining(self, now: float, max_idle: float) -> float | None:
        """Seconds until the current hold expires (None: not holding)."""
        if self.held_since is None:
            return None
        return max(0.0, self.held_since + max_idle - now)

    def take(self, limit: int, unread: Unread, now: float, max_idle: float) -> list[Slot]:
        """Up to ``limit`` buffered messages in event-time order (ties: topic order). Stops
        early while an input topic has unread data and nothing buffered, for at most
        ``max_idle`` seconds from when that wait began."""
        queues = self.queues
        out: list[Slot] = []
        for topic in [t for t in self.forced if not unread(t)]:
            self.forced.discard(topic)
        while len(out) < limit:
            best: deque[Slot] | None = None
            best_at = 0
            waiting = False
            for topic, queue in queues.items():
                if queue:
                    at = queue[0].at
                    if best is None or at < best_at:
                        best, best_at = queue, at
                elif topic not in self.forced and unread(topic):
                    waiting = True
            if best is None:
                break
            if waiting:
                if self.held_since is None:
                    self.held_since = now
                if now - self.held_since < max_idle:
                    return out
                for topic in self.waiting_for(unread):
                    self.forced.add(topic)
                    self.idle_timeouts += 1
                self.held_since = None
                continue
            self.held_since = None
            take = min(limit - len(out), len(best))
            # drain the chosen topic while its head stays the earliest (a topic's own order)
            out.append(best.popleft())
            take -= 1
            if take and len(queues) > 1:
                others = [q[0].at for q in queues.values() if q and q is not best]
                bound = min(others) if others else None
                while take and best and (bound is None or best[0].at <= bound):
                    out.append(best.popleft())
                    take -= 1
            elif take:
                while take and best:
                    out.append(best.popleft())
                    take -= 1
        return out
