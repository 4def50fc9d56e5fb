"""A log line for a topic partition that has data to read but gets none delivered.

The symptom this watches for: a restarted worker whose consumer never delivers some
partitions' messages again (their committed offsets stay, the worker is idle, nothing else is
logged). :class:`StallWatch` looks at the runner's owned input partitions every ``interval``
seconds; a partition whose high watermark is past its committed offset (or that was never
fetched: aiokafka knows no high watermark for it) and that neither received nor committed
anything since the previous look is logged at WARNING with what decides whether it is fetched
and committed: Faust's active / paused / buffered partition sets, the runner's own pause,
Faust's read and committed offsets, acked-but-uncommitted and unacked offsets, and aiokafka's
position and pause flag. Only the runtime reads the clock; nothing here changes any state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("nurture.stall")


def consumer_view(consumer: Any, topic: str, partition: int) -> dict[str, Any]:
    """What Faust and aiokafka know about ``topic``/``partition`` (best effort: any part that
    cannot be read is left out)."""
    from faust.types import TP

    tp = TP(topic, partition)
    view: dict[str, Any] = {}
    active = getattr(consumer, "_active_partitions", None)
    view["active"] = None if active is None else tp in active
    view["faust_paused"] = tp in getattr(consumer, "_paused_partitions", ())
    view["buffered_set"] = tp in getattr(consumer, "_buffered_partitions", ())
    view["read_offset"] = getattr(consumer, "_read_offset", {}).get(tp)
    view["committed"] = getattr(consumer, "_committed_offset", {}).get(tp)
    view["flow_active"] = getattr(consumer, "flow_active", None)
    acked = sorted(getattr(consumer, "_acked", {}).get(tp) or ())
    view["acked"] = (len(acked), acked[:3])  # acked, not committed: a hole stops the commit
    view["gap"] = len(getattr(consumer, "_gap", {}).get(tp) or ())
    unacked = getattr(consumer, "_unacked_messages", ())
    view["unacked"] = sorted(m.offset for m in list(unacked) if m.tp == tp)[:3]
    try:
        view["highwater"] = consumer.highwater(tp)
    except Exception:  # not assigned (any more)
        view["highwater"] = None
    try:
        from aiokafka.structs import TopicPartition

        aio = consumer._thread._ensure_consumer()
        state = aio._subscription.subscription.assignment.state_value(
            TopicPartition(topic, partition)
        )
        if state is not None:
            view["aiokafka_position"] = state._position
            view["aiokafka_paused"] = state.paused
            view["aiokafka_status"] = str(state._status)
    except Exception:  # no consumer, no subscription or no assignment yet
        pass
    return view


class StallWatch:
    """Logs the input partitions that have unread data but no delivery for ``interval`` s."""

    def __init__(
        self,
        consumer: Callable[[], Any],
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.interval = interval
        self.clock = clock
        self.last_look = clock()
        # (received, committed) at the previous look
        self.seen: dict[tuple[str, int], tuple[int | None, int | None]] = {}
        self.stalls = 0  # stalled partitions logged (one per partition per look)

    def due(self) -> bool:
        """Whether ``interval`` seconds passed since the last look (then it is one)."""
        now = self.clock()
        if now - self.last_look < self.interval:
            return False
        self.last_look = now
        return True

    def look(
        self,
        topics: Iterable[str],
        partitions: Iterable[int],
        received: Mapping[tuple[str, int], int],
        paused: Mapping[tuple[str, int], Any],
    ) -> list[tuple[str, int]]:
        """The stalled partitions (logged): lag (high watermark past the committed offset), and
        the same received and committed offsets as at the previous look."""
        consumer = self.consumer()
        stalled: list[tuple[str, int]] = []
        seen: dict[tuple[str, int], tuple[int | None, int | None]] = {}
        for p in partitions:
            for topic in topics:
                tp = (topic, p)
                last = received.get(tp)
                view = consumer_view(consumer, topic, p)
                committed = view["committed"]
                seen[tp] = (last, committed)
                high = view["highwater"]
                # lag: the high watermark past the committed offset, or none known (no fetch
                # response for it in this process: never fetched)
                lagging = high is None or high > (committed or 0)
                if not lagging or self.seen.get(tp) != (last, committed):
                    continue  # nothing to do, first look, or delivered or committed since
                stalled.append(tp)
                self.stalls += 1
                log.warning(
                    "stalled input %s:%d: high watermark %s, committed %s, received up to %s; "
                    "no delivery and no commit for %.0f s; runner paused %s; consumer %s",
                    topic,
                    p,
                    high,
                    committed,
                    last,
                    self.interval,
                    tp in paused,
                    view,
                )
        self.seen = seen
        return stalled


def log_partition_state(
    to: logging.Logger, p: int, merge: Any, unread: Callable[[str], bool], processor: Any
) -> None:
    """One DEBUG line to ``to`` of what partition ``p`` has buffered, what the broker has unread,
    which topics the merge stopped waiting for, its stream time and next due timer."""
    to.debug(
        "partition %d: buffered %s, unread %s, forced %s, stream time %s, due %s",
        p,
        {t: len(q) for t, q in merge.queues.items()},
        [t for t in merge.queues if unread(t)],
        sorted(merge.forced),
        processor.stream_time(p),
        processor.earliest_due(p),
    )
