"""Every Prometheus metric of the worker and of the report consumer, declared in one place.

Usage by the runtime (``stream/app.py``, ``stream/runtime/*``)::

    metrics = Metrics()                      # fresh CollectorRegistry; tests get isolation free
    metrics.event_in(topic, event_type)      # each input message decoded
    metrics.count_events({(topic, type): n})  # ... or a batch's, one increment per label set
    metrics.dead_letter("invalid_json")      # each message sent to nurture.dead-letter
    metrics.observe_transition(record, partition=p)  # each Transition.to_record() published
    metrics.observe_action(record)           # each Action.to_record() published
    metrics.observe_transitions(records, partition=p)  # a batch's (one inc per label set)
    metrics.observe_actions(records)         # a batch's actions (one inc per label set)
    metrics.observe_latency(seconds)         # message timestamp -> actions produced
    metrics.timer_fired(lag_seconds)         # wall clock at firing minus timer due time
    metrics.set_pending_timers(n)           # leads with a pending timer (due index size)
    metrics.set_consumer_lag(topic, partition, lag)
    metrics.set_recovery_progress(fraction)  # 0.0 .. 1.0 while the table recovers
    metrics.rebuild_occupancy(p, pairs)      # partition p assigned: (program, state) per lead
    metrics.drop_occupancy(partitions)       # partitions revoked
    body = metrics.render()                  # GET /metrics, Content-Type: CONTENT_TYPE

``nurture_leads`` (occupancy) is kept per partition: rebuilt from the table when a partition is
assigned, moved by every transition of the partition, dropped when it is revoked, so it is right
after restarts and rebalances and covers exactly the partitions this worker holds.

Pipeline series (``nurture_pipeline_*``) live in :class:`PipelineMetrics`, on the report
consumer (``nurture report-consumer``), fed by :class:`stream.report.PipelineReport` built with
``PipelineReport(metrics=PipelineMetrics())``: the report knows each lead's entries and so is
the one place that can tell an entry's cohort, tier and holdout group when an opportunity
arrives. The worker does not keep them (nothing in its memory grows with the leads).

Names follow the Prometheus conventions: ``_total`` for counters, base units (seconds) in the
name, ``_ratio`` for a 0..1 gauge. A ``None`` label value is rendered as the empty string.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
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


class _Registry:
    """One registry (``None``: a fresh one, so tests get isolation free), label children
    bound once per label set (``labels()`` validates, joins and locks on every call), and the
    exposition. Shared by the worker's and the report consumer's metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # no ``*_created`` series: they double the cardinality and no panel or alert uses them
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, bound once per label set."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

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


