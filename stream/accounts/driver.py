"""Drive accounts through their inputs in event time: the reference order replay and the
worker share. Pure (no wall clock); accounts are independent, so an account's outputs depend
only on its own inputs and the event-time clock at which its timers fire.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stream.accounts.engine import ACCOUNT_EVENT_TYPES, step_account
from stream.accounts.model import (
    AccountAction,
    AccountState,
    AccountStep,
    AccountTimer,
    AccountTimerFired,
    AccountTransition,
)
from stream.core.config import RulesConfig
from stream.core.model import Event


def feeds_account(event: Event) -> bool:
    """Does this event reach an account (the runtime re-keys exactly these)?"""
    return event.account_id is not None and event.type in ACCOUNT_EVENT_TYPES


@dataclass
class AccountRun:
    """One account's state and pending timer while being driven, and its outputs when the
    driver has no sink (with a sink, the sink has them: nothing accumulates per account)."""

    state: AccountState | None = None
    timers: tuple[AccountTimer, ...] = ()
    transitions: list[AccountTransition] = field(default_factory=list)
    actions: list[AccountAction] = field(default_factory=list)

    def apply(self, result: AccountStep, keep_outputs: bool = True) -> None:
        self.state = result.state
        self.timers = result.timers
        if keep_outputs:
            self.transitions.extend(result.transitions)
            self.actions.extend(result.actions)


def _pending(timers: tuple[AccountTimer, ...], due: int, timer_id: str) -> bool:
    for t in timers:  # noqa: SIM110 - a loop, not any(genexpr): no generator per fired timer
        if t.due == due and t.timer_id == timer_id:
            return True
    return False


Sink = Callable[[str, AccountStep], None]


class AccountDriver:
    """Feeds events and fires timers on one event-time clock (the largest event time seen), as
    the lead replay does: before each event, every account timer due at or before the clock
    fires, in (due, account) order. ``sink`` sees every step's result; without one, each
    :class:`AccountRun` keeps its account's outputs (``run_accounts``, tests)."""

    def __init__(self, config: RulesConfig, sink: Sink | None = None) -> None:
        self.config = config
        self.accounts: dict[str, AccountRun] = {}
        self.sink = sink
        self.clock: int | None = None
        self.heap: list[tuple[int, str, str]] = []
        self.timers_fired = 0

    def _step(self, account_id: str, inp: Event | AccountTimerFired) -> None:
        run = self.accounts.get(account_id)
        if run is None:
            run = self.accounts[account_id] = AccountRun()
        before = run.timers
        result = step_account(run.state, inp, self.config)
        run.apply(result, keep_outputs=self.sink is None)
        if result.timers != before:
            for timer in result.timers:
                if timer not in before:
                    heapq.heappush(self.heap, (timer.due, account_id, timer.timer_id))
        if self.sink is not None:
            self.sink(account_id, result)

    def fire_until(self, until: int) -> None:
        heap = self.heap
        while heap and heap[0][0] <= until:
            due, account_id, timer_id = heapq.heappop(heap)
            run = self.accounts[account_id]
            if not _pending(run.timers, due, timer_id):
                continue  # replaced or cancelled: a stale heap entry
            self.timers_fired += 1
            self._step(account_id, AccountTimerFired(account_id, timer_id, due))

    def feed(self, event: Event) -> None:
        if not feeds_account(event):
            return
        assert event.account_id is not None
        if self.clock is None or event.at > self.clock:
            self.clock = event.at
        self.fire_until(self.clock)
        self._step(event.account_id, event)

    def finish(self, until: int | None = None) -> None:
        horizon = self.clock if until is None else until
        if horizon is not None:
            self.fire_until(horizon)


def run_accounts(
    events: Iterable[Event], config: RulesConfig, until: int | None = None
) -> dict[str, AccountRun]:
    """Every account of ``events`` (sorted here by event time, stable), timers up to ``until``."""
    driver = AccountDriver(config)
    for event in sorted(events, key=lambda e: e.at):
        driver.feed(event)
    driver.finish(until)
    return driver.accounts
