"""report.html: self-contained, deterministic, and its charts really draw in a headless browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stream.core.model import DAY_MS, ms_to_rfc3339
from stream.offline.replay import FlowStats
from stream.report.html import chart_model, render_html
from stream.report.pipeline import PipelineReport
from tests.support.chromium import CHROMIUM, run_headless

T0 = 1_790_000_000_000


def _transition(
    lead: str, src: str | None, dst: str, reason: str, at: int, tier: str, holdout: bool
) -> dict[str, Any]:
    return {
        "lead_id": lead,
        "from_program": src,
        "from_state": None,
        "to_program": dst,
        "to_state": None,
        "reason": reason,
        "signals": {"icp_tier": tier, "holdout": holdout},
        "caused_by": "e",
        "at": ms_to_rfc3339(at),
    }


def sample_doc() -> dict[str, Any]:
    report, flow = PipelineReport(), FlowStats()
    records = []
    for i in range(40):
        tier = ("high", "medium")[i % 2]
        holdout = i % 10 == 0
        program = ("mql_nurture", "trial_nurture")[i % 3 == 0]
        at = T0 + i * 3_600_000
        records.append(_transition(f"L{i}", None, program, "route", at, tier, holdout))
        if i % 4 == 0:
            records.append(
                _transition(
                    f"L{i}", program, "sales", "mql.decision_signals", at + DAY_MS, tier, holdout
                )
            )
            records.append(
                _transition(
                    f"L{i}",
                    "sales",
                    "sales",
                    "crm.opportunity_created",
                    at + (i % 9 + 2) * DAY_MS,
                    tier,
                    holdout,
                )
            )
    for i in range(40):
        for template in ("mql_nurture.problem", "mql_nurture.proof"):
            if template.endswith("proof") and i % 2:
                continue
            report.add_action(
                {
                    "action_id": f"a{i}{template}",
                    "lead_id": f"L{i}",
                    "type": "send",
                    "channel": "email",
                    "program": "mql_nurture",
                    "template": template,
                    "reason": "r",
                    "context": {},
                    "caused_by": "e",
                    "at": ms_to_rfc3339(T0 + i * 3_600_000 + 60_000),
                }
            )
    for record in records:
        report.add_transition(record)
        flow.add_transition({**record, "at": _ms(record["at"])})
    return {
        "replay": {"events": 120, "leads": 40, "transitions": len(records), "actions": 0},
        "pipeline": report.to_dict(),
        "flow": flow.to_dict(),
    }


def _ms(text: str) -> int:
    from stream.core.model import rfc3339_to_ms

    return rfc3339_to_ms(text)


def test_chart_model_sums_cohorts_per_program_tier_group() -> None:
    model = chart_model(sample_doc())
    rows = {(r["program"], r["tier"], r["group"]): r for r in model["rates"]}
    # mql_nurture, high tier: leads 2,4,8,10(holdout),14,16,20(holdout),22,26,28,32,34,38
    high = [i for i in range(40) if i % 2 == 0 and i % 3 != 0]
    nurtured = [i for i in high if i % 10 != 0]
    row = rows[("mql_nurture", "high", "nurtured")]
    assert row["entries"] == len(nurtured)
    assert row["opportunities"] == len([i for i in nurtured if i % 4 == 0])
    assert model["flows"] and all(f["count"] > 0 for f in model["flows"])


def test_html_is_self_contained_and_deterministic() -> None:
    doc = sample_doc()
    page = render_html(doc)
    assert page == render_html(sample_doc())
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, not a fetch
    assert "<link" not in page and "src=" not in page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (make sysdeps)")
def test_charts_draw_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_doc()), encoding="utf-8")
    proc = run_headless(page, tmp_path, "--dump-dom")
    dom = proc.stdout
    assert 'data-rendered="yes"' in dom, proc.stderr[-2000:]
    bands = len(re.findall(r'class="flow-band"', dom))
    bars = len(re.findall(r'class="rate-bar"', dom))
    tto = len(re.findall(r'class="tto-bar"', dom))
    model = chart_model(sample_doc())
    assert bands == len(model["flows"])
    groups = {(r["program"], r["tier"]) for r in model["rates"] if r["entries"]}
    assert bars == 2 * len(groups)  # nurtured and holdout bar per program x tier
    assert tto > 0
    template_bars = len(re.findall(r'class="template-bar"', dom))
    assert model["templates"] and template_bars == 2 * len(model["templates"])
    # real geometry, not empty shapes
    heights = [float(h) for h in re.findall(r'class="rate-bar"[^>]*?height="([\d.]+)"', dom)]
    heights += [
        float(h) for h in re.findall(r'<rect[^>]*height="([\d.]+)"[^>]*class="rate-bar"', dom)
    ]
    assert heights and max(heights) > 50
