"""MQL nurture: entry at the score threshold (no prior sales contact), content by buying stage,
SQL handoff on enough decision signals in one window, a stale flag after long stillness."""

from __future__ import annotations

from typing import Any

from stream.core.context import DAY, Ctx
from stream.core.emails import send_email
from stream.core.facts import buying_stage, decision_times, signal_counts
from stream.core.windows import max_in_window_containing


def _template(ctx: Ctx, stage: str) -> str:
    t = ctx.pcfg.mql.templates
    return {"awareness": t.awareness, "consideration": t.consideration}.get(stage, t.decision)


def can_enter(ctx: Ctx) -> bool:
    d = ctx.d
    return (
        d.score >= ctx.cfg.score.mql_threshold
        and not d.sales_contacted
        and d.email_blocked is None
        and d.icp_tier != "out"
    )


def enter(
    ctx: Ctx, reason: str = "mql.score_threshold", extra: dict[str, Any] | None = None
) -> None:
    d = ctx.d
    counts = signal_counts(d, ctx.now, ctx.cfg)
    stage = buying_stage(counts)
    d.mql_reached = True
    signals: dict[str, Any] = {
        "score": d.score,
        "mql_threshold": ctx.cfg.score.mql_threshold,
        "sales_contacted": d.sales_contacted,
        **counts,
    }
    if extra:
        signals.update(extra)
    ctx.move("mql_nurture", stage, reason, signals)
    d.last_movement_at = ctx.now
    if not check_handoff(ctx, None):
        send_email(ctx, _template(ctx, stage), "mql.stage_" + stage, {"buying_stage": stage})


def check_handoff(ctx: Ctx, t: int | None) -> bool:
    """SQL handoff when ``handoff_min_decision_signals`` decision signals fall in one window.
    ``t``: the new signal's time (windows containing it); None: any window."""
    d = ctx.d
    rules = ctx.pcfg.mql
    width = int(rules.handoff_window_days * DAY)
    times = decision_times(d)
    if t is None:
        best = max((max_in_window_containing(times, x, width) for x in times), default=0)
    else:
        best = max_in_window_containing(times, t, width)
    if best < rules.handoff_min_decision_signals:
        return False
    counts = signal_counts(d, ctx.now, ctx.cfg)
    signals: dict[str, Any] = {
        "decision_signals_in_window": best,
        "handoff_min_decision_signals": rules.handoff_min_decision_signals,
        "score": d.score,
        **counts,
    }
    program = d.program or "mql_nurture"
    ctx.move("sales", "sql", "mql.decision_signals", signals)
    context = {
        **signals,
        "icp_tier": d.icp_tier,
        "company_size": d.company_size,
        "industry": d.industry,
        "features_used": len(d.features),
    }
    ctx.action("handoff", "sales_task", None, "mql.decision_signals", context, program=program)
    return True


def on_signal(ctx: Ctx, new_decision_at: int | None, moved: bool) -> None:
    """A buying-stage signal arrived while in MQL nurture."""
    d = ctx.d
    if new_decision_at is not None and check_handoff(ctx, new_decision_at):
        return
    if moved:
        d.last_movement_at = max(d.last_movement_at or ctx.now, ctx.at)
    counts = signal_counts(d, ctx.now, ctx.cfg)
    stage = buying_stage(counts)
    if stage != d.program_state and (moved or d.program_state != "stale"):
        ctx.move("mql_nurture", stage, "mql.stage_changed", {"score": d.score, **counts})
        d.last_movement_at = ctx.now
        send_email(ctx, _template(ctx, stage), "mql.stage_" + stage, {"buying_stage": stage})


def stale_due(ctx: Ctx) -> int | None:
    d = ctx.d
    if d.program_state == "stale":
        return None
    entered = d.program_entered_at or 0
    since = max(d.last_movement_at or entered, entered)
    return since + int(ctx.pcfg.mql.stale_after_days * DAY)


def silence_due(ctx: Ctx) -> int:
    d = ctx.d
    entered = d.program_entered_at or 0
    return max(d.last_activity_at or entered, entered) + int(ctx.pcfg.mql.silence_days * DAY)


def on_stale(ctx: Ctx) -> None:
    """The stale timer is lazy: movement does not move it; on firing it re-arms itself at the
    real due time if the lead moved meanwhile, else flags the lead stale."""
    d = ctx.d
    due = stale_due(ctx)
    if due is None:
        return
    if due > ctx.at:
        d.add_timer("mql.stale", due)
        return
    since = d.last_movement_at if d.last_movement_at is not None else d.program_entered_at
    days = (ctx.at - (since or 0)) / DAY
    ctx.move(
        "mql_nurture",
        "stale",
        "mql.stale",
        {
            "days_without_movement": round(days, 2),
            "score": d.score,
            "stale_after_days": ctx.pcfg.mql.stale_after_days,
        },
    )


def desired_timers(ctx: Ctx) -> None:
    """Arm the stale and silence timers if missing (lazy: never moved on activity)."""
    d = ctx.d
    has_stale = has_silence = False
    for t in d.timers:
        if t.kind == "mql.stale":
            has_stale = True
        elif t.kind == "silence":
            has_silence = True
    if not has_stale:
        due = stale_due(ctx)
        if due is not None:
            d.add_timer("mql.stale", due)
    if not has_silence:
        d.add_timer("silence", silence_due(ctx))
