"""Drive accounts through their inputs in event time: the reference order replay and the
worker share. Before an event at time t, every pending timer due at or before t fires first;
at the end, timers fire up to ``until``. Pure (no clock); accounts are independent, so the
result per account does not depend on how accounts interleave.
"""

from __future__ import annotations

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
    """One account's state and pending timer while being driven."""

    state: AccountState | None = None
    timers: tuple[AccountTimer, ...] = ()
    transitions: list[AccountTransition] = field(default_factory=list)
    actions: list[AccountAction] = field(default_factory=list)

    def apply(self, result: AccountStep) -> None:
        self.state = result.state
        self.timers = result.timers
        self.transitions.extend(result.transitions)
        self.actions.extend(result.actions)


Sink = Callable[[str, AccountStep], None]


class AccountDriver:
    """Feeds events (in event time) and fires timers; ``sink`` sees every step's result."""

    def __init__(self, config: RulesConfig, sink: Sink | None = None) -> None:
        self.config = config
        self.accounts: dict[str, AccountRun] = {}
        self.sink = sink

    def _step(self, account_id: str, inp: Event | AccountTimerFired) -> None:
        run = self.accounts.setdefault(account_id, AccountRun())
        result = step_account(run.state, inp, self.config)
        run.apply(result)
        if self.sink is not None:
            self.sink(account_id, result)

    def fire_until(self, account_id: str, until: int) -> None:
        run = self.accounts.get(account_id)
        while run is not None and run.timers and run.timers[0].due <= until:
            timer = run.timers[0]
            self._step(account_id, AccountTimerFired(account_id, timer.timer_id, timer.due))

    def feed(self, event: Event) -> None:
        if not feeds_account(event):
            return
        assert event.account_id is not None
        self.fire_until(event.account_id, event.at)
        self._step(event.account_id, event)

    def finish(self, until: int) -> None:
        for account_id in sorted(self.accounts):
            self.fire_until(account_id, until)


def run_accounts(
    events: Iterable[Event], config: RulesConfig, until: int | None = None
) -> dict[str, AccountRun]:
    """Every account of ``events`` (sorted here by event time, stable), timers up to ``until``."""
    ordered = sorted(events, key=lambda e: e.at)
    driver = AccountDriver(config)
    for event in ordered:
        driver.feed(event)
    if until is not None:
        driver.finish(until)
    return driver.accounts
