"""Intervals for nurtured-against-holdout comparisons (stream/report/stats.py), the simulator's
nurture effect, and the lift rows of a replay (issue 11, part 3 and 4)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.core.config import DEFAULT_RULES, load_config_text
from stream.offline.personas import NurtureEffect
from stream.offline.replay import replay_file
from stream.offline.simulate import generate, write_file
from stream.report.stats import StatsSettings, compare_rates, median_interval

SETTINGS = StatsSettings(min_group_entries=30)

# (name, treated (conversions, entries), control, expected status)
ROWS = [
    ("below_minimum_in_holdout", (20, 161), (4, 8), "not_enough_data"),
    ("below_minimum_in_nurtured", (2, 29), (10, 400), "not_enough_data"),
    ("clear_positive_lift", (120, 400), (10, 200), "significant"),
    ("clear_negative_lift", (10, 400), (40, 200), "significant"),
    ("same_rate", (40, 400), (10, 100), "not_significant"),
    ("small_holdout_noise", (30, 161), (9, 32), "not_significant"),
    ("no_holdout_conversion", (12, 300), (0, 40), "not_significant"),
]


@pytest.mark.parametrize(("name", "treated", "control", "status"), ROWS, ids=[r[0] for r in ROWS])
def test_compare_rates_status_and_interval(
    name: str, treated: tuple[int, int], control: tuple[int, int], status: str
) -> None:
    doc = compare_rates(treated, control, SETTINGS)
    assert doc["status"] == status
    assert (doc["treated_entries"], doc["control_entries"]) == (treated[1], control[1])
    diff, rel = doc["difference"], doc["relative_lift"]
    if status == "not_enough_data":
        assert diff is None and rel is None
    else:
        estimate = treated[0] / treated[1] - control[0] / control[1]
        assert diff["estimate"] == pytest.approx(estimate, abs=1e-6)
        assert diff["low"] <= diff["estimate"] <= diff["high"]
        assert (diff["low"] > 0 or diff["high"] < 0) == (status == "significant")
        assert rel["low"] < rel["high"]
        assert (rel["estimate"] is None) == (control[0] == 0)


def test_difference_interval_matches_newcombes_published_example() -> None:
    """Independent oracle: Newcombe (1998), Stat Med 17:873, table II, example (a): 56/70
    against 48/80, method 10 (score, no continuity correction): 0.0524 to 0.3339."""
    doc = compare_rates((56, 70), (48, 80), StatsSettings(min_group_entries=1))
    assert doc["difference"]["estimate"] == pytest.approx(0.2, abs=1e-9)
    assert doc["difference"]["low"] == pytest.approx(0.0524, abs=1e-4)
    assert doc["difference"]["high"] == pytest.approx(0.3339, abs=1e-4)


def test_median_interval_is_deterministic_and_covers_the_median() -> None:
    values = [float((i * 37) % 29) + 0.5 for i in range(60)]
    first = median_interval(values, SETTINGS)
    assert first is not None and first == median_interval(values, SETTINGS)
    ordered = sorted(values)
    median = (ordered[29] + ordered[30]) / 2
    assert first["low"] <= median <= first["high"] and first["low"] < first["high"]
    assert median_interval(values[:29], SETTINGS) is None  # below the minimum count
    assert median_interval([3.0] * 40, SETTINGS) is None  # nothing to resample


def _rules(holdout_pct: float) -> str:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    assert "holdout_pct: 5.0" in text
    return text.replace("holdout_pct: 5.0", f"holdout_pct: {holdout_pct}")


@pytest.fixture(scope="module")
def effect_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """`make report`-style data (simulate, then replay) with a large effect in trial nurture,
    none in MQL nurture, and a 25% holdout so both groups are big enough to judge."""
    folder = tmp_path_factory.mktemp("effect")
    effect = NurtureEffect(
        lift={"trial_nurture": 2.0, "mql_nurture": 0.0, "re_engagement": 0.0}, holdout_pct=25.0
    )
    write_file(folder / "events.jsonl", generate(1200, 60, seed=5, effect=effect))
    replay_file(folder / "events.jsonl", folder / "out", load_config_text(_rules(25.0)), html=False)
    doc: dict[str, object] = orjson.loads((folder / "out" / "report.json").read_bytes())
    return doc


def _lift(doc: dict[str, object], program: str, tier: str) -> dict[str, object]:
    rows = [r for r in doc["lift"] if r["program"] == program and r["tier"] == tier]  # type: ignore[attr-defined]
    assert len(rows) == 1, rows
    row: dict[str, object] = rows[0]
    return row


def test_simulated_large_effect_is_significant_and_no_effect_is_not(
    effect_report: dict[str, object],
) -> None:
    trial = _lift(effect_report, "trial_nurture", "high")
    mql = _lift(effect_report, "mql_nurture", "high")
    assert min(trial["treated_entries"], trial["control_entries"]) >= 30  # type: ignore[type-var]
    assert min(mql["treated_entries"], mql["control_entries"]) >= 30  # type: ignore[type-var]
    assert trial["status"] == "significant", trial
    assert trial["difference"]["low"] > 0  # type: ignore[index]
    assert mql["status"] == "not_significant", mql
    low, high = mql["difference"]["low"], mql["difference"]["high"]  # type: ignore[index]
    assert low < 0 < high


def test_pipeline_cells_carry_the_interval_and_median_intervals(
    effect_report: dict[str, object],
) -> None:
    cells = [
        tiers[tier]
        for cohorts in effect_report["pipeline"]["programs"].values()  # type: ignore[index]
        for tiers in cohorts.values()
        for tier in tiers
    ]
    statuses = {c["lift"]["interval"]["status"] for c in cells}
    assert "not_enough_data" in statuses  # weekly cohorts x tiers are small
    assert statuses <= {"not_enough_data", "significant", "not_significant"}
    medians = [
        c[g]["time_to_opportunity_days"]["median_interval"]
        for c in cells
        for g in ("nurtured", "holdout")
    ]
    assert any(m is not None for m in medians) or all(
        c["nurtured"]["opportunities"] < 30 for c in cells
    )


def test_simulator_effect_only_moves_nurtured_leads_opportunities(tmp_path: Path) -> None:
    """Same seed with and without the effect: holdout leads' lines are identical; nurtured
    leads gain opportunities (the draws are the same, only the threshold moves)."""
    none = NurtureEffect(lift={}, holdout_pct=25.0)
    big = NurtureEffect(lift={"trial_nurture": 2.0}, holdout_pct=25.0)
    from stream.core.ids import in_holdout

    def opps(effect: NurtureEffect) -> dict[str, int]:
        out: dict[str, int] = {}
        for sim in generate(600, 40, seed=3, effect=effect):
            if b'"opportunity.created"' in sim.line:
                out[sim.lead_id] = out.get(sim.lead_id, 0) + 1
        return out

    base, raised = opps(none), opps(big)
    holdout = {lead for lead in set(base) | set(raised) if in_holdout(lead, "trial_nurture", 25.0)}
    assert {k: v for k, v in base.items() if k in holdout} == {
        k: v for k, v in raised.items() if k in holdout
    }
    assert sum(raised.values()) > sum(base.values()) * 1.3
