"""The working copy of a lead's state during one ``step`` and the collector of its outputs.

``step`` copies the frozen :class:`LeadState` into a mutable :class:`Draft` once, lets the rules
change it, and freezes it once at the end; the input state is never touched. :class:`Ctx`
carries the config, the cause and the outputs, and owns the cross-program guarantees: every
transition names its rule and signals (``icp_tier`` always), every email goes through
:mod:`stream.core.emails`, every action id is derived from its cause.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from stream.core.config import RulesConfig
from stream.core.fastnew import slot_factory
from stream.core.ids import action_id, in_holdout
from stream.core.model import Action, Timer, Transition
from stream.core.state import LeadState

STRUCTURED = frozenset({"mql_nurture", "trial_nurture", "re_engagement", "expansion_nurture"})
EXITS = frozenset({"sales", "customer", "csm", "inactive", "unsubscribed"})
DAY = 86_400_000
HOUR = 3_600_000


_make = tuple.__new__
# the same objects as Transition(...) / Action(...) / Timer(...), built faster (see fastnew)
_new_transition = slot_factory(Transition)
_new_action = slot_factory(Action)
_new_timer = slot_factory(Timer)
_timer_key = attrgetter("due", "timer_id")
#: a Draft's fields in LeadState order, read in one C call (``timers``: the frozen tuple)
_fields_of = attrgetter(*("out_timers" if f == "timers" else f for f in LeadState._fields))


class Draft:
    __slots__ = (
        "account_id",
        "activated_at",
        "checkpoints",
        "company_size",
        "customer",
        "email_blocked",
        "expansion_fired",
        "features",
        "holdout",
        "icp_tier",
        "industry",
        "last_activity_at",
        "last_movement_at",
        "lead_id",
        "limits",
        "mql_reached",
        "orig_timers",
        "out_timers",
        "program",
        "program_entered_at",
        "program_state",
        "program_version",
        "reengage_context",
        "sales_contacted",
        "score",
        "score_events",
        "seen_ids",
        "send_times",
        "sessions",
        "signal_events",
        "timer_seq",
        "timers",
        "timers_dirty",
        "trial_start",
        "usage",
        "watermark",
    )

    def __init__(self, s: LeadState) -> None:
        (
            self.lead_id,
            self.account_id,
            self.icp_tier,
            self.company_size,
            self.industry,
            self.program,
            self.program_state,
            self.program_entered_at,
            self.program_version,
            self.holdout,
            self.reengage_context,
            self.watermark,
            self.last_activity_at,
            self.last_movement_at,
            self.score,
            self.mql_reached,
            self.sales_contacted,
            self.customer,
            self.email_blocked,
            self.score_events,
            self.signal_events,
            self.trial_start,
            self.activated_at,
            self.features,
            self.sessions,
            self.checkpoints,
            self.limits,
            self.usage,
            self.expansion_fired,
            self.send_times,
            self.seen_ids,
            timers,
            self.timer_seq,
        ) = s
        self.orig_timers = timers
        self.timers: list[Timer] = list(timers)
        self.timers_dirty = False

    def freeze(self) -> LeadState:
        if self.timers_dirty:
            self.timers.sort(key=_timer_key)
            self.out_timers = tuple(self.timers)
        elif len(self.timers) == len(self.orig_timers):
            # unchanged: the same tuple (callers may skip re-indexing)
            self.out_timers = self.orig_timers
        else:
            self.out_timers = tuple(self.timers)
        return _make(LeadState, _fields_of(self))

    # -- timers -------------------------------------------------------------------------
    def add_timer(self, kind: str, due: int, key: str | None = None) -> str:
        """Schedule a timer; its id is unique for the lead's life (kind, sequence, due)."""
        self.timer_seq += 1
        timer_id = f"{kind}@{key}" if key is not None else f"{kind}#{self.timer_seq}@{due}"
        self.timers.append(_new_timer(due, timer_id, kind))
        self.timers_dirty = True
        return timer_id

    def cancel_timers(self, *kinds: str) -> None:
        if self.timers:
            self.timers = [t for t in self.timers if t.kind not in kinds]

    def cancel_prefix(self, prefix: str) -> None:
        if self.timers:
            self.timers = [t for t in self.timers if not t.kind.startswith(prefix)]

    def ensure_timer(self, kind: str, due: int | None) -> None:
        """Keep exactly one pending timer of ``kind`` due at ``due`` (none when ``due`` is None)."""
        current = self.timer_of(kind)
        if current is not None and current.due == due:
            return
        if current is not None:
            self.cancel_timers(kind)
        if due is not None:
            self.add_timer(kind, due)

    def timer_of(self, kind: str) -> Timer | None:
        for t in self.timers:
            if t.kind == kind:
                return t
        return None


