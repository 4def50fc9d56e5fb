"""Trial nurture: entry on trial start, branching at the 48h / 7d / 14d checkpoints judged on
event time, handoff on activation + breadth + paid or on explicit upgrade intent."""

from __future__ import annotations

from typing import Any

from stream.core.config import TrialRules
from stream.core.context import DAY, HOUR, Ctx
from stream.core.emails import send_email
from stream.core.state import LeadState
from stream.core.windows import count_in

CHECKPOINTS = ("48h", "7d", "14d")


def _offset(rules: TrialRules, name: str) -> int:
    """How long after the trial start a checkpoint is due (ms)."""
    if name == "48h":
        hours = rules.checkpoint_48h_hours
    elif name == "7d":
        hours = rules.checkpoint_7d_hours
    elif name == "14d":
        hours = rules.checkpoint_14d_hours
    else:
        raise KeyError(name)
    return int(hours * HOUR)


def _due(d: LeadState, rules: TrialRules, name: str) -> int:
    """When checkpoint ``name`` of the lead's trial is due (epoch ms)."""
    return (d.trial_start or 0) + _offset(rules, name)


def checkpoint_due(d: LeadState, ctx: Ctx, name: str) -> int:
    return _due(d, ctx.pcfg.trial, name)


def judge(d: LeadState, due: int) -> str:
    """Engagement state at ``due`` from event times only (late arrivals included)."""
    if d.activated_at is not None and d.activated_at <= due:
        return "activated"
    start = d.trial_start or 0
    if count_in(d.sessions, start, due + 1):
        return "engaged_not_activated"
    return "silent"


def engagement(ctx: Ctx, due: int | None = None) -> dict[str, Any]:
    d = ctx.d
    start = d.trial_start or 0
    week = start + int(ctx.pcfg.trial.engagement_window_days * DAY)
    return {
        "trial_start": start,
        "activated": d.activated_at is not None and d.activated_at <= (due or ctx.now),
        "activated_at": d.activated_at,
        "features_used": len(d.features),
        "sessions_first_7d": count_in(d.sessions, start, week),
    }


def _send_for_state(ctx: Ctx, state: str, reason: str, context: dict[str, Any]) -> None:
    t = ctx.pcfg.trial.templates
    template = {"activated": t.activated, "engaged_not_activated": t.engaged_not_activated}.get(
        state
    )
    if template is not None:
        send_email(ctx, template, reason, context)


def enter(ctx: Ctx) -> None:
    """A new trial started: enter trial nurture and schedule its three checkpoints."""
    d = ctx.d
    d.cancel_prefix("trial.")
    ctx.move("trial_nurture", "started", "trial.started", engagement(ctx))
    start = d.trial_start or ctx.at
    rules = ctx.pcfg.trial  # the version just entered under
    key = str(start)
    for name in CHECKPOINTS:
        d.add_timer("trial." + name, _due(d, rules, name), key=key)
    send_email(ctx, rules.templates.welcome, "trial.started", {"trial_start": start})


def reenter(ctx: Ctx, reason: str, signals: dict[str, Any]) -> None:
    """Back into trial nurture (from re-engagement), in the state the lead is in now."""
    state = judge(ctx.d, ctx.now)
    if state == "silent":
        state = "engaged_not_activated"  # it just came back: a login or a reply
    ctx.move("trial_nurture", state, reason, {**engagement(ctx), **signals})
    _send_for_state(ctx, state, reason, engagement(ctx))


def on_checkpoint(ctx: Ctx, name: str, due: int) -> str:
    """Judge the checkpoint once. Returns the judged state."""
    d = ctx.d
    state = judge(d, due)
    d.checkpoints = (*d.checkpoints, (name, state))
    if d.program != "trial_nurture":
        return state  # recorded (fires once) but the lead is elsewhere now
    signals = {**engagement(ctx, due), "checkpoint": name, "checkpoint_due": due}
    reason = "trial.checkpoint_" + name
    ctx.move("trial_nurture", state, reason, signals)
    if name == "48h":
        if state == "silent":
            from stream.core.programs import reengage

            reengage.enter(ctx, "trial", "reengage.trial_silent_48h", {"checkpoint": name})
        else:
            _send_for_state(ctx, state, reason, signals)
    else:
        t = ctx.pcfg.trial.templates
        template = t.checkpoint_7d if name == "7d" else t.checkpoint_14d
        send_email(ctx, template, reason, {**signals, "state": state})
    return state


def revise_48h(ctx: Ctx) -> None:
    """A late activation/session whose event time is before the fired 48h checkpoint: the
    checkpoint is judged on event time, so its verdict is revised."""
    d = ctx.d
    if not d.checkpoints or d.trial_start is None:
        return
    judged = dict(d.checkpoints).get("48h")
    if judged is None:
        return
    due = checkpoint_due(d, ctx, "48h")
    if ctx.at > due:
        return
    new = judge(d, due)
    if new == judged:
        return
    d.checkpoints = tuple((n, new if n == "48h" else s) for n, s in d.checkpoints)
    if d.program == "trial_nurture" and "7d" not in dict(d.checkpoints):
        signals = {
            **engagement(ctx, due),
            "checkpoint": "48h",
            "checkpoint_due": due,
            "previous_verdict": judged,
        }
        ctx.move("trial_nurture", new, "trial.checkpoint_48h_revised", signals)
        _send_for_state(ctx, new, "trial.checkpoint_48h_revised", signals)


def upgrade_intent(ctx: Ctx, intent: str) -> None:
    d = ctx.d
    signals = {**engagement(ctx), "intent": intent}
    ctx.move("sales", "sql", "trial.upgrade_intent", signals)
    ctx.action(
        "handoff",
        "sales_task",
        None,
        "trial.upgrade_intent",
        {**signals, "icp_tier": d.icp_tier},
        program="trial_nurture",
    )


def paid_handoff_ready(ctx: Ctx) -> bool:
    d = ctx.d
    return d.activated_at is not None and len(d.features) >= ctx.pcfg.trial.handoff_min_features


def silence_due(ctx: Ctx) -> int | None:
    d = ctx.d
    if not d.checkpoints:
        return None
    rules = ctx.pcfg.trial  # looked up once for the judged checkpoints
    last_cp = max([_due(d, rules, n) for n, _ in d.checkpoints])
    quiet_since = max(d.last_activity_at or 0, last_cp)
    return quiet_since + int(ctx.pcfg.trial.silence_days_after_checkpoint * DAY)


def desired_timers(ctx: Ctx) -> None:
    """After a checkpoint, arm the (lazy) silence timer if missing."""
    d = ctx.d
    if d.checkpoints and d.timer_of("silence") is None:
        due = silence_due(ctx)
        if due is not None:
            d.add_timer("silence", due)
