"""Where Faust hands the worker its input messages: a topic whose "queue" is the worker's own
per-partition buffer instead of a stream.

Faust's conductor fetches, tracks flow control (paused during rebalances) and delivers every
message of a subscribed topic to ``channel.queue.put_nowait_enhanced(event, ...)`` after
``channel.decode(message)``. :class:`BatchTopic` subscribes like any Faust topic (so Faust's
assignment, co-partitioning checks, seeks after a rebalance and offset commits all apply) but
decodes to the raw :class:`faust.types.Message` and puts it into an :class:`Intake` callback:
no per-message ``Stream`` iteration, event object, ``current_event`` context or per-message
ack task. The worker acks the messages itself, per batch, through ``Consumer.ack`` (Faust
commits up to the lowest un-acked offset of each partition).

:class:`Intake` is deliberately NOT registered with ``app.flow_control``: mode's
``FlowControlEvent.resume()`` clears every registered queue, and Faust's recovery calls it
again *after* it has resumed the stream partitions and sought them to the committed offsets
(``Recovery.on_recovery_completed``: ``resume_partitions`` -> ``await perform_seek()`` ->
``flow_control.resume()``). Messages delivered during that await (the seek runs partition by
partition in the consumer thread, and the fetcher goes on fetching from the new positions) were
cleared from the worker's buffers although the consumer's position was already past them: they
were never delivered again, never acked, and the partition's commits stopped at the hole (the
restarted worker of the crash test, the rebalance test's lost actions). The runner clears its
buffers itself when partitions are revoked (:meth:`stream.runtime.agent.LeadRunner.on_revoked`),
and :class:`stream.runtime.drain.DrainConsumer` never delivers a message fetched before a
revocation, so nothing from before a rebalance reaches the buffers after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

Deliver = Callable[[Any, Callable[[], None], Callable[[], None]], None]


class Intake:
    """Stands in for a channel's queue: the conductor puts each message here."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def full(self) -> bool:
        return False  # back pressure is per partition: the deliver callback pauses fetching

    def put_nowait_enhanced(
        self,
        value: Any,
        *,
        on_pressure_high: Callable[[], None],
        on_pressure_drop: Callable[[], None],
    ) -> None:
        self._deliver(value, on_pressure_high, on_pressure_drop)

    def clear(self) -> None:
        """Nothing: the runner owns its buffers (see the module docstring)."""

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0


class BatchTopic(faust.Topic):
    """A Faust topic (one or more topic names) delivering raw messages to an :class:`Intake`."""

    def __init__(self, *args: Any, intake: Intake, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._intake = intake

    @property
    def queue(self) -> Any:
        return self._intake

    async def decode(self, message: Any, *, propagate: bool = False) -> Any:
        return message

    def subscribe(self) -> None:
        """Register with the conductor (what ``async for`` over a topic does in Faust); not
        with flow control (see the module docstring)."""
        app: Any = self.app
        app.topics.add(self)


def unread_on_broker(
    consumer: Any, received: dict[tuple[str, int], int], partition: int
) -> Callable[[str], bool]:
    """``topic -> bool``: whether the broker has data of ``topic``/``partition`` that has not
    been delivered (its high watermark is past the last offset ``received``, or past the
    committed offset when nothing was received yet)."""
    from faust.types import TP

    def unread(topic: str) -> bool:
        tp = TP(topic, partition)
        try:
            high = consumer.highwater(tp)
        except Exception:
            return False  # not assigned (any more)
        if high is None:
            return True
        last = received.get((topic, partition))
        if last is None:
            committed = consumer._committed_offset.get(tp)
            return bool(high > (committed or 0))
        return bool(high > last + 1)

    return unread
