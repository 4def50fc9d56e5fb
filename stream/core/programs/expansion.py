"""Expansion nurture: a customer's own usage (80% of a plan limit, or a milestone) opens it with
a usage summary and a projection to the limit; an upgrade ask, the upgrade CTA or the hard
limit hands the account to CSM/AE."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from stream.core.config import ExpansionRules
from stream.core.context import DAY, Ctx
from stream.core.emails import send_email

# --- the rules on their own (shared with the account play, stream/accounts/expansion.py) ------


class UsageTrigger(NamedTuple):
    """What one usage sample triggers: the reason, the once-only key to remember (None for the
    hard limit, which hands off every time), the email template and the context extras."""

    reason: str
    key: str | None
    template: str | None
    extra: dict[str, Any]


def usage_trigger(
    rules: ExpansionRules,
    metric: str,
    value: float,
    limit: float | None,
    fired: Collection[str],
    nurture: bool = True,
) -> UsageTrigger | None:
    """The hard limit (a handoff), else 80% of a limit once per limit, else a milestone once;
    ``nurture=False`` (out of ICP): the hard limit only."""
    if metric in rules.threshold_metrics and limit and value >= limit:
        return UsageTrigger("expansion.hard_limit", None, None, {})
    if not nurture:
        return None
    if metric in rules.threshold_metrics and limit:
        key = f"{metric}:{limit:g}"
        if value >= rules.usage_threshold * limit and key not in fired:
            extra = {"threshold": rules.usage_threshold}
            return UsageTrigger(
                "expansion.usage_threshold", key, rules.templates.usage_summary, extra
            )
    mark = rules.milestones.get(metric)
    if mark is not None and value >= mark:
        key = f"{metric}:milestone:{mark:g}"
        if key not in fired:
            extra = {"milestone": mark}
            return UsageTrigger("expansion.milestone", key, rules.templates.milestone, extra)
    return None


def project(
    metric: str, samples: Sequence[tuple[int, float]], limit: float | None, window_days: float
) -> dict[str, Any]:
    """The usage summary of a metric from its samples (event time order): the latest value, what
    was added in the window and, growing toward a limit, the days left at the current rate."""
    out: dict[str, Any] = {"metric": metric}
    if not samples:
        return out
    a0, v0 = samples[0]
    a1, v1 = samples[-1]
    out["value"] = v1
    out["limit"] = limit
    out["window_days"] = window_days
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


def upgrade_reason(etype: str) -> str:
    return (
        "expansion.upgrade_requested" if etype == "expansion.requested" else "expansion.upgrade_cta"
    )


# --- the lead's expansion program ------------------------------------------------------------


def projection(ctx: Ctx, metric: str, limit: float | None) -> dict[str, Any]:
    samples = sorted((a, v) for m, a, v in ctx.d.usage if m == metric)
    return project(metric, samples, limit, ctx.cfg.expansion.projection_window_days)


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
    limit = _limit(ctx, metric)
    trigger = usage_trigger(ctx.cfg.expansion, metric, value, limit, d.expansion_fired, nurture)
    if trigger is None:
        return
    context = {**projection(ctx, metric, limit), **trigger.extra}
    if trigger.key is None or trigger.template is None:
        handoff(ctx, trigger.reason, context)
        return
    d.expansion_fired = (*d.expansion_fired, trigger.key)
    _trigger(ctx, trigger.reason, trigger.template, context)


def on_upgrade_ask(ctx: Ctx, etype: str) -> None:
    usage = {m: projection(ctx, m, _limit(ctx, m)) for m in sorted({u[0] for u in ctx.d.usage})}
    handoff(ctx, upgrade_reason(etype), {"trigger": etype, "usage": usage})
