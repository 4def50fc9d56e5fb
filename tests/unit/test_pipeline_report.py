"""PipelineReport against a hand-computed fixture of 34 leads.

Fixture (all times UTC; 2026-11-16 is the Monday of ISO week 2026-W47):

mql_nurture, W47, high, nurtured: M1..M10 enter 2026-11-16T10:00.
    opportunities: M1 +2 d (and a second one +30 d, ignored), M2 +4 d, M3 +6 d, M4 +10 d.
    4/10 = 0.4; days [2, 4, 6, 10]: median (4+6)/2 = 5; p90 at rank 2.7: 6 + 0.7*4 = 8.8.
mql_nurture, W47, high, holdout: H1..H5 enter 2026-11-17T09:00; H1 opportunity +8 d.
    1/5 = 0.2; median 8, p90 8. Lift: 0.4-0.2 = 0.2 points; relative 0.4/0.2-1 = 1.0;
    median days saved 8-5 = 3.
mql_nurture, W47, medium, nurtured: D1..D7 enter 2026-11-18T12:00; D1 opportunity
    2026-11-22T00:00 (+3.5 d); D7 had an opportunity on 2026-11-10, before entry (not counted).
    1/7 = 0.142857; median 3.5, p90 3.5. No holdout: lift all None.
mql_nurture, W48, high, nurtured: N1..N4 enter 2026-11-23T00:00; N1 +1 d, N2 +3 d,
    N3 on 2027-03-01T00:00 (+98 d). 3/4 = 0.75; days [1, 3, 98]: median 3;
    p90 at rank 1.8: 3 + 0.8*95 = 79.0.
mql_nurture, W48, high, holdout: G1, G2 enter 2026-11-23T00:00, no opportunity: 0/2 = 0.
    Lift 0.75 points; relative None (holdout rate 0); median days saved None.
trial_nurture, W47, high, nurtured: T1..T4 enter 2026-11-16T08:00. T2 passes its 48 h
    checkpoint (trial_nurture -> trial_nurture, not an entry) and converts 2026-11-23T08:00
    (+7 d). T1 and T3 go silent to re_engagement 2026-11-18T08:00; T1 converts
    2026-11-20T08:00 (+4 d from trial entry). trial: 2/4 = 0.5; days [4, 7]:
    median 5.5, p90 4 + 0.9*3 = 6.7.
re_engagement, W47, high, nurtured: T1, T3: T1 +2 d. 1/2 = 0.5; median 2, p90 2.
low_touch: O1, O2 (out of ICP) are not entries.

Templates (window 90 d):
mql_nurture.case_study sent 2026-11-17T10:00 to M1..M5 (M1 again later; first send counts)
    and 2026-11-24T00:00 to N3 (its opportunity is 97 d later: outside the window).
    M6 got it only as a ``skipped`` action and M7 only as an in_app send: neither received it.
    high: receivers M1..M5, N3 = 6, converted M1..M4 = 4 -> 0.666667;
    non-receivers (nurtured, entered mql_nurture) M6..M10, N1, N2, N4 = 8, converted N1, N2
    = 2 -> 0.25; difference 0.666667 - 0.25 = 0.416667.
    medium: receivers 0; non-receivers D1..D7 = 7, converted D1 -> 0.142857.
re_engagement.direct_question sent 2026-11-18T08:00 to T1 and T3: 2 receivers, 1 converted
    -> 0.5; no non-receivers.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339, rfc3339_to_ms
from stream.metrics import PipelineMetrics
from stream.report import PipelineReport, build_report, read_records
from stream.report.pipeline import iso_week, quantile

W47_MON = rfc3339_to_ms("2026-11-16T00:00:00Z")
W48_MON = rfc3339_to_ms("2026-11-23T00:00:00Z")


def _t(
    lead: str,
    frm: str | None,
    to: str,
    at: int,
    *,
    tier: str = "high",
    holdout: bool | None = None,
    reason: str = "rule",
    to_state: str | None = None,
) -> dict[str, Any]:
    signals: dict[str, Any] = {"icp_tier": tier}
    if holdout is not None:
        signals["holdout"] = holdout
        signals["config_version"] = "v1"
    return {
        "lead_id": lead,
        "from_program": frm,
        "from_state": None,
        "to_program": to,
        "to_state": to_state,
        "reason": reason,
        "signals": signals,
        "caused_by": f"e-{lead}-{at}",
        "at": ms_to_rfc3339(at),
    }


def _opp(lead: str, frm: str | None, at: int, tier: str = "high") -> dict[str, Any]:
    return _t(
        lead, frm, "sales", at, tier=tier, reason="crm.opportunity_created", to_state="opportunity"
    )


def _a(
    lead: str,
    program: str,
    template: str | None,
    at: int,
    *,
    type: str = "send",
    channel: str = "email",
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "action_id": f"a-{lead}-{template}-{at}",
        "lead_id": lead,
        "type": type,
        "channel": channel,
        "program": program,
        "template": template,
        "reason": "rule",
        "context": {},
        "caused_by": f"e-{lead}-{at}",
        "at": ms_to_rfc3339(at),
    }
    if type == "skipped":
        rec["skip_reason"] = "frequency_cap"
    return rec


def fixture() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tr: list[dict[str, Any]] = []
    ac: list[dict[str, Any]] = []
    mql_in = W47_MON + 10 * HOUR_MS
    for i in range(1, 11):
        tr.append(_t(f"M{i}", "low_touch", "mql_nurture", mql_in, holdout=False))
    for i, days in ((1, 2), (2, 4), (3, 6), (4, 10)):
        tr.append(_opp(f"M{i}", "mql_nurture", mql_in + days * DAY_MS))
    tr.append(_opp("M1", "sales", mql_in + 30 * DAY_MS))
    hold_in = W47_MON + DAY_MS + 9 * HOUR_MS
    for i in range(1, 6):
        tr.append(_t(f"H{i}", None, "mql_nurture", hold_in, holdout=True))
    tr.append(_opp("H1", "mql_nurture", hold_in + 8 * DAY_MS))
    med_in = W47_MON + 2 * DAY_MS + 12 * HOUR_MS
    tr.append(_opp("D7", "low_touch", rfc3339_to_ms("2026-11-10T00:00:00Z"), tier="medium"))
    for i in range(1, 8):
        tr.append(_t(f"D{i}", "low_touch", "mql_nurture", med_in, tier="medium", holdout=False))
    tr.append(_opp("D1", "mql_nurture", rfc3339_to_ms("2026-11-22T00:00:00Z"), tier="medium"))
    for i in range(1, 5):
        tr.append(_t(f"N{i}", None, "mql_nurture", W48_MON, holdout=False))
    tr.append(_opp("N1", "mql_nurture", W48_MON + DAY_MS))
    tr.append(_opp("N2", "mql_nurture", W48_MON + 3 * DAY_MS))
    tr.append(_opp("N3", "mql_nurture", rfc3339_to_ms("2027-03-01T00:00:00Z")))
    for g in ("G1", "G2"):
        tr.append(_t(g, None, "mql_nurture", W48_MON, holdout=True))
    trial_in = W47_MON + 8 * HOUR_MS
    for i in range(1, 5):
        tr.append(_t(f"T{i}", None, "trial_nurture", trial_in, holdout=False))
    tr.append(
        _t("T2", "trial_nurture", "trial_nurture", trial_in + 48 * HOUR_MS, to_state="activated")
    )
    tr.append(_opp("T2", "trial_nurture", trial_in + 7 * DAY_MS))
    re_in = trial_in + 2 * DAY_MS
    for lead in ("T1", "T3"):
        tr.append(_t(lead, "trial_nurture", "re_engagement", re_in, holdout=False))
        ac.append(_a(lead, "re_engagement", "re_engagement.direct_question", re_in))
    tr.append(_opp("T1", "re_engagement", re_in + 2 * DAY_MS))
    for o in ("O1", "O2"):
        tr.append(_t(o, None, "low_touch", W47_MON, tier="out"))
    cs = "mql_nurture.case_study"
    for i in range(1, 6):
        ac.append(_a(f"M{i}", "mql_nurture", cs, mql_in + DAY_MS))
    ac.append(_a("M1", "mql_nurture", cs, mql_in + 20 * DAY_MS))
    ac.append(_a("M6", "mql_nurture", cs, mql_in + DAY_MS, type="skipped"))
    ac.append(_a("M7", "mql_nurture", cs, mql_in + DAY_MS, channel="in_app"))
    ac.append(_a("N3", "mql_nurture", cs, W48_MON + DAY_MS))
    ac.append(_a("M8", "mql_nurture", None, mql_in, type="handoff", channel="sales_task"))
    return tr, ac


def _group(
    entries: int, opps: int, rate: float | None, median: float | None, p90: float | None
) -> dict[str, Any]:
    return {
        "entries": entries,
        "opportunities": opps,
        "contribution_rate": rate,
        "time_to_opportunity_days": {"median": median, "p90": p90, "median_interval": None},
    }


NONE_GROUP = _group(0, 0, None, None, None)

EXPECTED_PROGRAMS: dict[str, Any] = {
    "mql_nurture": {
        "2026-W47": {
            "high": {
                "nurtured": _group(10, 4, 0.4, 5.0, 8.8),
                "holdout": _group(5, 1, 0.2, 8.0, 8.0),
                "lift": {"rate_points": 0.2, "relative": 1.0, "median_days_saved": 3.0},
            },
            "medium": {
                "nurtured": _group(7, 1, 0.142857, 3.5, 3.5),
                "holdout": NONE_GROUP,
                "lift": {"rate_points": None, "relative": None, "median_days_saved": None},
            },
        },
        "2026-W48": {
            "high": {
                "nurtured": _group(4, 3, 0.75, 3.0, 79.0),
                "holdout": _group(2, 0, 0.0, None, None),
                "lift": {"rate_points": 0.75, "relative": None, "median_days_saved": None},
            },
        },
    },
    "re_engagement": {
        "2026-W47": {
            "high": {
                "nurtured": _group(2, 1, 0.5, 2.0, 2.0),
                "holdout": NONE_GROUP,
                "lift": {"rate_points": None, "relative": None, "median_days_saved": None},
            }
        }
    },
    "trial_nurture": {
        "2026-W47": {
            "high": {
                "nurtured": _group(4, 2, 0.5, 5.5, 6.7),
                "holdout": NONE_GROUP,
                "lift": {"rate_points": None, "relative": None, "median_days_saved": None},
            }
        }
    },
}

EXPECTED_TEMPLATES: dict[str, Any] = {
    "mql_nurture": {
        "mql_nurture.case_study": {
            "high": {
                "receivers": 6,
                "receivers_converted": 4,
                "receivers_rate": 0.666667,
                "non_receivers": 8,
                "non_receivers_converted": 2,
                "non_receivers_rate": 0.25,
                "rate_points": 0.416667,
            },
            "medium": {
                "receivers": 0,
                "receivers_converted": 0,
                "receivers_rate": None,
                "non_receivers": 7,
                "non_receivers_converted": 1,
                "non_receivers_rate": 0.142857,
                "rate_points": None,
            },
        }
    },
    "re_engagement": {
        "re_engagement.direct_question": {
            "high": {
                "receivers": 2,
                "receivers_converted": 1,
                "receivers_rate": 0.5,
                "non_receivers": 0,
                "non_receivers_converted": 0,
                "non_receivers_rate": None,
                "rate_points": None,
            }
        }
    },
}


def test_fixture_size() -> None:
    tr, _ = fixture()
    assert len({r["lead_id"] for r in tr}) == 34


def _without_intervals(programs: dict[str, Any]) -> dict[str, Any]:
    """``programs`` without each lift's ``interval``, checked first: every group here is below
    the default minimum of 30 entries, so each is "not enough data" with its sample sizes."""
    for cohorts in programs.values():
        for tiers in cohorts.values():
            for cell in tiers.values():
                interval = cell["lift"].pop("interval")
                assert interval["status"] == "not_enough_data"
                assert interval["difference"] is None
                assert (interval["treated_entries"], interval["control_entries"]) == (
                    cell["nurtured"]["entries"],
                    cell["holdout"]["entries"],
                )
    return programs


def test_programs_match_hand_computed_figures() -> None:
    tr, ac = fixture()
    report = build_report(tr, ac).to_dict()
    assert _without_intervals(report["programs"]) == EXPECTED_PROGRAMS
    assert report["attribution"] == "every_preceding_entry"
    assert report["records"] == {"transitions": len(tr), "actions": len(ac)}
    assert report["window_days"] == 90


def _hand_computed(templates: dict[str, Any]) -> dict[str, Any]:
    """The template rows without their interval, once each interval is shown to compare the
    row's own receivers and non-receivers."""
    out: dict[str, Any] = {}
    for program, names in templates.items():
        for template, tiers in names.items():
            for tier, row in tiers.items():
                row = dict(row)
                interval = row.pop("interval")
                assert interval["treated_entries"] == row["receivers"]
                assert interval["control_entries"] == row["non_receivers"]
                out.setdefault(program, {}).setdefault(template, {})[tier] = row
    return out


