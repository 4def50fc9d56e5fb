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

Faust clears every channel queue when it suspends or resumes flow for a rebalance
(``app.flow_control``), and seeks to the committed offsets afterwards; :class:`Intake` is
registered with ``app.flow_control`` so the worker's buffers are cleared at the same moments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

Deliver = Callable[[Any, Callable[[], None], Callable[[], None]], None]


class Intake:
    """Stands in for a channel's queue: the conductor puts each message here."""

    def __init__(self, deliver: Deliver, clear: Callable[[], None]) -> None:
        self._deliver = deliver
        self._clear = clear

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
        self._clear()

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
        """Register with the conductor (what ``async for`` over a topic does in Faust) and
        with flow control (what a channel's queue does)."""
        app: Any = self.app
        app.topics.add(self)
        app.flow_control.manage_queue(self._intake)
