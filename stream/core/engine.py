"""The pure nurture core: ``step(state, input, config) -> StepResult``.

No Kafka, no clock reads, no I/O. A timer firing is just another input. Same state, input and
config always give the same result. ``StepResult.timers`` is the lead's full set of pending
timers after the step (sorted by due): the runtime indexes them and feeds a
:class:`~stream.core.model.TimerFired` back when one comes due. A timer that is no longer
pending (fired or cancelled) is a no-op, which makes firing exactly-once per timer id.

Semantics worth knowing (details in the modules):

- Time is event time. The lead's clock (``watermark``) is the largest event time seen; a
  timer's input time is its due time. Windows (score decay, buying-stage signals, decision
  signals) count event times, so arrival order does not matter; signal windows stay exact for
  events up to one window late (older ones are pruned to keep memory bounded).
- Dedupe: the last ``dedupe.max_event_ids`` event ids per lead (a ring). A repeat inside the
  ring is a no-op (same state object back, no outputs).
- Emails go through :mod:`stream.core.emails`: unsubscribed / hard-bounced / holdout /
  frequency cap produce ``skipped`` actions with a ``skip_reason``. The cap counts sends on
  the lead's clock (a late event cannot make room in the past).
- Checkpoint verdicts use event time: an activation or session from before the 48h checkpoint
  that arrives after it revises the verdict (``trial.checkpoint_48h_revised``).
- Silence and stale timers are lazy: activity does not move them; when one fires it re-arms
  at the real due time if there was activity meanwhile.
- A lead records ``config.version`` when it enters a program and is evaluated with that
  version while in it (:meth:`RulesConfig.for_version`, filled by
  :func:`stream.core.config.with_history`); cadences are scheduled in full at entry.
"""

from __future__ import annotations

import msgspec

from stream.core.config import RulesConfig
from stream.core.context import EXITS, STRUCTURED, Ctx
from stream.core.facts import (
    ACTIVITY,
    DECISION_ADDED,
    PASSIVE,
    SCORE_ADDED,
    SIGNAL_ADDED,
    TIER_CHANGED,
    compute_score,
    fold_event,
    number,
    prune_signals,
    score_may_expire,
    signal_counts,
    start_trial,
)
from stream.core.model import Action, Event, Timer, TimerFired, Transition
from stream.core.programs import expansion, mql, reengage, trial
from stream.core.state import LeadState, seen_add, seen_contains, working_copy

__all__ = ["HANDLED_TYPES", "StepResult", "step"]

HANDLED_TYPES = frozenset(
    {
        "lead.created",
        "lead.updated",
        "sales.contacted",
        "opportunity.created",
        "subscription.converted",
        "subscription.upgraded",
        "expansion.requested",
        "support.ticket_opened",
        "nps.submitted",
        "billing.status_changed",
        "email.sent",
        "email.bounced",
        "email.unsubscribed",
    }
    | ACTIVITY
)


class StepResult(msgspec.Struct, frozen=True, gc=False):
    """The result of one step. ``timers`` is ``state.timers``: the very same tuple object as the
    input state's when the step left the lead's timers unchanged (callers may skip re-indexing).
    """

    state: LeadState
    transitions: tuple[Transition, ...]
    actions: tuple[Action, ...]
    timers: tuple[Timer, ...]


def _noop(state: LeadState) -> StepResult:
    return StepResult(state, (), (), state.timers)


def _passive(state: LeadState, inp: Event, config: RulesConfig) -> StepResult:
    """Fast path for a PASSIVE event of a routed lead (no fact, no rule, no timer moves).

    Exactly what the general path does for such an event, without the Ctx and rule dispatch:
    dedupe ring, clock, account id, activity time, score decay and signal pruning."""
    at = inp.at
    d = working_copy(state)
    d.seen_ids = seen_add(state.seen_ids, inp.event_id, config.dedupe.max_event_ids)
    wm = state.watermark
    now = d.watermark = at if wm is None or at > wm else wm
    if inp.account_id is not None and state.account_id is None:
        d.account_id = inp.account_id
    if inp.type in ACTIVITY:
        last = state.last_activity_at
        if last is None or at > last:
            d.last_activity_at = at
    if state.score_events or state.signal_events:
        ms = config.ms
        if score_may_expire(d, now, config):
            d.score = compute_score(d, now, config)
        if d.signal_events and d.signal_events[0][0] < now - ms.signal_retention_ms:
            prune_signals(d, now, config)
    return StepResult(d, (), (), d.timers)