class Ctx:
    """One step's config, cause, clock and outputs."""

    __slots__ = ("actions", "at", "caused_by", "cfg", "d", "now", "transitions")

    def __init__(self, d: Draft, cfg: RulesConfig, caused_by: str, at: int, now: int) -> None:
        self.d = d
        self.cfg = cfg
        self.caused_by = caused_by
        self.at = at  # the cause's event time (timers: due time)
        self.now = now  # the lead's event-time clock after this input (max seen)
        self.transitions: list[Transition] = []
        self.actions: list[Action] = []

    @property
    def pcfg(self) -> RulesConfig:
        """The rules the lead's current program entry was made under."""
        return self.cfg.for_version(self.d.program_version)

    # -- transitions --------------------------------------------------------------------
    def move(
        self,
        program: str,
        state: str | None,
        reason: str,
        signals: dict[str, Any] | None = None,
    ) -> None:
        """Change program and/or state and record why. Entering a structured program records
        holdout and config version; leaving one cancels its timers."""
        d = self.d
        sig: dict[str, Any] = {"icp_tier": d.icp_tier}
        if signals:
            sig.update(signals)
        from_program, from_state = d.program, d.program_state
        if program != from_program:
            d.program = program
            d.program_entered_at = self.at
            d.reengage_context = None if program != "re_engagement" else d.reengage_context
            if program in STRUCTURED:
                d.program_version = self.cfg.version
                d.holdout = in_holdout(d.lead_id, program, self.cfg.emails.holdout_pct)
            else:
                d.program_version = None
                d.holdout = False
            d.cancel_timers("silence")  # each program arms its own silence rule
            if from_program == "mql_nurture":
                d.cancel_prefix("mql.")
            if from_program == "re_engagement":
                d.cancel_prefix("reengage.")
        if program in STRUCTURED:
            sig["holdout"] = d.holdout
            sig["config_version"] = d.program_version
        d.program_state = state
        if program != from_program:
            if from_program in STRUCTURED:
                self.action(
                    "exit", "none", None, reason, {"to_program": program}, program=from_program
                )
            if program in STRUCTURED:
                self.action(
                    "enroll",
                    "none",
                    None,
                    reason,
                    {"holdout": d.holdout, "config_version": d.program_version},
                )
        self.transitions.append(
            _new_transition(
                d.lead_id,
                from_program,
                from_state,
                program,
                state,
                reason,
                sig,
                self.caused_by,
                self.at,
            )
        )

    # -- actions ------------------------------------------------------------------------
    def action(
        self,
        atype: str,
        channel: str,
        template: str | None,
        reason: str,
        context: dict[str, Any] | None = None,
        skip_reason: str | None = None,
        program: str | None = None,
    ) -> None:
        d = self.d
        key = template if template is not None else reason
        aid = action_id(d.lead_id, self.caused_by, atype, key)
        for a in self.actions:
            if a.action_id == aid:  # same cause, same type and key twice in one step
                aid = action_id(d.lead_id, self.caused_by, atype, f"{key}#{len(self.actions)}")
                break
        self.actions.append(
            _new_action(
                aid,
                d.lead_id,
                atype,
                channel,
                program if program is not None else (d.program or "none"),
                template,
                reason,
                context or {},
                self.caused_by,
                self.at,
                skip_reason,
            )
        )
