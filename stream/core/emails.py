"""The one gate every email goes through: suppression, holdout and the frequency cap.

A withheld email is never dropped silently: it becomes a ``skipped`` action carrying the
template it would have sent and a ``skip_reason`` (``unsubscribed``, ``hard_bounced``,
``holdout``, ``frequency_cap``). The cap counts sends on the lead's event-time clock (the
largest event time seen, so a late event cannot open room in the past): at most
``frequency_cap`` sends in any window of ``frequency_window_days``, across programs.
"""

from __future__ import annotations

from typing import Any

from stream.core.draft import Ctx


def send_email(ctx: Ctx, template: str, reason: str, context: dict[str, Any] | None = None) -> bool:
    """Send ``template`` or record why not. Returns True when a ``send`` action was emitted."""
    d = ctx.d
    if d.email_blocked is not None:
        ctx.action("skipped", "email", template, reason, context, skip_reason=d.email_blocked)
        return False
    if d.holdout:
        ctx.action("skipped", "email", template, reason, context, skip_reason="holdout")
        return False
    rules = ctx.cfg.emails
    horizon = ctx.now - ctx.cfg.ms.frequency_window_ms
    recent = [t for t in d.send_times if t > horizon]
    if len(recent) >= rules.frequency_cap:
        d.send_times = tuple(recent)
        ctx.action("skipped", "email", template, reason, context, skip_reason="frequency_cap")
        return False
    recent.append(ctx.now)
    d.send_times = tuple(recent)
    ctx.action("send", "email", template, reason, context)
    return True
