"""Expansion nurture: a customer's own usage (80% of a plan limit, or a milestone) opens it with
a usage summary and a projection to the limit; an upgrade ask, the upgrade CTA or the hard
limit hands the account to CSM/AE."""

from __future__ import annotations

from typing import Any

from stream.core.context import DAY, Ctx
from stream.core.emails import send_email


def projection(ctx: Ctx, metric: str, limit: float | None) -> dict[str, Any]:
    d = ctx.d
    samples = sorted((a, v) for m, a, v in d.usage if m == metric)
    out: dict[str, Any] = {"metric": metric}
    if not samples:
        return out
    a0, v0 = samples[0]
    a1, v1 = samples[-1]
    out["value"] = v1
    out["limit"] = limit
    out["window_days"] = ctx.cfg.expansion.projection_window_days
    out["added_in_window"] = v1 - v0
    days_to_limit: float | None = None
    if limit:
        out["pct_of_limit"] = round(100.0 * v1 / limit, 1)
        span_days = (a1 - a0) / DAY
        if span_days > 0 and v1 > v0 and v1 < limit:
            rate = (v1 - v0) / span_days
            days_to_limit = round((limit - v1) / rate, 1)
    out["days_to_limit"] = days_to_limit
    return out


def _limit(ctx: Ctx, metric: str) -> float | None:
    for m, v in ctx.d.limits:
        if m == metric:
            return v
    return None


def handoff(ctx: Ctx, reason: str, signals: dict[str, Any]) -> None:
    program = ctx.d.program or "customer"
    ctx.move("csm", "expansion_handoff", reason, signals)
    ctx.action(
        "handoff",
        "csm_task",
        None,
        reason,
        {**signals, "icp_tier": ctx.d.icp_tier},
        program=program,
    )


def _trigger(ctx: Ctx, reason: str, template: str, ctxt: dict[str, Any]) -> None:
    d = ctx.d
    if d.program != "expansion_nurture":
        ctx.move("expansion_nurture", reason.split(".", 1)[1], reason, ctxt)
    send_email(ctx, template, reason, ctxt)


def on_usage(ctx: Ctx, metric: str, value: float, nurture: bool = True) -> None:
    d = ctx.d
    rules = ctx.cfg.expansion
    limit = _limit(ctx, metric)
    if metric in rules.threshold_metrics and limit and value >= limit:
        handoff(ctx, "expansion.hard_limit", projection(ctx, metric, limit))
        return
    if not nurture:
        return
    if metric in rules.threshold_metrics and limit:
        key = f"{metric}:{limit:g}"
        if value >= rules.usage_threshold * limit and key not in d.expansion_fired:
            d.expansion_fired = (*d.expansion_fired, key)
            ctxt = {**projection(ctx, metric, limit), "threshold": rules.usage_threshold}
            _trigger(ctx, "expansion.usage_threshold", rules.templates.usage_summary, ctxt)
            return
    mark = rules.milestones.get(metric)
    if mark is not None and value >= mark:
        key = f"{metric}:milestone:{mark:g}"
        if key not in d.expansion_fired:
            d.expansion_fired = (*d.expansion_fired, key)
            ctxt = {**projection(ctx, metric, limit), "milestone": mark}
            _trigger(ctx, "expansion.milestone", rules.templates.milestone, ctxt)


def on_upgrade_ask(ctx: Ctx, etype: str) -> None:
    reason = (
        "expansion.upgrade_requested"
        if etype == "expansion.requested"
        else ("expansion.upgrade_cta")
    )
    usage = {m: projection(ctx, m, _limit(ctx, m)) for m in sorted({u[0] for u in ctx.d.usage})}
    handoff(ctx, reason, {"trigger": etype, "usage": usage})
