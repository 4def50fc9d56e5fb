"""The six post-sale plays: onboarding, adoption, executive, risk_renewal, advocacy, expansion.

Event-driven parts run on the event that causes them (conversion, a new role, first value, a
flag, a usage threshold); time-driven parts (kickoff follow-up, first-value deadline, nudges,
briefings, renewal touchpoints, the advocacy gate) run on the daily account timer, so the
answer depends on event time only, never on when the worker happens to run.
"""

from __future__ import annotations

from msgspec.structs import replace

from stream.accounts.health import DAY, usage_trend, weekly_active
from stream.accounts.model import User
from stream.accounts.work import Work


def _by_role(w: Work, *roles: str) -> User | None:
    """The first user (by id) with the earliest-listed role that can still be reached."""
    for role in roles:
        for lead_id in sorted(w.users):
            u = w.users[lead_id]
            if u.role == role and u.blocked is None:
                return u
    for lead_id in sorted(w.users):
        u = w.users[lead_id]
        if u.role in roles:
            return u  # suppressed: the send records why it was withheld
    return None


# --- health: bands, flags and the risk play -------------------------------------------------
def react_to_health(w: Work, band_before: str | None, flags_before: tuple[str, ...]) -> None:
    """Band change and flag transitions; red or a new flag opens risk_renewal with a CSM task."""
    h = w.refresh_health()
    s = w.s
    if h.band != band_before:
        w.transition("band", band_before, h.band, f"health.{h.band}", score=h.score)
    s.band = h.band
    raised = [f for f in h.flags if f not in flags_before]
    for flag in raised:
        w.transition("flag_raised", None, flag, f"risk.{flag}", score=h.score)
    for flag in flags_before:
        if flag not in h.flags:
            w.transition("flag_cleared", flag, None, f"risk.{flag}_cleared", score=h.score)
    s.flags = h.flags
    turned_red = h.band == "red" and band_before != "red"
    if raised or turned_red:
        reasons = [*(f"flag:{f}" for f in raised), *(["health:red"] if turned_red else [])]
        w.enter_play("risk_renewal", "risk_renewal.at_risk", reasons=reasons)
        w.task(
            "risk_renewal",
            w.rules.risk_renewal.risk_task,
            "risk_renewal.at_risk",
            {"reasons": reasons, "health": w.health().to_record()},
        )
    elif w.play_open("risk_renewal") and h.band != "red" and not h.flags and s.stage != "renewal":
        w.exit_play("risk_renewal", "risk_renewal.recovered", score=h.score)


# --- onboarding ----------------------------------------------------------------------------
def start_onboarding(w: Work) -> None:
    r = w.rules.onboarding
    w.enter_play("onboarding", "onboarding.converted")
    if w.mark("onboarding.kickoff"):
        w.task(
            "onboarding",
            r.templates.kickoff_task,
            "onboarding.kickoff",
            {"due_at_ms": w.now + int(r.kickoff_due_days * DAY), "users": len(w.users)},
        )
    for lead_id in sorted(w.users):
        onboard_user(w, lead_id)


def onboard_user(w: Work, lead_id: str) -> None:
    """The role-based path: each user with a role gets their role's first step once."""
    user = w.users.get(lead_id)
    if user is None or user.role is None or user.onboarded or not w.play_open("onboarding"):
        return
    w.set_user(replace(user, onboarded=True))
    template = str(getattr(w.rules.onboarding.templates, user.role))
    w.send(lead_id, "email", "onboarding", template, f"onboarding.path.{user.role}", {})


def first_value(w: Work, outcome: str) -> None:
    s = w.s
    if s.first_value_at is not None or s.converted_at is None:
        return
    s.first_value_at = w.now
    ttv = round((w.now - s.converted_at) / DAY, 2)
    w.exit_play("onboarding", "onboarding.first_value", outcome=outcome, time_to_value_days=ttv)
    if s.stage == "onboarding":
        w.set_stage("adoption", "stage.first_value", outcome=outcome)
    w.enter_play("adoption", "adoption.first_value", outcome=outcome, time_to_value_days=ttv)
    nudge(w)