def step(state: LeadState | None, inp: Event | TimerFired, config: RulesConfig) -> StepResult:
    """Advance one lead by one input (an event or a due timer)."""
    if state is None:
        state = LeadState(inp.lead_id)
    if isinstance(inp, TimerFired):
        return _on_timer(state, inp, config)
    etype = inp.type
    if etype not in HANDLED_TYPES or seen_contains(state.seen_ids, inp.event_id):
        return _noop(state)
    if etype in PASSIVE and state.program is not None and inp.event_id[:6] != "timer:":
        return _passive(state, inp, config)  # an event id "timer:*" takes the general path
    at = inp.at
    d = working_copy(state)
    d.seen_ids = seen_add(state.seen_ids, inp.event_id, config.dedupe.max_event_ids)
    wm = state.watermark
    now = d.watermark = at if wm is None or at > wm else wm
    if inp.account_id is not None and d.account_id is None:
        d.account_id = inp.account_id
    ctx = Ctx(d, config, inp.event_id, at, now)
    flags = fold_event(d, etype, at, inp.properties, config)
    new_trial = etype == "trial.started" and start_trial(d, at, config)
    ms = config.ms
    if flags & (SCORE_ADDED | TIER_CHANGED) or (
        d.score_events and d.score_events[0][0] <= now - ms.score_decay_ms
    ):
        d.score = compute_score(d, now, config)
    if not (flags == 0 and etype in PASSIVE and state.program is not None):
        _rules(ctx, inp, flags, new_trial)
    if d.signal_events and d.signal_events[0][0] < now - ms.signal_retention_ms:
        prune_signals(d, now, config)
    return _finish(ctx, state.program)


def _finish(ctx: Ctx, program_before: str | None) -> StepResult:
    # timers only need reconciling when the program or its state moved (or a timer fired)
    d = ctx.d
    if ctx.transitions or d.program != program_before or ctx.caused_by[:6] == "timer:":
        _reconcile_timers(ctx)
    return StepResult(d, tuple(ctx.transitions), tuple(ctx.actions), d.timers)


def _on_timer(state: LeadState, tf: TimerFired, config: RulesConfig) -> StepResult:
    timer_id = tf.timer_id
    for timer in state.timers:
        if timer.timer_id == timer_id:
            break
    else:
        return _noop(state)  # no longer pending (fired or cancelled): fire-once
    d = working_copy(state)
    d.drop_timer(tf.timer_id)
    now = tf.at if state.watermark is None or tf.at > state.watermark else state.watermark
    d.watermark = now
    ctx = Ctx(d, config, "timer:" + tf.timer_id, tf.at, now)
    if score_may_expire(d, now, config):
        d.score = compute_score(d, now, config)
    kind = timer.kind
    if kind == "silence":
        _on_silence(ctx)
    elif kind == "mql.stale":
        if d.program == "mql_nurture":
            mql.on_stale(ctx)
    elif kind.startswith("trial."):
        name = kind.split(".", 1)[1]
        if name not in dict(d.checkpoints):
            trial.on_checkpoint(ctx, name, timer.due)
    elif kind.startswith("reengage."):
        reengage.on_timer(ctx, kind)
    return _finish(ctx, state.program)


def _on_silence(ctx: Ctx) -> None:
    """Lazy silence timer: if there was activity since it was armed, re-arm at the real due
    time; otherwise the lead has been silent long enough: re-engagement."""
    d = ctx.d
    if d.program == "mql_nurture":
        due: int | None = mql.silence_due(ctx)
        context, reason = "mql", "reengage.mql_silence"
    elif d.program == "trial_nurture":
        due = trial.silence_due(ctx)
        context, reason = "trial", "reengage.trial_silence"
    else:
        return
    if due is None:
        return
    if due > ctx.at:
        d.add_timer("silence", due)
    else:
        reengage.enter(ctx, context, reason)


