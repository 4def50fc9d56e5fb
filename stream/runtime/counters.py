"""Prometheus series of the batch runtime, on the worker's registry (:class:`stream.metrics.
Metrics`): batches, re-sent outbox outputs, re-delivered inputs not stepped again, and the
event-time merge's bounded waits that ran out."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

PREFIX = "nurture_runtime_"


class RuntimeCounters:
    def __init__(self, registry: Any) -> None:
        r = registry
        self.batches = Counter(PREFIX + "batches_total", "Batches processed.", registry=r)
        self.batch_inputs = Counter(
            PREFIX + "batch_inputs_total", "Input messages processed in batches.", registry=r
        )
        self.outbox_resent = Counter(
            PREFIX + "outbox_resent_total",
            "Outputs re-sent from a lead's outbox for a re-delivered input (at-least-once).",
            registry=r,
        )
        self.redelivered_skipped = Counter(
            PREFIX + "redelivered_skipped_total",
            "Re-delivered inputs already applied to their lead (not stepped again).",
            registry=r,
        )
        self.late_inputs = Counter(
            PREFIX + "late_inputs_total",
            "Inputs stepped behind their partition's stream time (not in event time).",
            registry=r,
        )
        self.idle_timeouts = Counter(
            PREFIX + "eventtime_idle_timeouts_total",
            "Times a partition stopped waiting for an input topic with unread data "
            "(NURTURE_MAX_TASK_IDLE_MS) and went on in event time without it.",
            registry=r,
        )