# --- adoption ------------------------------------------------------------------------------
def nudge(w: Work) -> None:
    """Outcome-based nudge for the first listed feature not yet adopted (in-app + email)."""
    r = w.rules.adoption
    missing = [f for f in r.features if f not in w.s.features]
    if not missing:
        w.exit_play("adoption", "adoption.all_adopted", features=list(w.s.features))
        return
    sent = dict(w.s.nudges)
    left = [f for f in missing if sent.get(f, 0) < r.max_nudges_per_feature]
    if not left:
        w.exit_play("adoption", "adoption.nudges_exhausted", missing=missing)
        return
    feature = left[0]
    sent[feature] = sent.get(feature, 0) + 1
    w.s.nudges = tuple((f, sent[f]) for f in r.features if f in sent)
    template = f"{r.template_prefix}.{feature}"
    horizon = w.now - int(w.rules.health.usage.active_window_days * DAY)
    active = sorted(
        lead_id
        for lead_id, u in w.users.items()
        if u.last_active_at is not None and u.last_active_at > horizon
    )
    context = {"feature": feature, "adopted": list(w.s.features), "active_users": len(active)}
    w.send(None, "in_app", "adoption", template, "adoption.nudge", context)
    for lead_id in active[: r.max_email_recipients]:
        w.send(lead_id, "email", "adoption", template, "adoption.nudge", context)
    w.s.last_nudge_at = w.now


# --- the daily timer -----------------------------------------------------------------------
def daily(w: Work) -> None:
    """Everything that is due by event time: runs on each daily account timer."""
    s = w.s
    if s.converted_at is None or s.stage == "churned":
        return
    age = w.now - s.converted_at
    r = w.rules
    if s.first_value_at is None and w.play_open("onboarding"):
        if age >= r.onboarding.first_value_days * DAY and w.mark("onboarding.blocker"):
            w.task(
                "onboarding",
                r.onboarding.templates.blocker_task,
                "onboarding.no_first_value",
                {"days_since_conversion": round(age / DAY, 2), "outcomes": list(s.outcomes)},
            )
        if age >= r.stages.onboarding_max_days * DAY:
            w.exit_play("onboarding", "onboarding.timeout", days=round(age / DAY, 2))
            if s.stage == "onboarding":
                w.set_stage("adoption", "stage.onboarding_timeout", days=round(age / DAY, 2))
    if w.play_open("adoption") and (
        s.last_nudge_at is None or w.now - s.last_nudge_at >= r.adoption.nudge_interval_days * DAY
    ):
        nudge(w)
    _executive(w)
    _renewal(w)
    _advocacy(w)


def _executive(w: Work) -> None:
    s = w.s
    assert s.converted_at is not None
    every = int(w.rules.executive.interval_days * DAY)
    last = s.last_briefing_at if s.last_briefing_at is not None else s.converted_at
    if not w.play_open("executive") or w.now - last < every:
        return
    sponsor = _by_role(w, "executive", "admin")
    last30, prev30 = usage_trend(s, w.now, w.rules)
    growth = None if prev30 == 0 else round((last30 - prev30) / prev30, 4)
    context = {
        "weekly_active_users": weekly_active(s, w.now, w.rules),
        "sessions_30d": last30,
        "usage_growth_30d": growth,
        "outcomes": list(s.outcomes),
        "arr": s.arr,
        "health_score": w.assessment.score if w.assessment is not None else None,
    }
    w.send(
        None if sponsor is None else sponsor.lead_id,
        "exec_briefing",
        "executive",
        w.rules.executive.template,
        "executive.quarterly_briefing",
        context,
    )
    s.last_briefing_at = w.now


