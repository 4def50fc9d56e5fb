"""What a lead batch adds to the product's Prometheus series (:class:`stream.metrics.Metrics`):
inputs by topic and type, processing latency, transitions, actions, timer lags and the
pending timers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.metrics import Metrics
    from stream.runtime.batch import BatchResult
    from stream.runtime.merge import Slot


def observe_lead_batch(
    m: Metrics, result: BatchResult, slots: list[Slot], pending_timers: int
) -> None:
    now = time.time()
    counts: dict[tuple[str, str], int] = {}  # counted per batch: one increment per series
    for slot in slots:
        parsed = slot.item
        event = parsed.event
        if event is not None:
            message = parsed.message
            key = (message.topic, event.type)
            counts[key] = counts.get(key, 0) + 1
            ts = message.timestamp
            if ts:
                m.observe_latency(now - ts)
    m.count_events(counts)
    m.observe_transitions(result.transition_records, partition=result.partition)
    m.observe_actions(result.action_records)
    for lag in result.fired_lags_ms:
        m.timer_fired(lag / 1000.0)
    m.set_pending_timers(pending_timers)
