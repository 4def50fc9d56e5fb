"""The one gate every email goes through: suppression, holdout and the frequency cap.

A withheld email is never dropped silently: it becomes a ``skipped`` action carrying the
template it would have sent and a ``skip_reason`` (``unsubscribed``, ``hard_bounced``,
``holdout``, ``frequency_cap``). The cap counts sends on the lead's event-time clock (the
largest event time seen, so a late event cannot open room in the past): at most
``frequency_cap`` sends in any window of ``frequency_window_days``, across programs.

Quiet hours (:mod:`stream.core.quiet`): a send decided inside the lead's local quiet hours
carries ``deliver_after``, and the cap counts that delivery time, not the decision time.
"""

from __future__ import annotations

from typing import Any

from stream.core.context import Ctx
from stream.core.quiet import deliver_after


def frequency_gate(
    send_times: tuple[int, ...], now: int, window_ms: int, cap: int
) -> tuple[bool, tuple[int, ...]]:
    """The cap on its own (leads and accounts share it): may one more email go at ``now``?

    Returns (allowed, the send times to keep); when allowed, ``now`` is among them.
    """
    horizon = now - window_ms
    recent = [t for t in send_times if t > horizon]
    if len(recent) >= cap:
        return False, tuple(recent)
    recent.append(now)
    return True, tuple(recent)


def send_email(ctx: Ctx, template: str, reason: str, context: dict[str, Any] | None = None) -> bool:
    """Send ``template`` or record why not. Returns True when a ``send`` action was emitted."""
    d = ctx.d
    if d.email_blocked is not None:
        ctx.action("skipped", "email", template, reason, context, skip_reason=d.email_blocked)
        return False
    if d.holdout:
        ctx.action("skipped", "email", template, reason, context, skip_reason="holdout")
        return False
    hold = deliver_after(ctx.now, d.timezone, ctx.cfg.quiet_hours)
    allowed, d.send_times = frequency_gate(
        d.send_times,
        ctx.now if hold is None else hold,  # the delivery time
        ctx.cfg.ms.frequency_window_ms,
        ctx.cfg.emails.frequency_cap,
    )
    if not allowed:
        ctx.action("skipped", "email", template, reason, context, skip_reason="frequency_cap")
        return False
    ctx.action("send", "email", template, reason, context, deliver_after=hold)
    return True