# --- risk & renewal ------------------------------------------------------------------------
def _renewal(w: Work) -> None:
    s = w.s
    rr = w.rules.risk_renewal
    if s.renewal_at is None or w.now >= s.renewal_at:
        return
    window = int(w.rules.stages.renewal_window_days * DAY)
    if w.now >= s.renewal_at - window:
        if s.stage != "renewal":
            w.set_stage("renewal", "stage.renewal_window", renewal_at_ms=s.renewal_at)
        w.enter_play("risk_renewal", "risk_renewal.renewal_window", renewal_at_ms=s.renewal_at)
    due = [d for d in rr.touchpoint_days if w.now >= s.renewal_at - d * DAY]
    if not due:
        return  # no touchpoint due yet (most days): nothing to look up
    sent = {d for at, d in s.touchpoints if at == s.renewal_at}
    fresh = [d for d in due if d not in sent]
    if not fresh:
        return
    # at most once per renewal date; a late start sends only the latest due touchpoint
    s.touchpoints = (*s.touchpoints, *((s.renewal_at, d) for d in fresh))[-32:]
    days = min(fresh)
    band = s.band or "yellow"
    template = f"{rr.touchpoint_prefix}_{days}d.{band}"
    context = {
        "days_before_renewal": days,
        "renewal_at_ms": s.renewal_at,
        "band": band,
        "score": s.score,
        "flags": list(s.flags),
        "arr": s.arr,
    }
    contact = _by_role(w, "admin", "executive")
    for channel in rr.by_band[band]:  # type: ignore[index]
        if channel == "csm_task":
            w.task("risk_renewal", template, "risk_renewal.touchpoint", context)
        else:
            who = _by_role(w, "executive", "admin") if channel == "exec_briefing" else contact
            lead_id = None if who is None else who.lead_id
            w.send(lead_id, channel, "risk_renewal", template, "risk_renewal.touchpoint", context)


# --- advocacy ------------------------------------------------------------------------------
def advocacy_gate(w: Work) -> dict[str, bool]:
    """The four conditions (plus: no risk flag open), each by name, for transitions and tests."""
    s = w.s
    a = w.rules.advocacy
    latest = max(
        (u for u in w.users.values() if u.nps is not None and u.nps_at is not None),
        key=lambda u: (u.nps_at, u.lead_id),
        default=None,
    )
    tenure = 0 if s.converted_at is None else w.now - s.converted_at
    return {
        "promoter_nps": latest is not None and (latest.nps or 0) >= a.min_nps,
        "green_health": s.band == "green",
        "tenure": tenure >= a.min_tenure_days * DAY,
        "no_urgent_ticket": all(
            t.resolved_at is not None or t.severity != "urgent" for t in s.tickets
        ),
        "no_risk_flag": not s.flags,
    }


def _advocacy(w: Work) -> None:
    s = w.s
    a = w.rules.advocacy
    since = w.play_since("advocacy")
    if since is not None:
        if w.now - since >= a.ask_open_days * DAY:
            w.exit_play("advocacy", "advocacy.no_response")
        return
    if (
        s.last_advocacy_ask_at is not None
        and w.now - s.last_advocacy_ask_at < a.interval_days * DAY
    ):
        return
    if s.band != "green" or s.flags:
        return  # the gate's green_health or no_risk_flag fails (the cheap checks first)
    gate = advocacy_gate(w)
    if not all(gate.values()):
        return
    promoter = max(
        (u for u in w.users.values() if u.nps is not None and u.nps_at is not None),
        key=lambda u: (u.nps_at, u.lead_id),
    )
    kind = next((k for k in a.kinds if k not in s.advocacy_done), a.kinds[-1])
    w.enter_play("advocacy", "advocacy.promoter", nps=promoter.nps, ask=kind)
    w.send(
        promoter.lead_id,
        "email",
        "advocacy",
        f"{a.template_prefix}.{kind}",
        "advocacy.promoter",
        {"kind": kind, "nps": promoter.nps, "score": s.score},
    )
    s.last_advocacy_ask_at = w.now
