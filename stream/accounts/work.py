"""One ``step_account`` in progress: the working copy of the state and the collector of outputs.

It owns the cross-play guarantees: every transition carries the current health (each
component's value, inputs, weight and the config version); every message to a person goes
through :meth:`Work.send` (unknown recipient, unsubscribe/bounce suppression, holdout, the
lead's quiet hours, and for email the same frequency cap as leads,
:func:`stream.core.emails.frequency_gate`); every
action id is derived from its cause (:func:`stream.core.ids.action_id`).
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from stream.accounts.config import AccountRules
from stream.accounts.health import Assessment, assess, explain
from stream.accounts.model import (
    AccountAction,
    AccountState,
    AccountTransition,
    Health,
    User,
    copy_state,
)
from stream.core.config import RulesConfig
from stream.core.emails import frequency_gate
from stream.core.ids import action_id
from stream.core.quiet import deliver_after

#: channels that reach a person (suppression and holdout apply); csm_task goes to our own CSM
PERSONAL = frozenset({"email", "in_app", "exec_briefing", "community", "webinar"})


class Work:
    __slots__ = (
        "_explained",
        "_users",
        "actions",
        "assessment",
        "at",
        "caused_by",
        "cfg",
        "dirty_users",
        "new_users",
        "now",
        "rules",
        "s",
        "transitions",
    )

    def __init__(
        self, state: AccountState, cfg: RulesConfig, caused_by: str, at: int, now: int
    ) -> None:
        self.s = copy_state(state)
        self.cfg = cfg
        self.rules: AccountRules = cfg.accounts
        self.caused_by = caused_by
        self.at = at
        self.now = now
        self._users: dict[str, User] | None = None  # by lead_id, built on first use
        self.dirty_users = False  # users changed since the state's tuple was built
        # a user was added: the dict is no longer in the tuple's lead_id order (replacing a
        # value keeps its place and removing one keeps the others' order)
        self.new_users = False
        self.transitions: list[AccountTransition] = []
        self.actions: list[AccountAction] = []
        self.assessment: Assessment | None = None  # the last health evaluation of this step
        self._explained: Health | None = None  # its explanation, built once an output needs it

    # --- users ---------------------------------------------------------------------------
    @property
    def users(self) -> dict[str, User]:
        """The account's users by lead_id (in the state's order), built on first use: most
        timer steps and account-level events never look at a user."""
        users = self._users
        if users is None:
            # the state's own tuple until sync_users replaces it (a comprehension: for a few
            # users it is cheaper than dict(zip(map(...))))
            users = self._users = {u.lead_id: u for u in self.s.users}
        return users

    def user(self, lead_id: str) -> User | None:
        """The account's user, added if new (bounded: a full table evicts the least recently
        active user that is not suppressed; a suppressed user is never forgotten)."""
        found = self.users.get(lead_id)
        if found is not None:
            return found
        if len(self.users) >= self.rules.max_users:
            evictable = [u for u in self.users.values() if u.blocked is None]
            if not evictable:
                return None
            oldest = min(evictable, key=lambda u: (u.last_active_at or -1, u.lead_id))
            del self.users[oldest.lead_id]
            self.dirty_users = True
        new = User(lead_id)
        self.users[lead_id] = new
        self.dirty_users = self.new_users = True
        return new

    def set_user(self, user: User) -> None:
        if user.lead_id not in self.users:
            self.new_users = True
        self.users[user.lead_id] = user
        self.dirty_users = True

    def sync_users(self) -> None:
        if self._users is None:
            return  # never looked at, so unchanged
        if self.new_users:
            self.s.users = tuple(self.users[k] for k in sorted(self.users))
        elif self.dirty_users:
            self.s.users = tuple(self.users.values())
        self.dirty_users = self.new_users = False

    # --- health --------------------------------------------------------------------------
    def refresh_health(self) -> Assessment:
        self.sync_users()
        self.assessment = assess(self.s, self.now, self.rules)
        self._explained = None
        self.s.score = self.assessment.score
        return self.assessment

    def health(self) -> Health:
        """The explainable health of the last evaluation (evaluating now if none yet); built
        at most once per evaluation, and only for steps whose outputs carry it."""
        current = self.assessment if self.assessment is not None else self.refresh_health()
        if self._explained is None:
            self._explained = explain(current, self.rules, self.cfg.version)
        return self._explained

    # --- outputs -------------------------------------------------------------------------
    def transition(
        self, kind: str, before: str | None, after: str | None, reason: str, **signals: Any
    ) -> None:
        current = self.health()
        self.transitions.append(
            AccountTransition(
                self.s.account_id,
                kind,
                before,
                after,
                reason,
                signals,
                current,
                self.caused_by,
                self.at,
            )
        )

    def _action(
        self,
        kind: str,
        channel: str,
        program: str,
        template: str,
        reason: str,
        context: dict[str, Any],
        lead_id: str | None,
        skip_reason: str | None = None,
        deliver_after: int | None = None,
    ) -> None:
        aid = action_id(self.s.account_id, self.caused_by, kind, f"{template}\x1f{lead_id or ''}")
        self.actions.append(
            AccountAction(
                action_id=aid,
                account_id=self.s.account_id,
                lead_id=lead_id,
                type=kind,
                channel=channel,
                program=program,
                template=template,
                reason=reason,
                context=context,
                caused_by=self.caused_by,
                at=self.at,
                skip_reason=skip_reason,
                deliver_after=deliver_after,
            )
        )

    def task(self, program: str, template: str, reason: str, context: dict[str, Any]) -> None:
        """A CSM task for the account (not withheld by holdout: it goes to our own team)."""
        self._action("send", "csm_task", program, template, reason, context, None)

    def send(
        self,
        lead_id: str | None,
        channel: str,
        program: str,
        template: str,
        reason: str,
        context: dict[str, Any],
    ) -> bool:
        """Send to a person (or, ``lead_id`` None and ``in_app``, to the account's users), or
        record why not as a ``skipped`` action. Returns True when a ``send`` was emitted.

        A send decided inside the addressee's local quiet hours (their ``timezone``; the
        default zone for the account's users at large) carries ``deliver_after``, and the
        email cap counts that delivery time, as for leads (:func:`stream.core.emails.send_email`).
        """
        user = self.users.get(lead_id) if lead_id is not None else None
        skip: str | None = None
        hold: int | None = None
        if (lead_id is None and channel != "in_app") or (lead_id is not None and user is None):
            skip = "no_recipient"
        elif user is not None and user.blocked is not None:
            skip = user.blocked
        elif self.s.holdout:
            skip = "holdout"
        else:
            zone = None if user is None else user.timezone
            hold = deliver_after(self.now, zone, self.cfg.quiet_hours)
            if channel == "email" and user is not None:
                allowed, kept = frequency_gate(
                    user.send_times,
                    self.now if hold is None else hold,  # the delivery time
                    self.cfg.ms.frequency_window_ms,
                    self.cfg.emails.frequency_cap,
                )
                self.set_user(replace(user, send_times=kept))
                if not allowed:
                    skip, hold = "frequency_cap", None
        kind = "send" if skip is None else "skipped"
        self._action(kind, channel, program, template, reason, context, lead_id, skip, hold)
        return skip is None

    # --- plays ---------------------------------------------------------------------------
    def play_open(self, play: str) -> bool:
        for p, _since in self.s.plays:  # noqa: SIM110 - no generator per call (hot path)
            if p == play:
                return True
        return False

    def play_since(self, play: str) -> int | None:
        for p, since in self.s.plays:
            if p == play:
                return since
        return None

    def enter_play(self, play: str, reason: str, **signals: Any) -> bool:
        if self.play_open(play):
            return False
        self.s.plays = (*self.s.plays, (play, self.now))
        self.transition("play_entered", None, play, reason, **signals)
        self._action("enroll", "none", play, play, reason, dict(signals), None)
        return True

    def exit_play(self, play: str, reason: str, **signals: Any) -> bool:
        if not self.play_open(play):
            return False
        self.s.plays = tuple(p for p in self.s.plays if p[0] != play)
        self.transition("play_exited", play, None, reason, **signals)
        self._action("exit", "none", play, play, reason, dict(signals), None)
        return True

    def mark(self, step: str) -> bool:
        """Record a one-off step; False if it was already taken."""
        if step in self.s.done:
            return False
        self.s.done = (*self.s.done, step)
        return True

    def set_stage(self, stage: str, reason: str, **signals: Any) -> None:
        if self.s.stage == stage:
            return
        before = self.s.stage
        self.s.stage = stage
        self.transition("stage", before, stage, reason, **signals)
