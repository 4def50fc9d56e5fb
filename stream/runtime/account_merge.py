"""Event-time order on the account topic: the merge over the lead partitions it is fed from.

The account topic of one account partition interleaves the forwards of every lead partition
(an account's users are leads on different partitions), each lead partition's forwards in its
own event-time order (:mod:`stream.runtime.merge`). Read in topic order, an account would see a
backlog of one lead partition before the earlier events of another; replay sees them in event
time. :class:`OriginMerge` restores event time: one queue per origin (lead partition), the
heads taken in ``occurred_at`` order, held while an origin with nothing buffered may still send
something earlier - it has not reported progress up to the candidate's time. Progress comes
from the lead runner (:class:`Progress`): after a round of batches, the lead runner tells
every account partition the stream times of the lead partitions whose time moved, in one marker
per account partition (at most every ``interval`` seconds, and at once when a partition goes
idle), so an origin with no account events for a partition does not hold it.

The wait is bounded like the lead merge's (Kafka Streams' ``max.task.idle.ms``): after
``max_idle`` seconds the merge goes on without the silent origins (``idle_timeouts``) until they
send again. Exact event time therefore needs every lead partition to report within
``max_idle`` (a lead partition that has not started, or a lead worker that is down that long,
is passed over, and its events then arrive late, as in the lead merge).

An idle lead partition is not declared "holds nobody" (as a lead topic with nothing unread is):
the declaration cannot see input that arrives after it (a backlog produced in rounds, or old
markers read again after a restart), and it let events pass earlier ones in the crash test. So
in a quiet period an account event waits up to ``max_idle`` for the quiet lead partitions: the
price of exact event time.

Messages without an event (progress markers, invalid messages) go first: they change no
account and their offsets are acked at once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from stream.runtime.merge import Slot

if TYPE_CHECKING:
    from stream.runtime.sender import Record

NO_TIME = -(2**62)
CONTROL = -1  # the queue of messages without an event (markers, invalid messages)
PROGRESS_FIELD = b'{"progress":'


def progress_value(origin: int, stream_time: int) -> bytes:
    """An account-topic marker of one lead partition (the only kind read by workers before
    the combined marker): ``origin`` has processed up to ``stream_time``."""
    return orjson.dumps({"progress": [origin, stream_time]})


def progress_values(reports: Iterable[tuple[int, int]]) -> bytes:
    """A combined marker: each ``(origin, stream_time)`` of ``reports``, as
    :func:`progress_value` says it of one."""
    return orjson.dumps({"progress": [[origin, at] for origin, at in reports]})


def _pair(item: Any) -> tuple[int, int] | None:
    if type(item) is not list or len(item) != 2:
        return None
    origin, stream_time = item
    if type(origin) is not int or type(stream_time) is not int:
        return None
    return origin, stream_time


def open_progress(value: bytes) -> list[tuple[int, int]] | None:
    """The (origin, stream time) reports of a marker of either kind, or None if ``value`` is
    not one."""
    if not value.startswith(PROGRESS_FIELD):
        return None
    try:
        body = orjson.loads(value)["progress"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    one = _pair(body)
    if one is not None:
        return [one]
    if type(body) is not list or not body:
        return None
    pairs = [_pair(item) for item in body]
    return None if None in pairs else [pair for pair in pairs if pair is not None]


class Progress:
    """The lead runner's progress markers to the account topic. :meth:`note` keeps the stream
    time a lead partition reached; :meth:`flush` (after a round) sends what moved since the
    last flush, at most every ``interval`` seconds, and at once when a partition went idle.

    One combined marker per account partition carries every lead partition (``combined``);
    ``combined=False`` sends one marker per lead partition and account partition, the only kind
    a worker before the combined marker reads (the rolling upgrade keeps it with
    ``account_forward_format=json``): at a live rate that was 12 x 12 records every 0.2 s."""

    def __init__(
        self,
        topic: str,
        partitions: int,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        combined: bool = True,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.interval = interval
        self.clock = clock
        self.combined = combined
        self.reported: dict[int, int] = {}  # origin -> the stream time last sent
        self.pending: dict[int, int] = {}  # origin -> a later stream time, not yet sent
        self.urgent = False  # a partition went idle with its time unsent
        self.flushed = -1e18  # clock of the last flush that sent
        self.sent = 0

    def note(self, origin: int, stream_time: int, idle: bool = False) -> None:
        """Lead partition ``origin`` has processed up to ``stream_time`` (its forwards up to
        there are queued in the producer before the next :meth:`flush`)."""
        if stream_time > self.pending.get(origin, self.reported.get(origin, NO_TIME)):
            self.pending[origin] = stream_time
        if idle and origin in self.pending:  # it went quiet with its time unsent
            self.urgent = True

    def flush(self) -> list[Record]:
        """The markers of what was noted since the last flush, if it is time to send them."""
        now = self.clock()
        if not self.pending or (not self.urgent and now - self.flushed < self.interval):
            return []
        reports = sorted(self.pending.items())
        self.reported.update(self.pending)
        self.pending.clear()
        self.urgent = False
        self.flushed = now
        if self.combined:
            values = [progress_values(reports)]
        else:
            values = [progress_value(origin, at) for origin, at in reports]
        self.sent += self.partitions * len(values)
        return [(self.topic, q, None, value) for value in values for q in range(self.partitions)]

    def forget(self, origins: Iterable[int]) -> None:
        """Revoked lead partitions: what was noted of them is not sent (their next owner
        reports them); assigned again, they are reported anew."""
        for origin in origins:
            self.pending.pop(origin, None)
            self.reported.pop(origin, None)


def _source(slot: Slot) -> int:
    event: Any = slot.item.event
    return CONTROL if event is None else int(event.source)


class OriginMerge:
    """Buffers of one account partition, one per origin, and the event-time merge over them.
    The interface of :class:`stream.runtime.merge.PartitionMerge` (the runner's loop uses it
    unchanged); ``unread`` is only asked about the account topic itself."""

    __slots__ = (
        "count",
        "forced",
        "held_since",
        "idle_timeouts",
        "last_offset",
        "progress",
        "progress_at",
        "queues",
        "topic",
    )

    def __init__(self, topic: str, origins: Iterable[int]) -> None:
        self.topic = topic
        self.queues: dict[int, deque[Slot]] = {o: deque() for o in (CONTROL, *origins)}
        self.progress: dict[int, int] = {}  # origin -> the stream time it reported
        self.progress_at: dict[int, int] = {}  # origin -> the offset of that marker
        self.held_since: float | None = None
        self.forced: set[int] = set()  # origins the merge stopped waiting for
        self.idle_timeouts = 0
        self.last_offset = -1  # of the last message buffered
        self.count = 0  # messages buffered (kept, not summed over the queues per message)

    def _rewind(self, offset: int) -> None:
        """A message at or below the last buffered offset means the consumer went back (a seek
        to the committed offset) and delivers everything from there again: the buffered copies
        from that offset on are dropped, in every origin's queue (one copy of each message, as
        :meth:`stream.runtime.merge.PartitionMerge.push`), and so is the progress of markers
        from that offset on. A marker promises only what follows it on the topic; the forwards
        before it are delivered again, earlier than its stream time, and the merge must wait
        for them (kept, it let an account event pass an earlier one of another origin after a
        restart). The origin's earlier markers are not remembered: it is unknown again until
        a marker is read again (at most ``max_idle``, as after a restart)."""
        if offset > self.last_offset:
            return
        for buffered in self.queues.values():
            while buffered and buffered[-1].offset >= offset:
                buffered.pop()
                self.count -= 1
        for origin in [o for o, at in self.progress_at.items() if at >= offset]:
            del self.progress_at[origin]
            del self.progress[origin]
        self.last_offset = offset - 1

    def push(self, topic: str, slot: Slot) -> int:
        """Buffer a message in its origin's queue; returns the partition's buffered count (a
        message delivered again after a seek back: :meth:`_rewind`)."""
        self._rewind(slot.offset)
        self.last_offset = slot.offset
        origin = _source(slot)
        queue = self.queues.get(origin)
        if queue is None:  # an origin beyond the configured partitions: merge it too
            queue = self.queues[origin] = deque()
        queue.append(slot)
        self.count += 1
        self.forced.discard(origin)
        return self.count

    def advance(self, origin: int, stream_time: int, offset: int) -> None:
        """A progress marker at ``offset``: after it on the topic, ``origin`` sends nothing
        earlier than ``stream_time`` (but late events). Applied before the marker's message
        is buffered (:meth:`push`), so a seek back is seen here first."""
        self._rewind(offset)
        if stream_time > self.progress.get(origin, NO_TIME):
            self.progress[origin] = stream_time
            self.progress_at[origin] = offset
            self.forced.discard(origin)
        self.queues.setdefault(origin, deque())

    def buffered(self) -> int:
        return self.count

    def clear(self) -> None:
        """Drop the buffers and the progress (the consumer seeks back: see :meth:`_rewind`)."""
        for q in self.queues.values():
            q.clear()
        self.count = 0
        self.progress.clear()
        self.progress_at.clear()
        self.held_since = None
        self.forced.clear()
        self.last_offset = -1

    def caught_up(self, unread: Callable[[str], bool]) -> bool:
        return self.buffered() == 0 and not unread(self.topic)

    def hold_remaining(self, now: float, max_idle: float) -> float | None:
        if self.held_since is None:
            return None
        return max(0.0, self.held_since + max_idle - now)

    def _bound(self, origin: int) -> int:
        """The earliest time ``origin`` may still deliver (its head, else its progress)."""
        queue = self.queues[origin]
        if queue:
            return queue[0].at
        if origin == CONTROL or origin in self.forced:
            return 2**62
        return self.progress.get(origin, NO_TIME)

    def take(self, limit: int, unread: Any, now: float, max_idle: float) -> list[Slot]:
        """Up to ``limit`` buffered messages in event-time order. Stops early while an origin
        with nothing buffered has not reported progress up to the earliest head, for at most
        ``max_idle`` seconds from when that wait began."""
        out: list[Slot] = []
        queues = self.queues
        control = queues[CONTROL]
        while control and len(out) < limit:
            out.append(control.popleft())
        while len(out) < limit:
            best = min((o for o, q in queues.items() if q), key=self._bound, default=None)
            if best is None:
                break
            head = queues[best][0].at
            waiting = [o for o, q in queues.items() if not q and self._bound(o) < head]
            if waiting:
                if self.held_since is None:
                    self.held_since = now
                if now - self.held_since < max_idle:
                    self.count -= len(out)
                    return out
                self.forced.update(waiting)
                self.idle_timeouts += len(waiting)
                self.held_since = None
                continue
            self.held_since = None
            bound = min((self._bound(o) for o in queues if o != best), default=2**62)
            queue = queues[best]
            out.append(queue.popleft())
            while queue and len(out) < limit and queue[0].at <= bound:
                out.append(queue.popleft())
        self.count -= len(out)
        return out