class Metrics(_Registry):
    """All worker metrics on one registry. ``registry=None`` creates a fresh one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
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
        # label children bound once per label set: ``labels()`` validates, joins and locks on
        # every call, so the per-event paths look the bound child up in a plain dict instead
        self._events_in_children: dict[tuple[str, str], Any] = {}
        self._transition_children: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        self._action_children: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        # occupancy: per partition, (program, state) -> leads; nurture_leads is their sum over
        # the partitions this worker holds
        self._occupancy: dict[int, dict[tuple[str, str], int]] = {}

    # --- per message ----------------------------------------------------------------------
    def event_in(self, topic: str, type: str) -> None:
        key = (topic, type)
        child = self._events_in_children.get(key)
        if child is None:
            child = self._events_in_children[key] = self.events_in.labels(topic, type)
        child.inc()
        self.last_event_timestamp.set(time.time())

    def count_events(self, counts: Mapping[tuple[str, str], int]) -> None:
        """A batch's decoded inputs, ``(topic, type) -> n``: one increment per label set and
        one timestamp (what :meth:`event_in` per message gives, with fewer locks taken)."""
        children = self._events_in_children
        for key, n in counts.items():
            child = children.get(key)
            if child is None:
                child = children[key] = self.events_in.labels(*key)
            child.inc(n)
        if counts:
            self.last_event_timestamp.set(time.time())

    def dead_letter(self, reason: str) -> None:
        self._child(self.dead_letters, reason).inc()

    def observe_latency(self, seconds: float) -> None:
        self.processing_latency.observe(max(0.0, seconds))

    # --- outputs of the core --------------------------------------------------------------
    def transition(self, from_program: str | None, to_program: str, reason: str) -> None:
        self._child(self.transitions, _s(from_program), to_program, reason).inc()

    def action(self, type: str, channel: str, program: str) -> None:
        self._child(self.actions, type, channel, program).inc()

    def skipped_send(self, reason: str | None) -> None:
        self._child(self.skipped_sends, _s(reason)).inc()

    def observe_transition(
        self, record: Mapping[str, Any], *, occupancy: bool = True, partition: int = 0
    ) -> None:
        """Count a ``Transition.to_record()`` dict; with ``occupancy`` also move the lead
        between ``nurture_leads`` series (from_program/from_state -1, to_program/to_state +1)
        in ``partition``'s counts. One dict lookup per record once its label set was seen."""
        counter, source, target = self._transition_bound(_transition_key(record))
        counter.inc()
        if occupancy:
            self._move(partition, source, target)

    def observe_transitions(
        self, records: Iterable[Mapping[str, Any]], *, partition: int = 0
    ) -> None:
        """:meth:`observe_transition` (with occupancy) for a batch's records: each label set's
        counter and occupancy move once, by its count."""
        counts: dict[tuple[Any, ...], int] = {}
        for record in records:
            key = _transition_key(record)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            counter, source, target = self._transition_bound(key)
            counter.inc(n)
            self._move(partition, source, target, n)

    def _transition_bound(self, key: tuple[Any, ...]) -> tuple[Any, Any, Any]:
        bound = self._transition_children.get(key)
        if bound is None:
            from_program, from_state, to_program, to_state, reason = key
            bound = self._transition_children[key] = (
                self._child(self.transitions, _s(from_program), to_program, reason),
                (from_program, _s(from_state)) if from_program is not None else None,
                (to_program, _s(to_state)),
            )
        return bound

    def observe_action(self, record: Mapping[str, Any]) -> None:
        """Count an ``Action.to_record()`` dict; a ``skipped`` action also counts a skipped send."""
        self._count_actions(_action_key(record), 1)

    def observe_actions(self, records: Iterable[Mapping[str, Any]]) -> None:
        """:meth:`observe_action` for a batch's records, one increment per label set."""
        counts: dict[tuple[Any, ...], int] = {}
        for record in records:
            key = _action_key(record)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            self._count_actions(key, n)

    def _count_actions(self, key: tuple[Any, ...], n: int) -> None:
        bound = self._action_children.get(key)
        if bound is None:
            type, channel, program, reason = key
            skipped = self._child(self.skipped_sends, _s(reason)) if type == "skipped" else None
            bound = self._action_children[key] = (
                self._child(self.actions, type, channel, program),
                skipped,
            )
        counter, skipped_child = bound
        counter.inc(n)
        if skipped_child is not None:
            skipped_child.inc(n)

    # --- timers, lag, recovery, occupancy ---------------------------------------------------
    def timer_fired(self, lag_seconds: float) -> None:
        self.timer_firing_lag.observe(max(0.0, lag_seconds))

    def set_pending_timers(self, n: int) -> None:
        self.timers_pending.set(n)

    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self._child(self.consumer_lag, topic, str(partition)).set(max(0, lag))

    def set_recovery_progress(self, fraction: float, table: str = "leads") -> None:
        self._child(self.recovery_progress, table).set(min(1.0, max(0.0, fraction)))

    def set_occupancy(self, program: str, state: str | None, n: int) -> None:
        self._child(self.leads, program, _s(state)).set(n)

    def _move(
        self,
        partition: int,
        source: tuple[str, str] | None,
        target: tuple[str, str],
        n: int = 1,
    ) -> None:
        counts = self._occupancy.setdefault(partition, {})
        if source is not None:
            counts[source] = counts.get(source, 0) - n
            self._child(self.leads, *source).dec(n)
        counts[target] = counts.get(target, 0) + n
        self._child(self.leads, *target).inc(n)

    def move_lead(
        self,
        from_program: str | None,
        from_state: str | None,
        to_program: str,
        to_state: str | None,
        partition: int = 0,
    ) -> None:
        source = (from_program, _s(from_state)) if from_program is not None else None
        self._move(partition, source, (to_program, _s(to_state)))

    def rebuild_occupancy(
        self, partition: int, programs: Iterable[tuple[str | None, str | None]]
    ) -> int:
        """Replace ``partition``'s share of ``nurture_leads`` with a count of ``programs``
        (each lead's ``(program, program_state)`` as stored in the table; ``None`` programs are
        not counted). Call it when a partition is assigned, after its table has recovered, so
        the gauge is right after restarts and rebalances. Returns the leads counted."""
        self.drop_occupancy((partition,))
        counts: dict[tuple[str, str], int] = {}
        n = 0
        for program, state in programs:
            if program is None:
                continue
            key = (program, _s(state))
            counts[key] = counts.get(key, 0) + 1
            n += 1
        self._occupancy[partition] = counts
        for key, value in counts.items():
            self._child(self.leads, *key).inc(value)
        return n

    def drop_occupancy(self, partitions: Iterable[int]) -> None:
        """Remove revoked partitions' leads from ``nurture_leads``."""
        for p in partitions:
            for key, value in self._occupancy.pop(p, {}).items():
                if value:
                    self._child(self.leads, *key).dec(value)


class PipelineMetrics(_Registry):
    """The ``nurture_pipeline_*`` series, fed by :class:`stream.report.PipelineReport` in the
    report consumer (``nurture report-consumer``): the report knows each lead's entries and so
    is the one place that can tell an entry's cohort, tier and holdout group when an
    opportunity arrives. ``registry=None`` creates a fresh one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        p = PREFIX
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

    def pipeline_entry(self, program: str, cohort: str, icp_tier: str, group: str) -> None:
        self._child(self.pipeline_entries, program, cohort, icp_tier, group).inc()

    def pipeline_opportunity(
        self, program: str, cohort: str, icp_tier: str, group: str, seconds: float
    ) -> None:
        self._child(self.pipeline_opportunities, program, cohort, icp_tier, group).inc()
        self._child(self.pipeline_time_to_opportunity, program, cohort, icp_tier, group).observe(
            max(0.0, seconds)
        )

    def pipeline_template_sent(self, program: str, template: str) -> None:
        self._child(self.pipeline_template_sends, program, template).inc()

    def pipeline_template_opportunity(self, program: str, template: str) -> None:
        self._child(self.pipeline_template_opportunities, program, template).inc()


def _transition_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    get = record.get
    return (
        get("from_program"),
        get("from_state"),
        record["to_program"],
        get("to_state"),
        record["reason"],
    )


def _action_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (record["type"], record["channel"], record["program"], record.get("skip_reason"))
