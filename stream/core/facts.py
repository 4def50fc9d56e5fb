"""Fold one event into the lead's facts: firmographics, score, buying-stage signals, product
engagement and usage. No routing here: rules read these facts afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.core.config import RulesConfig
from stream.core.context import DAY, HOUR
from stream.core.icp import icp_tier
from stream.core.state import LeadState
from stream.core.windows import insert_sorted, with_item

#: events that count as product or email activity (silence rules)
ACTIVITY = frozenset(
    {
        "trial.started",
        "session.started",
        "feature.used",
        "activation.completed",
        "page.viewed",
        "content.downloaded",
        "roi_calculator.completed",
        "upgrade_cta.clicked",
        "usage.reported",
        "email.opened",
        "email.clicked",
        "email.replied",
        "walkthrough.booked",
    }
)

STAGES = ("awareness", "consideration", "decision")

#: events that change no fact beyond activity time (rules may still react to them)
NO_FACTS = frozenset(
    {
        "email.sent",
        "email.opened",
        "email.bounced",
        "email.unsubscribed",
        "walkthrough.booked",
        "upgrade_cta.clicked",
        "expansion.requested",
        "opportunity.created",
        "trial.started",
        "support.ticket_opened",
        "nps.submitted",
        "billing.status_changed",
    }
)

#: events no rule reacts to once the lead has been routed (facts and activity only)
PASSIVE = frozenset(
    {
        "email.sent",
        "email.opened",
        "support.ticket_opened",
        "nps.submitted",
        "billing.status_changed",
    }
)


#: the largest company size the core keeps (the contract's bound too; the largest employers
#: have a few million employees)
MAX_COMPANY_SIZE = 10_000_000


def number(v: Any) -> float | None:
    """A JSON number as float; None for anything else (bools included)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def update_firmographics(d: LeadState, props: Mapping[str, Any], cfg: RulesConfig) -> bool:
    """Merge profile fields (and the time zone); return True when the ICP tier changed. A
    company size outside ``0..MAX_COMPANY_SIZE`` (or not finite) is ignored: the state stores
    it as an integer, and the codec cannot hold one past 2**64."""
    size = props.get("company_size")
    if (
        isinstance(size, int | float)
        and not isinstance(size, bool)
        and 0 <= size <= MAX_COMPANY_SIZE
    ):
        d.company_size = int(size)
    industry = props.get("industry")
    if isinstance(industry, str) and industry:
        d.industry = industry
    timezone = props.get("timezone")
    if isinstance(timezone, str) and timezone:
        d.timezone = timezone  # validated at the boundary; quiet hours fall back if unknown
    tier = icp_tier(d.company_size, d.industry, cfg.icp)
    if tier != d.icp_tier:
        d.icp_tier = tier
        return True
    return False


def add_score(d: LeadState, at: int, points: int, cfg: RulesConfig) -> int:
    """Record a score contribution; returns SCORE_ADDED when there was one."""
    if points <= 0:
        return 0
    d.score_events = with_item(d.score_events, (at, points), cfg.score.max_contributions)
    return SCORE_ADDED


def score_may_expire(d: LeadState, now: int, cfg: RulesConfig) -> bool:
    """True when the oldest contribution has left its decay window (score must be redone)."""
    events = d.score_events
    return bool(events) and events[0][0] <= now - cfg.ms.score_decay_ms


def compute_score(d: LeadState, now: int, cfg: RulesConfig) -> int:
    """Fit points plus every contribution still inside its decay window at ``now``."""
    ms = cfg.ms
    fit = ms.fit_points.get(d.icp_tier, 0)
    events = d.score_events
    if not events:
        return fit
    horizon = now - ms.score_decay_ms
    if events[0][0] <= horizon:
        events = d.score_events = tuple(e for e in events if e[0] > horizon)
    return fit + sum([p for at, p in events if at <= now])


def add_signal(d: LeadState, at: int, kind: str, cfg: RulesConfig) -> None:
    """Record a buying-stage signal. ``kind`` is ``d:*`` (decision), ``c:*`` (consideration) or
    ``s:sales_contact``. Retention covers two windows so late events still pair exactly."""
    d.signal_events = with_item(d.signal_events, (at, kind), cfg.signals.max_events)


def prune_signals(d: LeadState, now: int, cfg: RulesConfig) -> None:
    if d.signal_events and d.signal_events[0][0] < now - cfg.ms.signal_retention_ms:
        horizon = now - cfg.ms.signal_retention_ms
        d.signal_events = tuple(e for e in d.signal_events if e[0] >= horizon)


def signal_counts(d: LeadState, now: int, cfg: RulesConfig) -> dict[str, int]:
    """Counts per signal family in the current window ``(now - window, now]``."""
    horizon = now - cfg.ms.signal_window_ms
    pricing = comparison = roi = case_study = sales = decision = consideration = 0
    for at, kind in d.signal_events:
        if at <= horizon or at > now:
            continue
        if kind[0] == "d":
            decision += 1
        elif kind[0] == "c":
            consideration += 1
        if kind.endswith("pricing"):
            pricing += 1
        elif kind.endswith(("comparison", "alternatives")):
            comparison += 1
        elif kind.endswith(("roi_calculator", "roi_completed")):
            roi += 1
        elif kind.endswith("case_study"):
            case_study += 1
        elif kind == "s:sales_contact":
            sales += 1
    return {
        "pricing_visits_7d": pricing,
        "comparison_views_7d": comparison,
        "roi_calculator_7d": roi,
        "case_study_7d": case_study,
        "sales_contacts_7d": sales,
        "decision_signals_7d": decision,
        "consideration_signals_7d": consideration,
    }


