"""Post-sale rules, one row per rule and named after it: bands, flags, each play's entry and
exit, renewal touchpoints by band, and the advocacy gate's conditions each failing alone.

Each row is a scenario of one account (events by day after conversion), the day the daily timer
runs up to, the output tokens it must produce and the ones it must not (see tests/support)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stream.accounts.model import AccountState
from stream.core.config import load_config_text
from stream.core.ids import in_holdout
from tests.support.accounts import CFG, T0, Scenario, day_of, healthy, tokens

S = Scenario


def _unresolved_urgent(s: Scenario) -> Scenario:
    return s.at(5, "support.ticket_opened", "u1", ticket_id="T1", severity="urgent").at(
        6, "support.ticket_opened", "u3", ticket_id="T2", severity="urgent"
    )


def _advocate(s: Scenario, seats: int = 5, until: float = 200) -> Scenario:
    """Everything the advocacy gate asks for: promoter, green, tenure, no urgent ticket."""
    return (
        healthy_seats(s, until, seats)
        .at(10, "outcome.achieved", outcome="first_report")
        .at(150, "nps.submitted", "u2", score=10)
    )


def _fading(s: Scenario) -> Scenario:
    """One user: a session every 2 days for a month, then every 3 days (-33%, but few)."""
    return s.team().convert().active(1, 31, "u1", every=2).active(33, 61, "u1", every=3)


# (rule, scenario, run timers up to day, must have, must not have)
Row = tuple[str, Callable[[], Scenario], float, set[str], set[str]]
ROWS: list[Row] = [
    # --- bands ---
    ("health.green", lambda: healthy(S(), 10), 10, {"transition:band:green"}, set()),
    (
        "health.yellow",
        lambda: S().team().convert(),
        0.5,
        {"transition:band:yellow"},
        {"transition:band:green", "transition:band:red"},
    ),
    (
        "health.red",
        lambda: S().team().convert().at(1, "billing.status_changed", status="payment_failed"),
        2,
        {"transition:band:red", "action:send:csm_task:risk_renewal.save_plan"},
        set(),
    ),
    # --- flags ---
    (
        "risk.payment_failed",
        lambda: healthy(S(), 20).at(12, "billing.status_changed", status="payment_failed"),
        13,
        {"transition:flag_raised:payment_failed", "action:send:csm_task:risk_renewal.save_plan"},
        set(),
    ),
    (
        "risk.usage_drop",
        lambda: healthy(S(), 60),
        75,
        {"transition:flag_raised:usage_drop", "reason:risk_renewal.at_risk"},
        set(),
    ),
    (
        "risk.usage_drop_not_raised_by_a_small_accounts_noise",  # 15 -> 10 sessions: p 0.21
        lambda: _fading(S()),
        62,
        set(),
        {"transition:flag_raised:usage_drop"},
    ),
    (
        "risk.urgent_tickets",
        lambda: _unresolved_urgent(healthy(S(), 10)),
        7,
        {"transition:flag_raised:urgent_tickets", "action:send:csm_task:risk_renewal.save_plan"},
        set(),
    ),
    (
        "risk.urgent_tickets_cleared",
        lambda: _unresolved_urgent(healthy(S(), 10)).at(
            8, "support.ticket_resolved", ticket_id="T1"
        ),
        9,
        {"transition:flag_cleared:urgent_tickets", "reason:risk_renewal.recovered"},
        set(),
    ),
    (
        "risk.urgent_tickets_needs_two",
        lambda: healthy(S(), 10).at(5, "support.ticket_opened", ticket_id="T1", severity="urgent"),
        7,
        set(),
        {"transition:flag_raised:urgent_tickets"},
    ),
    (
        "risk.detractor",
        lambda: healthy(S(), 10).at(5, "nps.submitted", "u1", score=3),
        6,
        {"transition:flag_raised:detractor", "action:send:csm_task:risk_renewal.save_plan"},
        set(),
    ),
    (
        "risk.detractor_needs_admin_or_executive",
        lambda: healthy(S(), 10).at(5, "nps.submitted", "u3", score=3),
        6,
        set(),
        {"transition:flag_raised:detractor"},
    ),
    # --- onboarding ---
    (
        "onboarding.entry_role_path_and_kickoff",
        lambda: S().team().convert(),
        0.5,
        {
            "transition:play_entered:onboarding",
            "action:send:csm_task:onboarding.kickoff",
            "action:send:email:onboarding.admin_setup",
            "action:send:email:onboarding.executive_success_plan",
            "action:send:email:onboarding.end_user_first_steps",
        },
        set(),
    ),
    (
        "onboarding.role_path_for_a_user_who_joins_later",
        lambda: (
            S()
            .at(0, "lead.created", "u1", role="admin")
            .convert()
            .at(3, "lead.created", "u9", role="executive")
        ),
        4,
        {"action:send:email:onboarding.executive_success_plan"},
        set(),
    ),
    (
        "onboarding.exit_on_first_value",
        lambda: healthy(S(), 12).at(10, "outcome.achieved", outcome="first_report"),
        12,
        {"reason:onboarding.first_value", "transition:stage:adoption"},
        {"action:send:csm_task:onboarding.blocker_removal"},
    ),
    (
        "onboarding.blocker_removal_by_day_30",
        lambda: healthy(S(), 31),
        31,
        {"action:send:csm_task:onboarding.blocker_removal"},
        set(),
    ),
    (
        "onboarding.no_blocker_task_before_day_30",
        lambda: healthy(S(), 29),
        29.9,
        set(),
        {"action:send:csm_task:onboarding.blocker_removal"},
    ),
    (
        "onboarding.exit_after_90_days",
        lambda: healthy(S(), 91),
        91,
        {"reason:onboarding.timeout", "reason:stage.onboarding_timeout"},
        {"transition:play_entered:adoption"},
    ),
    # --- adoption ---
    (
        "adoption.entry_on_first_value_with_nudges",
        lambda: healthy(S(), 12).at(10, "outcome.achieved", outcome="first_report"),
        12,
        {
            "transition:play_entered:adoption",
            "action:send:in_app:adoption.nudge.reports",
            "action:send:email:adoption.nudge.reports",
        },
        set(),
    ),
    (
        "adoption.nudge_names_the_next_missing_feature",
        lambda: (
            healthy(S(), 12)
            .at(9, "feature.used", feature="reports")
            .at(10, "outcome.achieved", outcome="first_report")
        ),
        12,
        {"action:send:in_app:adoption.nudge.integrations"},
        {"action:send:in_app:adoption.nudge.reports"},
    ),
    (
        "adoption.exit_when_all_features_adopted",
        lambda: (
            healthy(S(), 14)
            .at(10, "outcome.achieved", outcome="first_report")
            .at(11, "feature.used", feature="reports")
            .at(11, "feature.used", feature="integrations")
            .at(11, "feature.used", feature="automations")
            .at(11, "feature.used", feature="dashboards")
        ),
        14,
        {"reason:adoption.all_adopted"},
        set(),
    ),
    (
        "adoption.exit_when_each_feature_had_its_nudges",
        lambda: healthy(S(), 180).at(10, "outcome.achieved", outcome="first_report"),
        180,
        {"reason:adoption.nudges_exhausted", "action:send:in_app:adoption.nudge.dashboards"},
        set(),
    ),
    # --- executive ---
    (
        "executive.briefing_every_90_days",
        lambda: healthy(S(), 90),
        90,
        {"transition:play_entered:executive", "action:send:exec_briefing:executive.briefing"},
        set(),
    ),
    (
        "executive.no_briefing_before_90_days",
        lambda: healthy(S(), 89),
        89.9,
        {"transition:play_entered:executive"},
        {"action:send:exec_briefing:executive.briefing"},
    ),
    # --- risk & renewal ---
    (
        "risk_renewal.renewal_window_opens_120_days_before",
        lambda: healthy(S(), 250),
        246,
        {"transition:stage:renewal", "reason:risk_renewal.renewal_window"},
        set(),
    ),
    (
        "risk_renewal.touchpoint_green_is_an_email",
        lambda: healthy(S(), 250).at(10, "outcome.achieved", outcome="x"),
        246,
        {"action:send:email:risk_renewal.renewal_120d.green"},
        {"action:send:csm_task:risk_renewal.renewal_120d.green"},
    ),
    (
        "risk_renewal.touchpoint_yellow_is_email_and_csm_task",
        lambda: healthy_seats(S(), 250, 20).at(200, "billing.status_changed", status="past_due"),
        246,
        {
            "action:send:email:risk_renewal.renewal_120d.yellow",
            "action:send:csm_task:risk_renewal.renewal_120d.yellow",
        },
        set(),
    ),
    (
        "risk_renewal.touchpoint_red_is_a_csm_task_only",
        lambda: S().team().convert().at(200, "billing.status_changed", status="payment_failed"),
        246,
        {"action:send:csm_task:risk_renewal.renewal_120d.red"},
        {"action:send:email:risk_renewal.renewal_120d.red"},
    ),
    (
        "risk_renewal.all_four_touchpoints_before_renewal",
        lambda: healthy(S(), 365),
        364,
        {f"action:send:email:risk_renewal.renewal_{d}d.green" for d in (120, 90, 60, 30)},
        set(),
    ),
    (
        "risk_renewal.exit_on_renewal",
        lambda: healthy(S(), 300).at(
            260, "subscription.renewed", renewal_at="2028-05-29T00:00:00Z", arr=15000.0
        ),
        262,
        {"reason:risk_renewal.renewed", "reason:stage.renewed"},
        set(),
    ),
    (
        "account.churned_on_cancel_closes_every_play",
        lambda: healthy(S(), 30).at(20, "subscription.cancelled", reason="budget"),
        40,
        {"transition:stage:churned", "reason:account.churned"},
        {"action:send:csm_task:onboarding.blocker_removal"},
    ),
    # --- advocacy: entry, and each condition failing alone ---
    (
        "advocacy.ask_when_promoter_green_tenured_and_no_urgent_ticket",
        lambda: _advocate(S()),
        181,
        {"transition:play_entered:advocacy", "action:send:email:advocacy.ask.review"},
        set(),
    ),
    (
        "advocacy.gate_fails_without_promoter_nps",
        lambda: _advocate(S()).at(160, "nps.submitted", "u3", score=8),
        181,
        set(),
        {"transition:play_entered:advocacy"},
    ),
    (
        "advocacy.gate_fails_unless_green",
        lambda: (
            _advocate(S(), seats=20)
            .at(170, "billing.status_changed", status="past_due")
            .at(171, "support.ticket_opened", ticket_id="T1", severity="normal")
            .at(171, "support.ticket_opened", ticket_id="T2", severity="normal")
        ),
        181,
        {"transition:band:yellow"},
        {"transition:play_entered:advocacy"},
    ),
    (
        "advocacy.gate_fails_before_180_days_tenure",
        lambda: _advocate(S(), until=179),
        179.9,
        set(),
        {"transition:play_entered:advocacy"},
    ),
    (
        "advocacy.gate_fails_with_an_open_urgent_ticket",
        lambda: _advocate(S()).at(170, "support.ticket_opened", ticket_id="T1", severity="urgent"),
        181,
        set(),
        {"transition:play_entered:advocacy"},
    ),
    (
        "advocacy.gate_fails_with_a_risk_flag_open",
        lambda: _advocate(S()).at(140, "nps.submitted", "u1", score=5),
        181,
        {"transition:flag_raised:detractor"},
        {"transition:play_entered:advocacy"},
    ),
    (
        "advocacy.exit_on_completion",
        lambda: _advocate(S()).at(185, "advocacy.completed", "u2", kind="review"),
        186,
        {"reason:advocacy.completed"},
        set(),
    ),
    (
        "advocacy.exit_without_response_after_30_days",
        lambda: _advocate(S()),
        212,
        {"reason:advocacy.no_response"},
        set(),
    ),
    # --- expansion at account level ---
    (
        "expansion.entry_at_80_percent_of_the_account_seat_limit",
        lambda: healthy(S(), 10).at(8, "usage.reported", "u1", metric="seats", value=4),
        9,
        {
            "transition:play_entered:expansion_nurture",
            "action:send:email:expansion_nurture.usage_summary",
        },
        set(),
    ),
    (
        "expansion.handoff_at_the_hard_limit",
        lambda: (
            healthy(S(), 10)
            .at(8, "usage.reported", "u1", metric="seats", value=4)
            .at(9, "usage.reported", "u1", metric="seats", value=5)
        ),
        10,
        {"action:send:csm_task:expansion_nurture.csm_handoff", "reason:expansion.hard_limit"},
        set(),
    ),
    (
        "expansion.handoff_on_request",
        lambda: healthy(S(), 10).at(8, "expansion.requested", "u1"),
        9,
        {"action:send:csm_task:expansion_nurture.csm_handoff"},
        set(),
    ),
    (
        "expansion.exit_on_upgrade",
        lambda: (
            healthy(S(), 10)
            .at(8, "usage.reported", "u1", metric="seats", value=4)
            .at(9, "subscription.upgraded", "u1", plan="scale", limits={"seats": 20}, arr=30000.0)
        ),
        10,
        {"reason:expansion.upgraded"},
        set(),
    ),
    # --- suppression shared with pre-sale ---
    (
        "suppression.unsubscribed_user_is_skipped",
        lambda: S().team().at(0, "email.unsubscribed", "u1").convert(),
        0.5,
        {"action:skipped:email:onboarding.admin_setup:unsubscribed"},
        {"action:send:email:onboarding.admin_setup"},
    ),
    (
        "suppression.hard_bounced_user_is_skipped",
        lambda: S().team().at(0, "email.bounced", "u3", hard=True).convert(),
        0.5,
        {"action:skipped:email:onboarding.end_user_first_steps:hard_bounced"},
        set(),
    ),
]


def healthy_seats(s: Scenario, until: float, seats: int) -> Scenario:
    return s.team().convert(seats_limit=seats).active(1, until)


@pytest.mark.parametrize(
    ("rule", "build", "until", "present", "absent"), ROWS, ids=[r[0] for r in ROWS]
)
def test_rule(
    rule: str, build: Callable[[], Scenario], until: float, present: set[str], absent: set[str]
) -> None:
    got = tokens(build().run(until))
    assert present <= got, f"{rule}: missing {sorted(present - got)}"
    assert not (absent & got), f"{rule}: unexpected {sorted(absent & got)}"


def test_holdout_account_gets_no_personal_sends_but_csm_tasks_go() -> None:
    account = next(f"H-{i}" for i in range(10_000) if in_holdout(f"H-{i}", "post_sale", 5.0))
    got = tokens(S(account=account).team().convert().run(0.5))
    assert "action:skipped:email:onboarding.admin_setup:holdout" in got
    assert "action:send:csm_task:onboarding.kickoff" in got
    assert not any(t.startswith("action:send:email") for t in got)


def test_frequency_cap_is_the_lead_cap() -> None:
    text = (CFG_TEXT := _rules_text()).replace("frequency_cap: 3", "frequency_cap: 1")
    assert text != CFG_TEXT
    cfg = load_config_text(text)
    run = healthy(S(), 3).at(2, "outcome.achieved", outcome="x").run(2.5, cfg)
    got = tokens(run)
    assert "action:send:email:onboarding.admin_setup" in got
    assert "action:skipped:email:adoption.nudge.reports:frequency_cap" in got


def _rules_text() -> str:
    from stream.core.config import DEFAULT_RULES

    return DEFAULT_RULES.read_text()


def test_every_transition_explains_itself() -> None:
    run = _unresolved_urgent(healthy(S(), 10)).run(10)
    assert run.transitions
    for t in run.transitions:
        rec = t.to_record()["health"]
        assert rec["config_version"] == CFG.version
        assert set(rec["components"]) == {"usage", "support", "sentiment", "billing"}
        for part in rec["components"].values():
            assert {"value", "weight", "points", "inputs"} <= set(part)
            assert part["inputs"]
        assert sum(p["points"] for p in rec["components"].values()) == pytest.approx(rec["score"])
    flag = next(t for t in run.transitions if t.kind == "flag_raised")
    support = next(c for c in flag.health.components if c.name == "support")
    assert support.inputs["open_urgent"] == 2 and day_of(flag.at) == 6


def test_risk_task_carries_its_reasons() -> None:
    run = _unresolved_urgent(healthy(S(), 10)).run(7)
    task = next(a for a in run.actions if a.template == "risk_renewal.save_plan")
    assert task.context["reasons"] == ["flag:urgent_tickets"]
    assert task.lead_id is None and task.account_id == "A-1"


def test_the_daily_timer_follows_the_account_and_stops_at_churn() -> None:
    run = healthy(S(), 5).run(5)
    assert run.timers and day_of(run.timers[0].due) == 6
    assert isinstance(run.state, AccountState)
    churned = healthy(S(), 5).at(5.5, "subscription.cancelled").run(6)
    assert churned.timers == ()


def test_quiet_hours_hold_account_sends_like_lead_sends() -> None:
    """Conversion at 00:15 UTC: the UTC users' onboarding emails are held to 08:00 UTC, the New
    York executive's (20:15 local) goes at once, the CSM task is ours (never held); with quiet
    hours off nothing is held (they ship on)."""
    off = _rules_text().replace("  enabled: true\n  start:", "  enabled: false\n  start:")
    assert off != _rules_text()
    scenario = (
        S()
        .at(0, "lead.created", "u1", role="admin")
        .at(0, "lead.created", "u2", role="executive", timezone="America/New_York")
        .at(0, "lead.created", "u3", role="end_user")
        .convert(0.25 / 24)
    )
    run = scenario.run(0.5)
    held = {a.template: a.deliver_after for a in run.actions if a.type == "send"}
    eight = T0 + 8 * 3_600_000
    assert held == {
        "onboarding.kickoff": None,
        "onboarding.admin_setup": eight,
        "onboarding.executive_success_plan": None,
        "onboarding.end_user_first_steps": eight,
    }
    record = next(a for a in run.actions if a.template == "onboarding.admin_setup").to_record()
    assert record["deliver_after"] == "2026-05-29T08:00:00Z" and record["account_id"] == "A-1"
    assert all(a.deliver_after is None for a in scenario.run(0.5, load_config_text(off)).actions)


def test_usage_drop_significance_is_the_binomial_tail() -> None:
    """The p-value against an independent oracle (exact binomial sum), and the noisy row raises
    without the significance test (the row above shows the test is what holds it back)."""
    from math import comb

    from stream.accounts.health import drop_p_value

    for last, prev in [(20, 40), (55, 71), (10, 15), (0, 12)]:
        n = last + prev
        exact = sum(comb(n, k) for k in range(last + 1)) / 2**n
        assert drop_p_value(last, prev) == pytest.approx(exact, rel=1e-9)
    assert drop_p_value(20, 40) < 0.01 < drop_p_value(55, 71)
    text = _rules_text().replace("usage_drop_max_p_value: 0.01", "usage_drop_max_p_value: 1.0")
    assert text != _rules_text()
    assert "transition:flag_raised:usage_drop" in tokens(
        _fading(S()).run(62, load_config_text(text))
    )


@pytest.mark.parametrize(
    ("value", "clamped"),
    [
        (-3.0, 0.0),
        (-0.0, 0.0),
        (0, 0.0),
        (0.25, 0.25),
        (1, 1.0),
        (1.0000001, 1.0),
        (float("inf"), 1.0),
        (float("-inf"), 0.0),
        (float("nan"), 0.0),
    ],
    ids=["negative", "minus_zero", "int_zero", "inside", "int_one", "above", "inf", "-inf", "nan"],
)
def test_health_component_value_is_clamped_to_unit_interval(value: float, clamped: float) -> None:
    """Each health component value is clamped to [0, 1] exactly as min(1.0, max(0.0, v))."""
    from stream.accounts.health import _clamp

    got = _clamp(value)
    assert repr(got) == repr(clamped) == repr(min(1.0, max(0.0, value)))


def test_a_driver_with_a_sink_hands_outputs_over_and_keeps_none() -> None:
    """With a sink (replay), the sink gets every output and the runs hold none (no per-account
    lists growing for the whole run); without one (run_accounts), the runs keep the same ones."""
    from stream.accounts.driver import AccountDriver

    scenario = _unresolved_urgent(healthy(S(), 10))
    kept = scenario.run(10)
    seen: list[str] = []
    driver = AccountDriver(
        CFG,
        sink=lambda _a, r: seen.extend(
            [*(t.reason for t in r.transitions), *(a.action_id for a in r.actions)]
        ),
    )
    for event in sorted(scenario.events(), key=lambda e: e.at):  # as run_accounts feeds them
        driver.feed(event)
    driver.finish(T0 + 10 * 86_400_000)
    run = driver.accounts[scenario.account]
    assert run.transitions == [] and run.actions == []
    assert run.state == kept.state
    assert sorted(seen) == sorted(
        [*(t.reason for t in kept.transitions), *(a.action_id for a in kept.actions)]
    )
    assert kept.transitions and kept.actions