def _rules(ctx: Ctx, inp: Event, flags: int, new_trial: bool) -> None:
    d = ctx.d
    etype = inp.type
    props = inp.properties
    # -- journey-tool guarantees and CRM facts, whatever the program ---------------------
    if etype == "email.unsubscribed" or (etype == "email.bounced" and props.get("hard") is True):
        if d.email_blocked is None:
            why = "unsubscribed" if etype == "email.unsubscribed" else "hard_bounced"
            d.email_blocked = why
            ctx.move("unsubscribed", why, "email." + why, {"program_before": d.program})
            ctx.action("suppress", "email", None, "email." + why, {"scope": "all_email"})
        return
    if etype == "opportunity.created":
        keep = d.customer or d.program in ("customer", "csm", "expansion_nurture")
        target = (d.program or "customer") if keep else "sales"
        ctx.move(
            target,
            "opportunity",
            "crm.opportunity_created",
            {"score": d.score, "program_before": d.program, "mql_reached": d.mql_reached},
        )
        return
    if etype == "subscription.converted":
        _converted(ctx)
        return
    if etype == "subscription.upgraded":
        if d.program in ("expansion_nurture", "csm"):
            ctx.move(
                "customer", "upgraded", "crm.subscription_upgraded", {"limits": dict(d.limits)}
            )
        elif d.program != "customer":
            _converted(ctx)
        return
    # -- ICP gate: out-of-ICP never sits in a structured program -------------------------
    if d.icp_tier == "out":
        if d.program is None or d.program == "prospect" or d.program in STRUCTURED:
            ctx.move(
                "low_touch",
                None,
                "icp.out_of_icp",
                {
                    "company_size": d.company_size,
                    "industry": d.industry,
                    "program_before": d.program,
                },
            )
        if d.program == "customer":  # CSM/AE handoffs are not a program: still apply
            _customer_event(ctx, inp, nurture=False)
        return
    if d.program is None or (d.program == "low_touch" and flags & TIER_CHANGED):
        ctx.move(
            "prospect",
            None,
            "icp.tier_assigned",
            {"company_size": d.company_size, "industry": d.industry, "score": d.score},
        )
    program = d.program
    if etype == "sales.contacted" and (
        program in ("prospect", "mql_nurture")
        or (program == "re_engagement" and d.reengage_context == "mql")
    ):
        ctx.move(
            "sales",
            "contacted",
            "crm.sales_contacted",
            {"score": d.score, **signal_counts(d, ctx.now, ctx.cfg)},
        )
        return
    if new_trial and program in ("prospect", "mql_nurture", "re_engagement", "trial_nurture"):
        if d.email_blocked is None:
            trial.enter(ctx)
        return
    if program == "prospect":
        if mql.can_enter(ctx):
            mql.enter(ctx)
    elif program == "mql_nurture":
        if flags & SIGNAL_ADDED:
            decision = inp.at if flags & DECISION_ADDED else None
            mql.on_signal(ctx, decision, moved=True)
    elif program == "trial_nurture":
        _trial_event(ctx, inp)
    elif program == "re_engagement":
        if etype in ("activation.completed", "session.started"):
            trial.revise_48h(ctx)
        if etype in reengage.RESPONSES:
            reengage.on_response(ctx, etype)
    elif program in ("customer", "expansion_nurture"):
        _customer_event(ctx, inp)


def _trial_event(ctx: Ctx, inp: Event) -> None:
    d = ctx.d
    etype = inp.type
    if etype in ("activation.completed", "session.started"):
        trial.revise_48h(ctx)
    if etype == "upgrade_cta.clicked":
        trial.upgrade_intent(ctx, "upgrade_cta")
    elif (
        etype == "page.viewed"
        and inp.properties.get("page") == "pricing"
        and d.activated_at is not None
        and d.activated_at <= inp.at
    ):
        trial.upgrade_intent(ctx, "pricing_after_activation")


def _customer_event(ctx: Ctx, inp: Event, nurture: bool = True) -> None:
    """Expansion rules for a customer without an account. ``nurture=False`` (out of ICP):
    handoffs only. A customer's user that belongs to an account (an event gave the lead an
    ``account_id``) is the account's: the account play ``expansion_nurture``
    (:mod:`stream.accounts.expansion`) owns expansion there, on the account's limits, so the
    customer gets one expansion path, not one per user plus the account's."""
    if ctx.d.account_id is not None:
        return
    etype = inp.type
    if etype in ("expansion.requested", "upgrade_cta.clicked"):
        expansion.on_upgrade_ask(ctx, etype)
    elif etype == "usage.reported":
        metric = inp.properties.get("metric")
        value = number(inp.properties.get("value"))
        if isinstance(metric, str) and value is not None:
            expansion.on_usage(ctx, metric, value, nurture)


def _converted(ctx: Ctx) -> None:
    d = ctx.d
    d.customer = True
    if d.program == "customer" or d.program == "csm":
        return
    if d.program == "trial_nurture" and trial.paid_handoff_ready(ctx):
        signals = {
            **trial.engagement(ctx),
            "handoff_min_features": ctx.pcfg.trial.handoff_min_features,
        }
        ctx.move("customer", "onboarding", "trial.converted_handoff", signals)
        ctx.action(
            "handoff",
            "csm_task",
            None,
            "trial.converted_handoff",
            signals,
            program="trial_nurture",
        )
        return
    ctx.move(
        "customer",
        "onboarding",
        "crm.subscription_converted",
        {
            "program_before": d.program,
            "features_used": len(d.features),
            "activated": d.activated_at is not None,
        },
    )


def _reconcile_timers(ctx: Ctx) -> None:
    """Keep only the timers the lead's current program needs."""
    d = ctx.d
    program = d.program
    if program == "mql_nurture":
        mql.desired_timers(ctx)
    elif program == "trial_nurture":
        trial.desired_timers(ctx)
    elif d.timers:
        d.cancel_timers("silence")
    if program not in ("trial_nurture", "re_engagement") or d.customer:
        d.cancel_prefix("trial.")
    if program in EXITS or program == "low_touch":
        d.cancel_prefix("mql.")
        d.cancel_prefix("reengage.")
