"""``step_account(state, input, config)``: the whole post-sale behaviour of one account.

Pure: no I/O, no clock. Time is the largest event time the account has seen (``watermark``), so
a late event cannot move windows backwards. Each step folds the event into the account's facts,
re-evaluates health (band and flag transitions, the risk play at once), runs the event-driven
play rules, and on the daily timer everything that is due by event time. The account's single
pending timer is the next daily tick after conversion (none before conversion or after churn).

How the account knows a user unsubscribed: from the same ``email.unsubscribed`` and
``email.bounced {hard: true}`` events the lead sees. The email sender stamps ``account_id`` on
them (as on every event of a customer's user), so they reach the account through its
repartition topic; the account marks the user ``blocked`` and every personal send to that user
is a ``skipped`` action from then on. A suppressed user is never evicted from the bounded user
table, so a later event cannot make them reachable again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

from msgspec.structs import replace

from stream.accounts import expansion, plays
from stream.accounts.health import DAY, day_of, entry_day
from stream.accounts.model import (
    AccountState,
    AccountStep,
    AccountTimerFired,
    Ticket,
)
from stream.accounts.work import Work
from stream.core.config import RulesConfig
from stream.core.icp import icp_tier
from stream.core.ids import in_holdout
from stream.core.model import Event, rfc3339_to_ms

#: the event types the account folds; the runtime re-keys only these (when they carry account_id)
ACCOUNT_EVENT_TYPES = frozenset(
    {
        "lead.created",
        "lead.updated",
        "session.started",
        "feature.used",
        "activation.completed",
        "subscription.converted",
        "subscription.upgraded",
        "subscription.renewed",
        "subscription.cancelled",
        "support.ticket_opened",
        "support.ticket_resolved",
        "nps.submitted",
        "csat.submitted",
        "billing.status_changed",
        "outcome.achieved",
        "advocacy.completed",
        "usage.reported",
        "expansion.requested",
        "upgrade_cta.clicked",
        "email.unsubscribed",
        "email.bounced",
    }
)
ACTIVITY = frozenset({"session.started", "feature.used", "activation.completed"})
#: events that are about the person named by lead_id (they add the user to the account)
PERSONAL = ACTIVITY | {
    "lead.created",
    "lead.updated",
    "nps.submitted",
    "csat.submitted",
    "email.unsubscribed",
    "email.bounced",
}
HOLDOUT_PROGRAM = "post_sale"  # one holdout draw per account for all plays (ids.in_holdout)
_LIMIT_FIELDS: tuple[tuple[str, str], ...] = (
    ("seats", "seats_limit"),
    ("api_calls", "api_calls_limit"),
    ("data_volume", "data_volume_limit"),
)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _time(v: Any) -> int | None:
    if not isinstance(v, str):
        return None
    try:
        return rfc3339_to_ms(v)
    except ValueError:
        return None


def step_account(
    state: AccountState | None, inp: Event | AccountTimerFired, config: RulesConfig
) -> AccountStep:
    """Advance one account by one input (an event carrying its account_id, or its timer)."""
    if isinstance(inp, AccountTimerFired):
        if state is None:
            return AccountStep(AccountState(inp.account_id), (), (), ())
        return _on_timer(state, inp, config)
    if inp.account_id is None:
        raise ValueError("step_account needs an event with an account_id")
    if state is None:
        state = AccountState(inp.account_id)
    if inp.type not in ACCOUNT_EVENT_TYPES or inp.event_id in state.seen_ids:
        return AccountStep(state, (), (), state.timers)
    now = inp.at if state.watermark is None or inp.at > state.watermark else state.watermark
    w = Work(state, config, inp.event_id, inp.at, now)
    s = w.s
    s.watermark = now
    seen, keep = s.seen_ids, config.accounts.max_event_ids
    s.seen_ids = (seen[len(seen) - keep + 1 :] if len(seen) >= keep else seen) + (inp.event_id,)
    live = s.converted_at is not None and s.stage != "churned"
    band_before, flags_before = s.band, s.flags
    _fold(w, inp.type, inp.lead_id, inp.at, inp.properties)
    if s.converted_at is not None and s.stage != "churned":
        plays.react_to_health(w, band_before if live else None, flags_before if live else ())
    w.sync_users()
    return AccountStep(s, tuple(w.transitions), tuple(w.actions), s.timers)


def _on_timer(state: AccountState, inp: AccountTimerFired, config: RulesConfig) -> AccountStep:
    now = inp.at if state.watermark is None or inp.at > state.watermark else state.watermark
    w = Work(state, config, f"timer:{inp.timer_id}", inp.at, now)
    s = w.s
    s.watermark = now
    if s.converted_at is not None and s.stage != "churned":
        _prune(w)
        plays.react_to_health(w, s.band, s.flags)  # silence counts: windows moved on
        plays.daily(w)
    w.sync_users()
    return AccountStep(s, tuple(w.transitions), tuple(w.actions), s.timers)


def _prune(w: Work) -> None:
    """Drop what no window can see any more (session days, resolved tickets)."""
    s = w.s
    oldest = day_of(w.now) - 2 * w.rules.health.usage.trend_window_days + 1
    if s.session_days and s.session_days[0][0] < oldest:
        s.session_days = tuple(p for p in s.session_days if p[0] >= oldest)
    horizon = w.now - int(w.rules.health.support.window_days * DAY)
    if any(t.resolved_at is not None and t.opened_at <= horizon for t in s.tickets):
        s.tickets = tuple(t for t in s.tickets if t.resolved_at is None or t.opened_at > horizon)


def _fold(w: Work, etype: str, lead_id: str, at: int, props: Mapping[str, Any]) -> None:
    s = w.s
    user = w.user(lead_id) if etype in PERSONAL else None  # only personal events use it
    if user is not None and etype in ACTIVITY:
        if user.last_active_at is None or at > user.last_active_at:
            w.set_user(replace(user, last_active_at=at))
        if etype == "session.started":
            _count_session(w, at)
        feature = props.get("feature")
        adopted = feature in w.rules.adoption.features and feature not in s.features
        if etype == "feature.used" and adopted:
            s.features = (*s.features, str(feature))
            if all(f in s.features for f in w.rules.adoption.features):
                w.exit_play("adoption", "adoption.all_adopted", features=list(s.features))
    elif etype in ("lead.created", "lead.updated"):
        _firmographics(w, props)
        zone = props.get("timezone")
        if user is not None and isinstance(zone, str) and zone and zone != user.timezone:
            user = replace(user, timezone=zone)  # validated at the boundary
            w.set_user(user)
        role = props.get("role")
        if user is not None and isinstance(role, str) and role != user.role:
            w.set_user(replace(user, role=role, onboarded=user.onboarded))
            plays.onboard_user(w, lead_id)
    elif etype == "subscription.converted":
        _convert(w, props)
    elif etype == "subscription.upgraded":
        _upgrade(w, props)
    elif etype == "subscription.renewed":
        _renew(w, props)
    elif etype == "subscription.cancelled" and s.converted_at is not None:
        if s.stage != "churned":
            s.cancelled_at = w.now
            for play, _since in s.plays:
                w.exit_play(play, "account.churned")
            w.set_stage("churned", "stage.cancelled", cancel_reason=props.get("reason"))
    elif etype == "support.ticket_opened":
        ticket_id = str(props.get("ticket_id") or w.caused_by)
        severity = str(props.get("severity") or "normal")
        kept = [t for t in s.tickets if t.ticket_id != ticket_id]
        kept.append(Ticket(ticket_id, severity, at))
        s.tickets = _bounded_tickets(kept, w.rules.max_tickets)
    elif etype == "support.ticket_resolved":
        ticket_id = str(props.get("ticket_id"))
        s.tickets = tuple(
            replace(t, resolved_at=at) if t.ticket_id == ticket_id and t.resolved_at is None else t
            for t in s.tickets
        )
    elif etype == "nps.submitted" and user is not None:
        if user.nps_at is None or at >= user.nps_at:
            w.set_user(replace(user, nps=int(props["score"]), nps_at=at))
    elif etype == "csat.submitted" and user is not None:
        if user.csat_at is None or at >= user.csat_at:
            w.set_user(replace(user, csat=int(props["score"]), csat_at=at))
    elif etype == "billing.status_changed":
        s.billing_status = str(props.get("status", s.billing_status))
    elif etype == "outcome.achieved":
        outcome = str(props.get("outcome"))
        if outcome not in s.outcomes:
            s.outcomes = (*s.outcomes, outcome)[-32:]
        plays.first_value(w, outcome)
    elif etype == "advocacy.completed":
        kind = str(props.get("kind"))
        if kind not in s.advocacy_done:
            s.advocacy_done = (*s.advocacy_done, kind)[-8:]
        w.exit_play("advocacy", "advocacy.completed", completed=kind)
    elif etype == "email.unsubscribed" or (etype == "email.bounced" and props.get("hard") is True):
        if user is not None and user.blocked is None:
            blocked = "unsubscribed" if etype == "email.unsubscribed" else "hard_bounced"
            w.set_user(replace(user, blocked=blocked))
    elif etype == "usage.reported" and s.converted_at is not None and s.stage != "churned":
        value = _number(props.get("value"))
        if value is not None:
            expansion.on_usage(w, str(props.get("metric")), value, _number(props.get("limit")))
    elif etype in ("expansion.requested", "upgrade_cta.clicked") and s.stage not in (
        None,
        "churned",
    ):
        expansion.on_upgrade_ask(w, etype)


def _firmographics(w: Work, props: Mapping[str, Any]) -> None:
    """The account's ICP tier, from the company facts its users' profiles carry."""
    s = w.s
    size, industry = props.get("company_size"), props.get("industry")
    if isinstance(size, int) and not isinstance(size, bool):
        s.company_size = size
    if isinstance(industry, str):
        s.industry = industry
    if s.company_size is not None or s.industry is not None:
        s.icp_tier = icp_tier(s.company_size, s.industry, w.cfg.icp)


def _count_session(w: Work, at: int) -> None:
    s = w.s
    day = day_of(at)
    oldest = day_of(w.now) - 2 * w.rules.health.usage.trend_window_days + 1
    if day < oldest:
        return
    days = s.session_days
    if not days or days[-1][0] <= day:  # in order (the usual case)
        if days and days[0][0] < oldest:  # drop the days no window sees any more
            days = days[bisect_left(days, oldest, key=entry_day) :]
        if days and days[-1][0] == day:
            s.session_days = (*days[:-1], (day, days[-1][1] + 1))
        else:
            s.session_days = (*days, (day, 1))
        return
    counts = dict(s.session_days)
    counts[day] = counts.get(day, 0) + 1
    s.session_days = tuple(sorted((d, n) for d, n in counts.items() if d >= oldest))


def _bounded_tickets(tickets: list[Ticket], limit: int) -> tuple[Ticket, ...]:
    while len(tickets) > limit:  # forget the oldest resolved ticket first, then the oldest
        resolved = [t for t in tickets if t.resolved_at is not None]
        victim = min(resolved or tickets, key=lambda t: (t.opened_at, t.ticket_id))
        tickets.remove(victim)
    return tuple(tickets)


def _limits(props: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric, key in _LIMIT_FIELDS:
        v = _number(props.get(key))
        if v is not None:
            out[metric] = v
    extra = props.get("limits")
    if isinstance(extra, Mapping):
        for metric, v in extra.items():
            n = _number(v)
            if n is not None:
                out[str(metric)] = n
    return out


def _convert(w: Work, props: Mapping[str, Any]) -> None:
    s = w.s
    if s.converted_at is not None and s.stage != "churned":
        return  # already a customer: a repeated conversion changes nothing
    s.converted_at = w.now
    s.cancelled_at = None
    s.first_value_at = None
    s.plays, s.done, s.nudges = (), (), ()  # touchpoints stay: once per renewal date, ever
    s.last_nudge_at = s.last_briefing_at = None
    s.band, s.flags, s.score = None, (), None
    s.plan = props.get("plan") if isinstance(props.get("plan"), str) else s.plan
    s.limits = tuple(sorted(_limits(props).items())) or s.limits
    s.arr = s.start_arr = _number(props.get("arr")) or 0.0
    renewal = _time(props.get("renewal_at"))
    months = props.get("term_months")
    if renewal is None:
        term_days = 365.0 if not isinstance(months, int) else months * 365.0 / 12
        renewal = w.now + int(term_days * DAY)
    s.renewal_at = renewal
    s.holdout = in_holdout(s.account_id, HOLDOUT_PROGRAM, w.cfg.emails.holdout_pct)
    w.set_stage("onboarding", "stage.converted", plan=s.plan, arr=s.arr, holdout=s.holdout)
    plays.start_onboarding(w)
    w.enter_play("executive", "executive.converted")


def _upgrade(w: Work, props: Mapping[str, Any]) -> None:
    s = w.s
    merged = dict(s.limits)
    merged.update(_limits(props))
    s.limits = tuple(sorted(merged.items()))
    if isinstance(props.get("plan"), str):
        s.plan = str(props["plan"])
    arr = _number(props.get("arr"))
    if arr is not None:
        s.arr = arr
    w.exit_play("expansion_nurture", "expansion.upgraded", plan=s.plan)


def _renew(w: Work, props: Mapping[str, Any]) -> None:
    s = w.s
    renewal = _time(props.get("renewal_at"))
    if s.converted_at is None or s.stage == "churned" or renewal is None:
        return
    before = s.renewal_at
    s.renewal_at = renewal
    arr = _number(props.get("arr"))
    if arr is not None:
        s.arr = arr
    stage = "adoption" if s.first_value_at is not None else "onboarding"
    if s.stage == "renewal":
        w.set_stage(stage, "stage.renewed", renewal_at_ms=renewal, previous_renewal_at_ms=before)
    if w.play_open("risk_renewal") and s.band != "red" and not s.flags:
        w.exit_play("risk_renewal", "risk_renewal.renewed", renewal_at_ms=renewal)
