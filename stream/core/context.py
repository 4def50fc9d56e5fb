"""One step's working record and the collector of its outputs.

``step`` takes a shallow working copy of the lead's :class:`LeadState` (the input state is never
touched), lets the rules change its fields, and returns it. :class:`Ctx` carries that record
(``d``), the config, the cause and the outputs, and owns the cross-program guarantees: every
transition names its rule and signals (``icp_tier`` always), every email goes through
:mod:`stream.core.emails`, every action id is derived from its cause.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stream.core.config import RulesConfig
from stream.core.ids import action_id, in_holdout
from stream.core.model import Action, Transition
from stream.core.state import LeadState

STRUCTURED = frozenset({"mql_nurture", "trial_nurture", "re_engagement", "expansion_nurture"})
EXITS = frozenset({"sales", "customer", "csm", "inactive", "unsubscribed"})
DAY = 86_400_000
HOUR = 3_600_000


class Ctx(msgspec.Struct, gc=False):
    """One step's working record, config, cause, clock and outputs (``gc=False``: nothing in
    it refers back to it)."""

    d: LeadState  # the lead's working record (a copy; the step's input state is untouched)
    cfg: RulesConfig
    caused_by: str  # the input's event id, or "timer:<timer_id>"
    at: int  # the cause's event time (timers: due time)
    now: int  # the lead's event-time clock after this input (max seen)
    transitions: list[Transition] = msgspec.field(default_factory=list)
    actions: list[Action] = msgspec.field(default_factory=list)

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
            Transition(
                lead_id=d.lead_id,
                from_program=from_program,
                from_state=from_state,
                to_program=program,
                to_state=state,
                reason=reason,
                signals=sig,
                caused_by=self.caused_by,
                at=self.at,
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
        deliver_after: int | None = None,
    ) -> None:
        d = self.d
        key = template if template is not None else reason
        aid = action_id(d.lead_id, self.caused_by, atype, key)
        for a in self.actions:
            if a.action_id == aid:  # same cause, same type and key twice in one step
                aid = action_id(d.lead_id, self.caused_by, atype, f"{key}#{len(self.actions)}")
                break
        self.actions.append(
            Action(
                action_id=aid,
                lead_id=d.lead_id,
                type=atype,
                channel=channel,
                program=program if program is not None else (d.program or "none"),
                template=template,
                reason=reason,
                context=context or {},
                caused_by=self.caused_by,
                at=self.at,
                skip_reason=skip_reason,
                deliver_after=deliver_after,
            )
        )