def test_template_attribution_matches_hand_computed_figures() -> None:
    tr, ac = fixture()
    assert _hand_computed(build_report(tr, ac).to_dict()["templates"]) == EXPECTED_TEMPLATES


def test_out_of_icp_and_in_program_changes_are_not_entries() -> None:
    tr, ac = fixture()
    programs = build_report(tr, ac).to_dict()["programs"]
    assert "low_touch" not in programs
    assert "sales" not in programs
    assert programs["trial_nurture"]["2026-W47"]["high"]["nurtured"]["entries"] == 4


def test_output_is_independent_of_arrival_order_and_json_stable() -> None:
    tr, ac = fixture()
    expected = build_report(tr, ac).to_json()
    rng = random.Random(7)
    for _ in range(5):
        tr2, ac2 = tr[:], ac[:]
        rng.shuffle(tr2)
        rng.shuffle(ac2)
        report = PipelineReport()
        for rec in ac2:
            report.add_action(rec)
        for rec in tr2:
            report.add_transition(rec)
        assert report.to_json() == expected
        # key order of the plain dict is deterministic too (GET /report may not sort keys)
        assert json.dumps(report.to_dict()) == json.dumps(build_report(tr, ac).to_dict())
    assert _without_intervals(json.loads(expected)["programs"]) == EXPECTED_PROGRAMS


