"""stream.metrics: every declared series, fresh registry per instance, record helpers."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import Metrics

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
    "nurture_pipeline_entries": "counter",
    "nurture_pipeline_opportunities": "counter",
    "nurture_pipeline_time_to_opportunity_seconds": "histogram",
    "nurture_pipeline_template_sends": "counter",
    "nurture_pipeline_template_opportunities": "counter",
}


def _families(m: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}


def test_all_families_declared_with_conventional_types() -> None:
    assert _families(Metrics()) == EXPECTED_FAMILIES


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
    assert len(names) == 23


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
