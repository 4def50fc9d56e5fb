"""Re-engagement: a short cadence with a defined end. Email 1 on entry, the next ones every
``email_interval_days``, ``inactive`` (suppressed) ``inactive_after_days`` after the last. The
whole cadence is scheduled at entry, so a lead keeps the path it entered under."""

from __future__ import annotations

from typing import Any

from stream.core.context import DAY, Ctx
from stream.core.emails import send_email

RESPONSES = frozenset(
    {
        "session.started",
        "feature.used",
        "activation.completed",
        "email.replied",
        "walkthrough.booked",
    }
)


def enter(ctx: Ctx, context: str, reason: str, signals: dict[str, Any] | None = None) -> None:
    d = ctx.d
    rules = ctx.cfg.reengagement
    d.reengage_context = context
    quiet = (ctx.now - d.last_activity_at) / DAY if d.last_activity_at is not None else None
    sig = {"context": context, "days_without_activity": quiet, **(signals or {})}
    ctx.move("re_engagement", "email_1", reason, sig)
    d.reengage_context = context
    step = int(rules.email_interval_days * DAY)
    n = len(rules.templates)
    for k in range(2, n + 1):
        d.add_timer(f"reengage.email_{k}", ctx.at + (k - 1) * step)
    d.add_timer("reengage.inactive", ctx.at + (n - 1) * step + int(rules.inactive_after_days * DAY))
    send_email(ctx, rules.templates[0], reason, {"email": 1, "context": context})


def on_timer(ctx: Ctx, kind: str) -> None:
    d = ctx.d
    if d.program != "re_engagement":
        return
    templates = ctx.pcfg.reengagement.templates
    if kind == "reengage.inactive":
        ctx.move(
            "inactive",
            None,
            "reengage.no_response",
            {"emails_sent": len(templates), "context": d.reengage_context},
        )
        ctx.action("suppress", "email", None, "reengage.inactive", {"emails": len(templates)})
        return
    k = int(kind.rsplit("_", 1)[1])
    if k > len(templates):
        return
    ctx.move(
        "re_engagement",
        f"email_{k}",
        "reengage.cadence",
        {"email": k, "context": d.reengage_context},
    )
    send_email(
        ctx, templates[k - 1], "reengage.cadence", {"email": k, "context": d.reengage_context}
    )


def on_response(ctx: Ctx, etype: str) -> None:
    """Any login, reply or walkthrough booking exits and re-routes by current state."""
    from stream.core.programs import mql, trial

    d = ctx.d
    signals: dict[str, Any] = {"response": etype, "context": d.reengage_context}
    if d.customer:
        ctx.move("customer", "active", "reengage.responded", signals)
    elif (
        d.trial_start is not None
        and d.reengage_context == "trial"
        and "14d" not in dict(d.checkpoints)  # the trial is still running
    ):
        trial.reenter(ctx, "reengage.responded", signals)
    elif d.sales_contacted:
        ctx.move("sales", "contacted", "reengage.responded", signals)
    else:
        mql.enter(ctx, "reengage.responded", signals)