def test_live_metrics_follow_the_same_attribution() -> None:
    tr, ac = fixture()
    metrics = PipelineMetrics()
    report = PipelineReport(metrics=metrics)
    for kind, rec in sorted(
        [("t", r) for r in tr] + [("a", r) for r in ac],
        key=lambda kr: rfc3339_to_ms(kr[1]["at"]),
    ):
        if kind == "t":
            report.add_transition(rec)
        else:
            report.add_action(rec)
    get = metrics.registry.get_sample_value
    lab = {"program": "mql_nurture", "cohort": "2026-W47", "icp_tier": "high"}
    assert get("nurture_pipeline_entries_total", {**lab, "group": "nurtured"}) == 10
    assert get("nurture_pipeline_entries_total", {**lab, "group": "holdout"}) == 5
    assert get("nurture_pipeline_opportunities_total", {**lab, "group": "nurtured"}) == 4
    assert get("nurture_pipeline_opportunities_total", {**lab, "group": "holdout"}) == 1
    hist = {**lab, "group": "nurtured"}
    assert get("nurture_pipeline_time_to_opportunity_seconds_count", hist) == 4
    assert get("nurture_pipeline_time_to_opportunity_seconds_sum", hist) == (2 + 4 + 6 + 10) * 86400
    # 2 d and 4 d fall in the 7-day bucket, 6 d too; 10 d only from the 14-day bucket
    assert (
        get("nurture_pipeline_time_to_opportunity_seconds_bucket", {**hist, "le": "604800.0"}) == 3
    )
    assert (
        get("nurture_pipeline_time_to_opportunity_seconds_bucket", {**hist, "le": "1.2096e+06"})
        == 4
    )
    tpl = {"program": "mql_nurture", "template": "mql_nurture.case_study"}
    assert get("nurture_pipeline_template_sends_total", tpl) == 6
    assert get("nurture_pipeline_template_opportunities_total", tpl) == 4
    trial = {
        "program": "trial_nurture",
        "cohort": "2026-W47",
        "icp_tier": "high",
        "group": "nurtured",
    }
    assert get("nurture_pipeline_entries_total", trial) == 4
    assert get("nurture_pipeline_opportunities_total", trial) == 2


