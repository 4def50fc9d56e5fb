"""stream.report.store: the report consumer's RocksDB facts give the report the in-memory
PipelineReport gives (the oracle: ``build_report`` over the same records), survive a reopen
with their offsets, count repeated (at-least-once) records once, and restore the live series."""

from __future__ import annotations

import random
from pathlib import Path

from stream.core.model import rfc3339_to_ms
from stream.metrics import PipelineMetrics
from stream.report import PipelineReport, build_report
from stream.report.store import RocksStore, decode_lead, encode_lead, leads_on_disk
from tests.unit.test_pipeline_report import (
    EXPECTED_PROGRAMS,
    EXPECTED_TEMPLATES,
    _hand_computed,
    _without_intervals,
    fixture,
)


def _pipeline_samples(m: PipelineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in m.registry.collect()
        for s in family.samples
    }


def _in_time_order(report: PipelineReport, tr: list[dict], ac: list[dict]) -> None:  # type: ignore[type-arg]
    for kind, rec in sorted(
        [("t", r) for r in tr] + [("a", r) for r in ac], key=lambda kr: rfc3339_to_ms(kr[1]["at"])
    ):
        (report.add_transition if kind == "t" else report.add_action)(rec)


def test_lead_encoding_round_trips() -> None:
    tr, ac = fixture()
    report = PipelineReport(metrics=PipelineMetrics())
    _in_time_order(report, tr, ac)
    leads = list(report._leads.values())
    assert any(lead.credited_sends for lead in leads) and any(lead.sends for lead in leads)
    for lead in leads:
        back = decode_lead(encode_lead(lead))
        assert back.entries == lead.entries
        assert back.opportunities == lead.opportunities
        assert back.sends == lead.sends
        assert back.credited_sends == lead.credited_sends


def test_rocks_store_report_equals_in_memory_and_survives_reopen(tmp_path: Path) -> None:
    tr, ac = fixture()
    store = RocksStore(tmp_path / "db")
    report = PipelineReport(store=store)
    # fed in three flushed batches, like the consumer's fetches
    for i, chunk in enumerate((tr[:15], tr[15:], ac)):
        for rec in chunk:
            (report.add_action if chunk is ac else report.add_transition)(rec)
        written = store.flush({("t", 0): i + 1}, (report.transitions_seen, report.actions_seen))
        assert written > 0 and store.pending() == 0
    oracle = build_report(tr, ac).to_dict()
    assert report.to_dict() == oracle
    store.close()

    reopened = RocksStore(tmp_path / "db")
    again = PipelineReport(store=reopened)
    again.transitions_seen, again.actions_seen = reopened.counts()
    assert reopened.offsets() == {("t", 0): 3}
    assert leads_on_disk(reopened) == len({r["lead_id"] for r in tr} - {"O1", "O2"})
    assert again.to_dict() == oracle
    assert _without_intervals(again.to_dict()["programs"]) == EXPECTED_PROGRAMS
    assert _hand_computed(again.to_dict()["templates"]) == EXPECTED_TEMPLATES
    reopened.close()


def test_unflushed_leads_are_part_of_the_report(tmp_path: Path) -> None:
    tr, ac = fixture()
    store = RocksStore(tmp_path / "db")
    report = PipelineReport(store=store)
    for rec in tr[:20]:
        report.add_transition(rec)
    store.flush({}, (20, 0))
    for rec in tr[20:]:
        report.add_transition(rec)
    for rec in ac:
        report.add_action(rec)
    assert store.pending() > 0
    assert _without_intervals(report.to_dict()["programs"]) == EXPECTED_PROGRAMS
    store.close()


def test_repeated_records_count_once() -> None:
    """At-least-once delivery repeats records: the report and the live series ignore repeats."""
    tr, ac = fixture()
    once_metrics, twice_metrics = PipelineMetrics(), PipelineMetrics()
    once = PipelineReport(metrics=once_metrics)
    _in_time_order(once, tr, ac)
    twice = PipelineReport(metrics=twice_metrics)
    _in_time_order(twice, tr + tr[:25], ac + ac)
    assert twice.to_dict()["programs"] == once.to_dict()["programs"]
    assert _without_intervals(once.to_dict()["programs"]) == EXPECTED_PROGRAMS
    assert _hand_computed(twice.to_dict()["templates"]) == EXPECTED_TEMPLATES
    assert _pipeline_samples(twice_metrics) == _pipeline_samples(once_metrics)


def test_template_credit_does_not_depend_on_which_topic_is_read_first() -> None:
    """The consumer reads transitions and actions separately: sends read after the
    opportunities get the same template credit as in event-time order."""
    tr, ac = fixture()
    in_order = PipelineMetrics()
    _in_time_order(PipelineReport(metrics=in_order), tr, ac)
    late_actions = PipelineMetrics()
    report = PipelineReport(metrics=late_actions)
    for rec in tr:
        report.add_transition(rec)
    for rec in ac:
        report.add_action(rec)
    assert _pipeline_samples(late_actions) == _pipeline_samples(in_order)
    tpl = {"program": "mql_nurture", "template": "mql_nurture.case_study"}
    get = late_actions.registry.get_sample_value
    assert get("nurture_pipeline_template_opportunities_total", tpl) == 4


def test_restore_metrics_recreates_the_live_series(tmp_path: Path) -> None:
    tr, ac = fixture()
    live = PipelineMetrics()
    store = RocksStore(tmp_path / "db")
    report = PipelineReport(metrics=live, store=store)
    # actions interleaved at random with the transitions (kept in their partition order)
    rng = random.Random(3)
    records: list[tuple[str, dict]] = [("t", r) for r in tr]  # type: ignore[type-arg]
    for rec in ac:
        records.insert(rng.randrange(len(records) + 1), ("a", rec))
    for kind, rec in records:
        (report.add_transition if kind == "t" else report.add_action)(rec)
    store.flush({}, (len(tr), len(ac)))
    store.close()

    restored = PipelineMetrics()
    reopened = RocksStore(tmp_path / "db")
    n = PipelineReport(metrics=restored, store=reopened).restore_metrics()
    assert n == leads_on_disk(reopened)
    assert _pipeline_samples(restored) == _pipeline_samples(live)
    assert (
        sum(
            v
            for (name, _), v in _pipeline_samples(restored).items()
            if name == "nurture_pipeline_entries_total"
        )
        == 34
    )
    reopened.close()