def buying_stage(counts: Mapping[str, int]) -> str:
    if counts["decision_signals_7d"] or counts["sales_contacts_7d"]:
        return "decision"
    if counts["consideration_signals_7d"]:
        return "consideration"
    return "awareness"


def decision_times(d: LeadState) -> list[int]:
    return [at for at, kind in d.signal_events if kind[0] == "d"]


TIER_CHANGED = 1
SIGNAL_ADDED = 2
DECISION_ADDED = 4
SCORE_ADDED = 8


def fold_event(
    d: LeadState, etype: str, at: int, props: Mapping[str, Any], cfg: RulesConfig
) -> int:
    """Update facts for one event. Returns flags: TIER_CHANGED | SIGNAL_ADDED | DECISION_ADDED."""
    flags = 0
    sig = cfg.signals
    if etype in ACTIVITY and (d.last_activity_at is None or at > d.last_activity_at):
        d.last_activity_at = at
    if etype in NO_FACTS:
        return 0
    if etype == "lead.created" or etype == "lead.updated":
        flags = TIER_CHANGED if update_firmographics(d, props, cfg) else 0
    elif etype == "page.viewed":
        page = props.get("page")
        if isinstance(page, str):
            flags = add_score(d, at, cfg.score.page_points.get(page, 0), cfg)
            if page in sig.decision_pages:
                add_signal(d, at, "d:" + page, cfg)
                flags |= SIGNAL_ADDED | DECISION_ADDED
            elif page in sig.consideration_pages:
                add_signal(d, at, "c:" + page, cfg)
                flags |= SIGNAL_ADDED
    elif etype == "content.downloaded":
        flags = add_score(d, at, cfg.score.content_download_points, cfg)
        content = props.get("content")
        if isinstance(content, str) and content in sig.decision_downloads:
            add_signal(d, at, "d:download_" + content, cfg)
            flags |= SIGNAL_ADDED | DECISION_ADDED
    elif etype == "roi_calculator.completed":
        add_signal(d, at, "d:roi_completed", cfg)
        flags = SIGNAL_ADDED | DECISION_ADDED
    elif etype == "email.clicked":
        flags = add_score(d, at, cfg.score.email_click_points, cfg)
    elif etype == "email.replied":
        if props.get("intent") in sig.decision_reply_intents:
            add_signal(d, at, "d:demo_request", cfg)
            flags = SIGNAL_ADDED | DECISION_ADDED
    elif etype == "sales.contacted":
        d.sales_contacted = True
        add_signal(d, at, "s:sales_contact", cfg)
        flags = SIGNAL_ADDED
    elif etype == "session.started":
        _session(d, at, cfg)
    elif etype == "activation.completed":
        if d.activated_at is None or at < d.activated_at:
            d.activated_at = at
    elif etype == "feature.used":
        feature = props.get("feature")
        if (
            isinstance(feature, str)
            and feature not in d.features
            and len(d.features) < cfg.trial.max_features_tracked
        ):
            d.features = (*d.features, feature)
    elif etype == "subscription.converted":
        d.customer = True
        limits = dict(d.limits)
        for metric in ("seats", "api_calls", "data_volume"):
            v = number(props.get(metric + "_limit"))
            if v is not None:
                limits[metric] = v
        d.limits = tuple(sorted(limits.items()))
    elif etype == "subscription.upgraded":
        d.customer = True
        new = props.get("limits")
        if isinstance(new, Mapping):
            limits = dict(d.limits)
            for metric, value in new.items():
                v = number(value)
                if isinstance(metric, str) and v is not None:
                    limits[metric] = v
            d.limits = tuple(sorted(limits.items()))
    elif etype == "usage.reported":
        _usage(d, at, props, cfg)
    return flags


def start_trial(d: LeadState, at: int, cfg: RulesConfig) -> bool:
    """Record a trial start. True when this starts a new trial (the first one, or a new one
    after the previous trial ran past its last checkpoint); a repeated start is ignored."""
    if d.trial_start is not None:
        last = d.trial_start + int(cfg.trial.checkpoint_14d_hours * HOUR)
        if at <= last:
            return False
        d.checkpoints = ()
        d.activated_at = None
        d.features = ()
    d.trial_start = at
    d.sessions = tuple(s for s in d.sessions if s >= at)
    return True


def _session(d: LeadState, at: int, cfg: RulesConfig) -> None:
    if d.trial_start is not None and at < d.trial_start:
        return
    cap = cfg.trial.max_sessions_tracked
    if len(d.sessions) < cap or at < d.sessions[-1]:
        lst = list(d.sessions)
        insert_sorted(lst, at, cap + 1)
        d.sessions = tuple(lst[:cap])  # keep the earliest sessions (first-7-days count)


def _usage(d: LeadState, at: int, props: Mapping[str, Any], cfg: RulesConfig) -> None:
    metric = props.get("metric")
    value = number(props.get("value"))
    if not isinstance(metric, str) or value is None:
        return
    limit = number(props.get("limit"))
    if limit is not None and limit > 0:
        limits = dict(d.limits)
        limits[metric] = limit
        d.limits = tuple(sorted(limits.items()))
    horizon = (d.watermark or at) - int(cfg.expansion.projection_window_days * DAY)
    mine = sorted([(a, v) for m, a, v in d.usage if m == metric and a >= horizon] + [(at, value)])
    mine = mine[-cfg.expansion.max_samples_per_metric :]
    others = [u for u in d.usage if u[0] != metric]
    d.usage = tuple(others + [(metric, a, v) for a, v in mine])
