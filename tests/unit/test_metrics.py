"""stream.metrics: every declared series, fresh registry per instance, record helpers."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import Metrics, PipelineMetrics

EXPECTED_FAMILIES = {
    "nurture_events_in": "counter",
    "nurture_last_event_timestamp_seconds": "gauge",
    "nurture_dead_letters": "counter",
    "nurture_processing_latency_seconds": "histogram",
    "nurture_consumer_lag_messages": "gauge",
    "nurture_timer_firing_lag_seconds": "histogram",
    "nurture_timers_pending": "gauge",
    "nurture_table_recovery_progress_ratio": "gauge",
    "nurture_leads": "gauge",
    "nurture_transitions": "counter",
    "nurture_actions": "counter",
    "nurture_skipped_sends": "counter",
}
PIPELINE_FAMILIES = {
    "nurture_pipeline_entries": "counter",
    "nurture_pipeline_opportunities": "counter",
    "nurture_pipeline_time_to_opportunity_seconds": "histogram",
    "nurture_pipeline_template_sends": "counter",
    "nurture_pipeline_template_opportunities": "counter",
}


def _families(m: Metrics | PipelineMetrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}


def test_all_families_declared_with_conventional_types() -> None:
    assert _families(Metrics()) == EXPECTED_FAMILIES
    # the pipeline series belong to the report consumer, never to the worker
    assert _families(PipelineMetrics()) == PIPELINE_FAMILIES


def test_fresh_registry_per_instance_and_injected_registry() -> None:
    a, b = Metrics(), Metrics()
    a.event_in("nurture.crm-events", "lead.created")
    assert (
        b.registry.get_sample_value(
            "nurture_events_in_total", {"topic": "nurture.crm-events", "type": "lead.created"}
        )
        is None
    )
    reg = CollectorRegistry()
    c = Metrics(reg)
    assert c.registry is reg
    with pytest.raises(ValueError):  # same names twice on one registry is a programming error
        Metrics(reg)


def test_record_helpers_count_the_contract_records() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    for _ in range(3):
        m.event_in("nurture.product-events", "page.viewed")
    m.event_in("nurture.crm-events", "lead.created")
    m.dead_letter("invalid_json")
    m.dead_letter("invalid_json")
    m.observe_transition(
        {
            "lead_id": "L1",
            "from_program": None,
            "from_state": None,
            "to_program": "mql_nurture",
            "to_state": "awareness",
            "reason": "mql.threshold",
            "signals": {},
            "at": "x",
        }
    )
    m.observe_transition(
        {
            "lead_id": "L1",
            "from_program": "mql_nurture",
            "from_state": "awareness",
            "to_program": "sales",
            "to_state": "sql",
            "reason": "mql.decision_signals",
            "signals": {},
            "at": "x",
        }
    )
    m.observe_action({"type": "send", "channel": "email", "program": "mql_nurture"})
    m.observe_action(
        {
            "type": "skipped",
            "channel": "email",
            "program": "mql_nurture",
            "skip_reason": "unsubscribed",
        }
    )
    assert (
        get("nurture_events_in_total", {"topic": "nurture.product-events", "type": "page.viewed"})
        == 3
    )
    assert get("nurture_dead_letters_total", {"reason": "invalid_json"}) == 2
    assert (
        get(
            "nurture_transitions_total",
            {"from_program": "", "to_program": "mql_nurture", "reason": "mql.threshold"},
        )
        == 1
    )
    assert (
        get("nurture_actions_total", {"type": "send", "channel": "email", "program": "mql_nurture"})
        == 1
    )
    assert (
        get(
            "nurture_actions_total",
            {"type": "skipped", "channel": "email", "program": "mql_nurture"},
        )
        == 1
    )
    assert get("nurture_skipped_sends_total", {"reason": "unsubscribed"}) == 1
    # occupancy moved: in then out of mql_nurture/awareness, into sales/sql
    assert get("nurture_leads", {"program": "mql_nurture", "state": "awareness"}) == 0
    assert get("nurture_leads", {"program": "sales", "state": "sql"}) == 1
    assert (get("nurture_last_event_timestamp_seconds") or 0) > 1.7e9


def test_gauges_and_histograms() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    m.set_consumer_lag("nurture.crm-events", 3, 42)
    m.set_consumer_lag("nurture.crm-events", 2, -1)  # clamped
    m.set_pending_timers(7)
    m.set_recovery_progress(1.5)  # clamped
    m.set_occupancy("trial_nurture", "activated", 12)
    m.timer_fired(0.3)
    m.timer_fired(-0.1)  # early firing counts as 0 lag
    for s in (0.004, 0.03, 0.2):
        m.observe_latency(s)
    assert (
        get("nurture_consumer_lag_messages", {"topic": "nurture.crm-events", "partition": "3"})
        == 42
    )
    assert (
        get("nurture_consumer_lag_messages", {"topic": "nurture.crm-events", "partition": "2"}) == 0
    )
    assert get("nurture_timers_pending") == 7
    assert get("nurture_table_recovery_progress_ratio", {"table": "leads"}) == 1.0
    assert get("nurture_leads", {"program": "trial_nurture", "state": "activated"}) == 12
    assert get("nurture_timer_firing_lag_seconds_count") == 2
    assert get("nurture_timer_firing_lag_seconds_bucket", {"le": "0.01"}) == 1
    assert get("nurture_timer_firing_lag_seconds_bucket", {"le": "0.25"}) == 1
    assert get("nurture_timer_firing_lag_seconds_bucket", {"le": "0.5"}) == 2
    assert get("nurture_processing_latency_seconds_bucket", {"le": "0.005"}) == 1
    assert get("nurture_processing_latency_seconds_bucket", {"le": "0.05"}) == 2
    assert get("nurture_processing_latency_seconds_count") == 3
    assert get("nurture_processing_latency_seconds_sum") == pytest.approx(0.234)


def test_sample_names_cover_the_exposition() -> None:
    m = Metrics()
    names = set(m.sample_names())
    assert "nurture_events_in_total" in names
    assert "nurture_processing_latency_seconds_bucket" in names
    assert "nurture_timers_pending" in names
    assert len(names) == 16


def _transition(frm: str | None, frm_state: str | None, to: str, to_state: str) -> dict[str, Any]:
    return {
        "lead_id": "L",
        "from_program": frm,
        "from_state": frm_state,
        "to_program": to,
        "to_state": to_state,
        "reason": "r",
    }


def test_occupancy_rebuilt_per_partition_moved_and_dropped() -> None:
    """nurture_leads after a restart: each assigned partition's count is rebuilt from the
    table, transitions move leads inside their partition, a revoked partition leaves."""
    m = Metrics()

    def leads(program: str, state: str) -> float | None:
        return m.registry.get_sample_value("nurture_leads", {"program": program, "state": state})

    assert m.rebuild_occupancy(0, [("mql_nurture", "awareness")] * 3 + [(None, None)]) == 3
    assert m.rebuild_occupancy(1, [("mql_nurture", "awareness"), ("trial_nurture", None)]) == 2
    assert leads("mql_nurture", "awareness") == 4
    assert leads("trial_nurture", "") == 1
    m.observe_transition(_transition("mql_nurture", "awareness", "sales", "sql"), partition=1)
    assert leads("mql_nurture", "awareness") == 3
    assert leads("sales", "sql") == 1
    # rebuilding partition 0 again (re-assigned) replaces its share, never adds twice
    m.rebuild_occupancy(0, [("mql_nurture", "awareness")] * 2)
    assert leads("mql_nurture", "awareness") == 2
    m.drop_occupancy([1])  # revoked: its trial lead and its sales lead leave the gauge
    assert leads("trial_nurture", "") == 0
    assert leads("sales", "sql") == 0
    assert leads("mql_nurture", "awareness") == 2


def test_label_children_are_bound_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-event paths resolve ``labels()`` once per label set, not once per record."""
    from prometheus_client.metrics import MetricWrapperBase

    calls: list[tuple[str, ...]] = []
    original = MetricWrapperBase.labels

    def counting(self: Any, *values: Any, **kw: Any) -> Any:
        calls.append(tuple(str(v) for v in values))
        return original(self, *values, **kw)

    monkeypatch.setattr(MetricWrapperBase, "labels", counting)
    m = Metrics()
    record = _transition(None, None, "mql_nurture", "awareness")
    action = {"type": "skipped", "channel": "email", "program": "p", "skip_reason": "holdout"}
    for _ in range(100):
        m.event_in("t", "page.viewed")
        m.observe_transition(record)
        m.observe_action(action)
        m.dead_letter("invalid_json")
    get = m.registry.get_sample_value
    assert (
        get(
            "nurture_transitions_total",
            {"from_program": "", "to_program": "mql_nurture", "reason": "r"},
        )
        == 100
    )
    assert get("nurture_skipped_sends_total", {"reason": "holdout"}) == 100
    assert get("nurture_leads", {"program": "mql_nurture", "state": "awareness"}) == 100
    # events_in, transitions, leads, actions, skipped_sends, dead_letters: one bind each
    assert len(calls) == 6, calls


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics_accepts_the_exposition() -> None:
    m = Metrics()
    m.event_in("nurture.crm-events", "lead.created")
    m.observe_action({"type": "skipped", "channel": "email", "program": "p", "skip_reason": "x"})
    m.observe_latency(0.01)
    m.set_consumer_lag("nurture.crm-events", 0, 1)
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=m.render(), capture_output=True, timeout=30
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_occupancy_rebuilt_from_encoded_states_matches_decoded_states() -> None:
    """The runtime rebuilds a partition's occupancy from its table with ``peek_program``:
    the same (program, state) as a full decode, counted into nurture_leads."""
    import random
    from collections import Counter as Tally

    from stream.core.state import LeadState, decode_state, encode_state, peek_program

    rng = random.Random(5)
    programs = [
        (None, None),
        ("mql_nurture", "awareness"),
        ("mql_nurture", "solution"),
        ("trial_nurture", "activated"),
        ("low_touch", None),
    ]
    states = [
        LeadState(f"L-{i}", program=p, program_state=s)
        for i, (p, s) in enumerate(rng.choice(programs) for _ in range(200))
    ]
    encoded = [encode_state(st) for st in states]
    pairs = [peek_program(raw) for raw in encoded]
    assert pairs == [(d.program, d.program_state) for d in map(decode_state, encoded)]
    m = Metrics()
    counted = m.rebuild_occupancy(3, pairs)
    expected = Tally((p, s or "") for p, s in pairs if p is not None)
    assert counted == sum(expected.values())
    for (program, state), n in expected.items():
        assert (
            m.registry.get_sample_value("nurture_leads", {"program": program, "state": state}) == n
        )
    with pytest.raises(ValueError):
        peek_program(b'["not a state"]')


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry but the wall-clock timestamp gauges."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in m.registry.collect()
        for s in family.samples
        if "timestamp" not in s.name and not s.name.endswith("_created")
    }


