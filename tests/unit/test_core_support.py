"""Support for the core scenario tests (no tests here): build events, drive a lead, inspect."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from stream.core.config import RulesConfig, load_config_text
from stream.core.engine import StepResult, step
from stream.core.model import DAY_MS, HOUR_MS, Action, Event, TimerFired, Transition
from stream.core.state import LeadState
from stream.core.synth import drive

T0 = 1_790_000_000_000
H = HOUR_MS
D = DAY_MS


def cfg(overrides: str = "", version: str = "test-1", holdout: float = 0.0) -> RulesConfig:
    """Default rules with a version, no holdout unless asked, plus YAML overrides."""
    text = f"version: {version}\nemails: {{holdout_pct: {holdout}}}\n" + overrides
    return load_config_text(text)


CFG = cfg()

_seq = {"n": 0}


def ev(etype: str, at: int, lead: str = "L1", eid: str | None = None, **props: Any) -> Event:
    """An event at ``T0 + at``. Ids are unique unless ``eid`` is given (duplicates)."""
    if eid is None:
        _seq["n"] += 1
        eid = f"{etype}-{at}-{_seq['n']}"
    return Event(eid, etype, lead, T0 + at, "A1", props)


def created(at: int = 0, size: int = 200, industry: str = "saas", **kw: Any) -> Event:
    return ev("lead.created", at, company_size=size, industry=industry, **kw)


def page(at: int, name: str, **kw: Any) -> Event:
    return ev("page.viewed", at, page=name, **kw)


def advance(at: int) -> int:
    """Advance the event-time clock to ``T0 + at`` (fires due timers)."""
    return T0 + at


@dataclass
class Run:
    results: list[StepResult] = field(default_factory=list)
    state: LeadState | None = None

    @property
    def transitions(self) -> list[Transition]:
        return [t for r in self.results for t in r.transitions]

    @property
    def actions(self) -> list[Action]:
        return [a for r in self.results for a in r.actions]

    @property
    def reasons(self) -> list[str]:
        return [t.reason for t in self.transitions]

    @property
    def sends(self) -> list[str | None]:
        return [a.template for a in self.actions if a.type == "send"]

    @property
    def skipped(self) -> list[tuple[str | None, str | None]]:
        return [(a.template, a.skip_reason) for a in self.actions if a.type == "skipped"]

    @property
    def handoffs(self) -> list[Action]:
        return [a for a in self.actions if a.type == "handoff"]

    def transition(self, reason: str) -> Transition:
        found = [t for t in self.transitions if t.reason == reason]
        assert len(found) == 1, f"{reason}: {len(found)} transitions in {self.reasons}"
        return found[0]

    @property
    def program(self) -> str | None:
        assert self.state is not None
        return self.state.program


def run(
    inputs: Iterable[Event | int],
    config: RulesConfig = CFG,
    lead: str = "L1",
    state: LeadState | None = None,
) -> Run:
    """Drive one lead like replay does: due timers fire from event time."""
    states: dict[str, LeadState] = {} if state is None else {lead: state}
    out = Run(results=list(drive(inputs, config, states)))
    out.state = states.get(lead)
    return out


def run_raw(
    inputs: Iterable[Event | TimerFired], config: RulesConfig = CFG, state: LeadState | None = None
) -> Run:
    """Step exactly the given inputs (no automatic timers): for live-order cases."""
    out = Run(state=state)
    for inp in inputs:
        r = step(out.state, inp, config)
        out.results.append(r)
        out.state = r.state
    return out


def fire(r: Run, kind: str) -> TimerFired:
    """A TimerFired for the lead's pending timer of ``kind`` (at its due time)."""
    assert r.state is not None
    t = next(t for t in r.state.timers if t.kind == kind)
    return TimerFired(r.state.lead_id, t.timer_id, t.due)


Rule = Callable[[], None]


def registry() -> tuple[dict[str, Rule], Callable[[str], Callable[[Rule], Rule]]]:
    """A rules table and its ``@rule("family.name")`` decorator (one per test module)."""
    table: dict[str, Rule] = {}

    def rule(name: str) -> Callable[[Rule], Rule]:
        def register(fn: Rule) -> Rule:
            assert name not in table, name
            table[name] = fn
            return fn

        return register

    return table, rule


def mql_lead(at: int = 0) -> list[Event]:
    """A high-fit lead (40) that reaches MQL with a whitepaper download (+10 = 50)."""
    return [created(at), ev("content.downloaded", at + H, content="whitepaper")]


def trial_lead() -> list[Event]:
    return [created(0), ev("trial.started", H)]


def customer(seats: float = 20) -> list[Event]:
    return [created(0), ev("subscription.converted", H, plan="team", seats_limit=seats)]


def without_account(events: Iterable[Event | int]) -> list[Event | int]:
    """The same inputs with no ``account_id`` (a customer that is not an account's user)."""
    return [
        e if isinstance(e, int) else msgspec.structs.replace(e, account_id=None) for e in events
    ]
