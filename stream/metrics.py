"""Every Prometheus metric of the worker, declared in one place.

Usage by the runtime (``stream/app.py``, ``stream/runtime/*``)::

    metrics = Metrics()                      # fresh CollectorRegistry; tests get isolation free
    metrics.event_in(topic, event_type)      # each input message decoded
    metrics.dead_letter("invalid_json")      # each message sent to nurture.dead-letter
    metrics.observe_transition(record)       # each Transition.to_record() published
    metrics.observe_action(record)           # each Action.to_record() published
    metrics.observe_latency(seconds)         # message timestamp -> actions produced
    metrics.timer_fired(lag_seconds)         # wall clock at firing minus timer due time
    metrics.set_pending_timers(n)           # leads with a pending timer (due index size)
    metrics.set_consumer_lag(topic, partition, lag)
    metrics.set_recovery_progress(fraction)  # 0.0 .. 1.0 while the table recovers
    metrics.set_occupancy(program, state, n) # or move_lead(...) on each transition
    body = metrics.render()                  # GET /metrics, Content-Type: CONTENT_TYPE

Pipeline series (``nurture_pipeline_*``) are fed by :class:`stream.report.PipelineReport`
when it is built with ``PipelineReport(metrics=metrics)``: the report knows each lead's entries
and so is the one place that can tell an entry's cohort, tier and holdout group when an
opportunity arrives. The runtime only has to feed the report every transition and action record.

Names follow the Prometheus conventions: ``_total`` for counters, base units (seconds) in the
name, ``_ratio`` for a 0..1 gauge. A ``None`` label value is rendered as the empty string.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "nurture_"

# event-to-action latency: the budget is p99 <= 50 ms, so resolve finely below 100 ms
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# timer firing lag: the budget is p99 <= 1 s
TIMER_LAG_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0)
_DAY = 86_400.0
# time from program entry to opportunity, in seconds: 1, 3, 7, 14, 30, 60, 90, 180, 365 days
TIME_TO_OPPORTUNITY_BUCKETS: tuple[float, ...] = tuple(
    d * _DAY for d in (1, 3, 7, 14, 30, 60, 90, 180, 365)
)

PIPELINE_LABELS: tuple[str, ...] = ("program", "cohort", "icp_tier", "group")
TEMPLATE_LABELS: tuple[str, ...] = ("program", "template")


def _s(value: object) -> str:
    return "" if value is None else str(value)


class Metrics:
    """All worker metrics on one registry. ``registry=None`` creates a fresh one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # no ``*_created`` series: they double the cardinality and no panel or alert uses them
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.events_in = Counter(
            p + "events_in_total",
            "Input messages decoded, by topic and event type.",
            ("topic", "type"),
            registry=r,
        )
        self.last_event_timestamp = Gauge(
            p + "last_event_timestamp_seconds",
            "Wall-clock time (unix seconds) of the last input message, or of worker start.",
            registry=r,
        )
        # start at construction so "no events for N minutes" also covers a worker fed nothing
        self.last_event_timestamp.set(time.time())
        self.dead_letters = Counter(
            p + "dead_letters_total",
            "Messages sent to the dead-letter topic, by reason.",
            ("reason",),
            registry=r,
        )
        self.processing_latency = Histogram(
            p + "processing_latency_seconds",
            "Time from the input message timestamp to its actions being produced.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag_messages",
            "Consumer lag (high watermark minus committed offset) per input partition.",
            ("topic", "partition"),
            registry=r,
        )
        self.timer_firing_lag = Histogram(
            p + "timer_firing_lag_seconds",
            "Wall-clock delay between a timer's due time and its firing.",
            buckets=TIMER_LAG_BUCKETS,
            registry=r,
        )
        self.timers_pending = Gauge(
            p + "timers_pending",
            "Leads with a pending durable timer (the worker's due index holds each lead's next "
            "due timer).",
            registry=r,
        )
        self.recovery_progress = Gauge(
            p + "table_recovery_progress_ratio",
            "Changelog recovery progress of a state table, 0 to 1 (1 = recovered).",
            ("table",),
            registry=r,
        )
        self.leads = Gauge(
            p + "leads",
            "Leads currently in each program and state (occupancy).",
            ("program", "state"),
            registry=r,
        )
        self.transitions = Counter(
            p + "transitions_total",
            "Program transitions, by source program, target program and rule.",
            ("from_program", "to_program", "reason"),
            registry=r,
        )
        self.actions = Counter(
            p + "actions_total",
            "Actions published, by type, channel and program.",
            ("type", "channel", "program"),
            registry=r,
        )
        self.skipped_sends = Counter(
            p + "skipped_sends_total",
            "Sends withheld (type=skipped actions), by skip reason.",
            ("reason",),
            registry=r,
        )
        # --- pipeline contribution (fed by stream.report.PipelineReport) -------------------
        self.pipeline_entries = Counter(
            p + "pipeline_entries_total",
            "Leads entering a structured program, by program, ISO-week cohort, ICP tier and "
            "group (nurtured or holdout).",
            PIPELINE_LABELS,
            registry=r,
        )
        self.pipeline_opportunities = Counter(
            p + "pipeline_opportunities_total",
            "Sales-accepted opportunities after a program entry, labelled by that entry.",
            PIPELINE_LABELS,
            registry=r,
        )
        self.pipeline_time_to_opportunity = Histogram(
            p + "pipeline_time_to_opportunity_seconds",
            "Time from program entry to sales-accepted opportunity.",
            PIPELINE_LABELS,
            buckets=TIME_TO_OPPORTUNITY_BUCKETS,
            registry=r,
        )
        self.pipeline_template_sends = Counter(
            p + "pipeline_template_sends_total",
            "Leads who were sent an email template (first send per lead and template).",
            TEMPLATE_LABELS,
            registry=r,
        )
        self.pipeline_template_opportunities = Counter(
            p + "pipeline_template_opportunities_total",
            "Opportunities within the attribution window after a template was sent to the lead.",
            TEMPLATE_LABELS,
            registry=r,
        )
        # cached label children for the per-event hot path
        self._events_in_children: dict[tuple[str, str], Any] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: labels() validates and locks on every call."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- per message ----------------------------------------------------------------------
    def event_in(self, topic: str, type: str) -> None:
        key = (topic, type)
        child = self._events_in_children.get(key)
        if child is None:
            child = self._events_in_children[key] = self.events_in.labels(topic, type)
        child.inc()
        self.last_event_timestamp.set(time.time())

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(reason).inc()

    def observe_latency(self, seconds: float) -> None:
        self.processing_latency.observe(max(0.0, seconds))

    # --- outputs of the core --------------------------------------------------------------
    def transition(self, from_program: str | None, to_program: str, reason: str) -> None:
        self._child(self.transitions, _s(from_program), to_program, reason).inc()

    def action(self, type: str, channel: str, program: str) -> None:
        self._child(self.actions, type, channel, program).inc()

    def skipped_send(self, reason: str | None) -> None:
        self.skipped_sends.labels(_s(reason)).inc()

    def observe_transition(self, record: Mapping[str, Any], *, occupancy: bool = True) -> None:
        """Count a ``Transition.to_record()`` dict; with ``occupancy`` also move the lead
        between ``nurture_leads`` series (from_program/from_state -1, to_program/to_state +1).

        Occupancy by inc/dec is exact for one worker that sees every transition since the
        table was empty; after a restart the runtime should ``set_occupancy`` from the table.
        """
        self.transition(record.get("from_program"), record["to_program"], record["reason"])
        if occupancy:
            self.move_lead(
                record.get("from_program"),
                record.get("from_state"),
                record["to_program"],
                record.get("to_state"),
            )

    def observe_action(self, record: Mapping[str, Any]) -> None:
        """Count an ``Action.to_record()`` dict; a ``skipped`` action also counts a skipped send."""
        self.action(record["type"], record["channel"], record["program"])
        if record["type"] == "skipped":
            self.skipped_send(record.get("skip_reason"))

    # --- timers, lag, recovery, occupancy ---------------------------------------------------
    def timer_fired(self, lag_seconds: float) -> None:
        self.timer_firing_lag.observe(max(0.0, lag_seconds))

    def set_pending_timers(self, n: int) -> None:
        self.timers_pending.set(n)

    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(max(0, lag))

    def set_recovery_progress(self, fraction: float, table: str = "leads") -> None:
        self.recovery_progress.labels(table).set(min(1.0, max(0.0, fraction)))

    def set_occupancy(self, program: str, state: str | None, n: int) -> None:
        self._child(self.leads, program, _s(state)).set(n)

    def move_lead(
        self,
        from_program: str | None,
        from_state: str | None,
        to_program: str,
        to_state: str | None,
    ) -> None:
        if from_program is not None:
            self._child(self.leads, from_program, _s(from_state)).dec()
        self._child(self.leads, to_program, _s(to_state)).inc()

    # --- pipeline (called by PipelineReport) ------------------------------------------------
    def pipeline_entry(self, program: str, cohort: str, icp_tier: str, group: str) -> None:
        self.pipeline_entries.labels(program, cohort, icp_tier, group).inc()

    def pipeline_opportunity(
        self, program: str, cohort: str, icp_tier: str, group: str, seconds: float
    ) -> None:
        self.pipeline_opportunities.labels(program, cohort, icp_tier, group).inc()
        self.pipeline_time_to_opportunity.labels(program, cohort, icp_tier, group).observe(
            max(0.0, seconds)
        )

    def pipeline_template_sent(self, program: str, template: str) -> None:
        self.pipeline_template_sends.labels(program, template).inc()

    def pipeline_template_opportunity(self, program: str, template: str) -> None:
        self.pipeline_template_opportunities.labels(program, template).inc()

    # --- exposition -------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format for GET /metrics (serve with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def metric_names(self) -> list[str]:
        """Family names declared on this registry (without ``_total`` / ``_bucket`` suffixes)."""
        return sorted({m.name for m in self.registry.collect()})

    def sample_names(self) -> list[str]:
        """Every series name a scrape can return (``nurture_events_in_total``, ``..._bucket``)."""
        names: set[str] = set()
        for family in self.registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
        return sorted(names)
