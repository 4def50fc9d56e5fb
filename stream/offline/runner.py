"""The engine over a stream of events in event time: one clock, one timer heap for all leads.

Replay's clock is the *event-time watermark*: the largest ``occurred_at`` seen so far. Before an
event is processed the clock moves to ``max(clock, event.at)`` and every pending timer with
``due <= clock`` fires, in ``(due, lead_id, timer_id)`` order across all leads. Timers that a
step schedules at or before the clock therefore fire before the next input.
"""

from __future__ import annotations

import base64
import gc
import gzip
import heapq
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from stream.core.model import Event, TimerFired
from topics.parse import InvalidEvent

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.core.engine import StepResult

#: garbage-collector thresholds while replaying (see :func:`replay_collector`)
REPLAY_GC_THRESHOLD = (50_000, 20, 100)


@contextmanager
def replay_collector() -> Iterator[None]:
    """The garbage collector tuned for a replay loop, restored afterwards.

    The run allocates many short-lived containers per event and no reference cycles of its
    own: start-up objects (modules, config) are moved out of the collector's reach and the
    young generation is collected less often (about 10% of the core loop's CPU time). Restored
    (and unfrozen) when the run ends, so callers in the same process see the collector as they
    left it."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*REPLAY_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


StepSink = Callable[["StepResult"], None]


def open_events(path: Path) -> IO[bytes]:
    """Open an events file for binary line reading; gzip is detected by its magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def dead_letter_line(number: int, raw: bytes, error: InvalidEvent) -> dict[str, Any]:
    """The record written to DIR/dead_letter.jsonl for a rejected line."""
    record: dict[str, Any] = {"line": number, "reason": error.reason, "detail": error.detail}
    try:
        record["original_text"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["original"] = base64.b64encode(raw).decode()
    return record


class EventTimeRunner:
    """The engine over a stream of events in event time (see the module docstring).

    ``sink`` receives every :class:`StepResult` in processing order.
    """

    def __init__(
        self, config: RulesConfig, sink: StepSink, step: Callable[..., Any] | None = None
    ) -> None:
        if step is None:
            from stream.core.engine import step as engine_step

            step = engine_step
        self._step: Callable[..., Any] = step
        self.config = config
        self.sink = sink
        self.states: dict[str, Any] = {}
        self.pending: dict[str, dict[str, int]] = {}
        self.heap: list[tuple[int, str, str]] = []
        self.clock: int | None = None
        self.timers_fired = 0
        self._last: dict[str, Any] = {}  # lead -> the timers tuple of its last step

    def _apply(self, lead_id: str, inp: Event | TimerFired) -> None:
        result = self._step(self.states.get(lead_id), inp, self.config)
        self.states[lead_id] = result.state
        timers = result.timers
        if timers is self._last.get(lead_id):
            self.sink(result)  # the engine returned the very same timers: nothing to index
            return
        self._last[lead_id] = timers
        old = self.pending.get(lead_id)
        if timers:
            new = {t.timer_id: t.due for t in timers}
            if new != old:
                heap = self.heap
                for timer_id, due in new.items():
                    if old is None or old.get(timer_id) != due:
                        heapq.heappush(heap, (due, lead_id, timer_id))
                self.pending[lead_id] = new
        elif old is not None:
            del self.pending[lead_id]
        self.sink(result)

    def fire_until(self, until: int) -> None:
        """Fire every pending timer with ``due <= until``, in (due, lead, timer) order."""
        heap = self.heap
        pending = self.pending
        while heap and heap[0][0] <= until:
            due, lead_id, timer_id = heapq.heappop(heap)
            timers = pending.get(lead_id)
            if timers is None or timers.get(timer_id) != due:
                continue  # cancelled or rescheduled: a stale heap entry
            self.timers_fired += 1
            self._apply(lead_id, TimerFired(lead_id, timer_id, due))

    def process(self, event: Event) -> None:
        clock = self.clock
        if clock is None or event.at > clock:
            clock = self.clock = event.at
        if self.heap and self.heap[0][0] <= clock:
            self.fire_until(clock)
        self._apply(event.lead_id, event)

    def finish(self, until: int | None = None) -> int | None:
        """Fire the timers due up to ``until`` (default: the clock). Returns the horizon used."""
        horizon = self.clock if until is None else until
        if horizon is not None:
            self.fire_until(horizon)
        return horizon

    @property
    def pending_timers(self) -> int:
        return sum(len(t) for t in self.pending.values())