def test_read_records_jsonl_and_array(tmp_path: Any) -> None:
    tr, _ = fixture()
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in tr) + "\n")
    arr = tmp_path / "t.json"
    arr.write_text(json.dumps(tr))
    assert read_records(str(jsonl)) == tr
    assert read_records(str(arr)) == tr


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([4.0, 2.0, 10.0, 6.0], 0.9, 8.8),
        ([1.0, 3.0, 98.0], 0.9, 79.0),
    ],
)
def test_quantile_linear(values: list[float], q: float, expected: float) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_iso_week_year_boundary() -> None:
    assert iso_week(rfc3339_to_ms("2026-11-16T00:00:00Z")) == "2026-W47"
    assert iso_week(rfc3339_to_ms("2026-11-22T23:59:59Z")) == "2026-W47"
    assert iso_week(rfc3339_to_ms("2027-01-01T00:00:00Z")) == "2026-W53"


def test_cli_report_from_files(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    tr, ac = fixture()
    tpath, apath = tmp_path / "t.jsonl", tmp_path / "a.jsonl"
    tpath.write_text("".join(json.dumps(r) + "\n" for r in tr))
    apath.write_text("".join(json.dumps(r) + "\n" for r in ac))
    assert main(["report", "--transitions", str(tpath), "--actions", str(apath)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert _without_intervals(out["programs"]) == EXPECTED_PROGRAMS
    assert _hand_computed(out["templates"]) == EXPECTED_TEMPLATES


def test_cli_report_from_url(capsys: pytest.CaptureFixture[str]) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from stream.cli import main

    tr, ac = fixture()
    body = build_report(tr, ac).to_json().encode()
    paths: list[str] = []
    auth: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            auth.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["report", "--url", url, "--token", ""]) == 0
        assert main(["report", "--url", url + "/report", "--token", "s3cret"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert paths == ["/report", "/report"]
    assert auth == [None, "Bearer s3cret"]
    first = capsys.readouterr().out.split("\n}\n")[0] + "\n}"
    assert _without_intervals(json.loads(first)["programs"]) == EXPECTED_PROGRAMS


def test_cli_report_unreachable_worker_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    assert main(["report", "--url", "http://127.0.0.1:1", "--timeout", "2"]) == 1
    assert "nurture report:" in capsys.readouterr().err


def test_cli_report_from_replay_files_equals_replay_report(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nurture report --transitions/--actions`` on replay's output files reproduces the
    ``pipeline`` section replay wrote (epoch-ms ``at`` in-process vs RFC 3339 on file)."""
    from stream.cli import main

    events, out = tmp_path / "events.jsonl", tmp_path / "out"
    assert (
        main(["simulate", "--leads", "200", "--days", "120", "--seed", "5", "--out", str(events)])
        == 0
    )
    assert main(["replay", str(events), "--out", str(out), "--no-html"]) == 0
    capsys.readouterr()
    args = [
        "--transitions",
        str(out / "transitions.jsonl"),
        "--actions",
        str(out / "actions.jsonl"),
    ]
    assert main(["report", *args, "--json"]) == 0
    from_files = json.loads(capsys.readouterr().out)
    replayed = json.loads((out / "report.json").read_text())["pipeline"]
    assert from_files == replayed
    assert from_files["records"]["transitions"] > 0
    assert set(from_files["programs"]) <= {
        "mql_nurture",
        "trial_nurture",
        "re_engagement",
        "expansion_nurture",
    }