def test_a_batch_counted_at_once_equals_counting_each_record() -> None:
    """count_events / observe_transitions / observe_actions (the worker's per-batch calls)
    give the series that event_in / observe_transition / observe_action per record give."""
    events = [("crm", "lead.created")] * 3 + [("product", "page.viewed")] * 5
    transitions = [
        _transition(None, None, "mql_nurture", "awareness"),
        _transition(None, None, "mql_nurture", "awareness"),
        _transition("mql_nurture", "awareness", "sales", "sql"),
        _transition("trial_nurture", "started", "trial_nurture", "activated"),
    ]
    actions = [
        {"type": "send", "channel": "email", "program": "mql_nurture"},
        {"type": "send", "channel": "email", "program": "mql_nurture"},
        {"type": "skipped", "channel": "email", "program": "p", "skip_reason": "holdout"},
        {"type": "skipped", "channel": "email", "program": "p", "skip_reason": "frequency_cap"},
    ]
    each, batch = Metrics(), Metrics()
    for _ in range(2):
        for topic, type in events:
            each.event_in(topic, type)
        for record in transitions:
            each.observe_transition(record, partition=3)
        for record in actions:
            each.observe_action(record)
        counts: dict[tuple[str, str], int] = {}
        for key in events:
            counts[key] = counts.get(key, 0) + 1
        batch.count_events(counts)
        batch.observe_transitions(transitions, partition=3)
        batch.observe_actions(actions)
    got = _samples(batch)
    assert got == _samples(each)
    assert got[("nurture_events_in_total", (("topic", "product"), ("type", "page.viewed")))] == 10
    assert got[("nurture_leads", (("program", "mql_nurture"), ("state", "awareness")))] == 2
    assert got[("nurture_skipped_sends_total", (("reason", "holdout"),))] == 2
