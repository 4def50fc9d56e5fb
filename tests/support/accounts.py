"""Account scenarios for the post-sale core tests: a small event builder and output tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.accounts.driver import AccountRun, run_accounts
from stream.core.config import RulesConfig, load_config
from stream.core.model import DAY_MS, Event

T0 = 1_780_012_800_000  # 2026-05-29T00:00:00Z, a day boundary
ACCOUNT = "A-1"
CFG = load_config()


@dataclass
class Scenario:
    """Events of one account, by day after T0; ``build`` numbers them in order."""

    account: str = ACCOUNT
    steps: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)

    def at(self, day: float, etype: str, lead: str = "u1", **props: Any) -> Scenario:
        self.steps.append((day, etype, lead, props))
        return self

    def team(self, day: float = 0) -> Scenario:
        """An admin, an executive and an end user."""
        for lead, role in (("u1", "admin"), ("u2", "executive"), ("u3", "end_user")):
            self.at(day, "lead.created", lead, role=role)
        return self

    def convert(self, day: float = 0, **props: Any) -> Scenario:
        base = {"plan": "pro", "seats_limit": 5, "arr": 12000.0, "term_months": 12}
        return self.at(day, "subscription.converted", "u1", **{**base, **props})

    def active(self, first: float, last: float, *leads: str, every: float = 1) -> Scenario:
        day = first
        while day <= last:
            for lead in leads or ("u1", "u3"):
                self.at(day + 0.25, "session.started", lead)
            day += every
        return self

    def events(self) -> list[Event]:
        return [
            Event(f"{self.account}-e{i}", etype, lead, T0 + int(day * DAY_MS), self.account, props)
            for i, (day, etype, lead, props) in enumerate(self.steps)
        ]

    def run(self, until_day: float, cfg: RulesConfig = CFG) -> AccountRun:
        runs = run_accounts(self.events(), cfg, until=T0 + int(until_day * DAY_MS))
        return runs[self.account]


def tokens(run: AccountRun) -> set[str]:
    """``transition:<kind>:<value>`` and ``action:<type>:<channel>:<template>[:<skip>]``."""
    out: set[str] = set()
    for t in run.transitions:
        out.add(f"transition:{t.kind}:{t.to_value if t.to_value is not None else t.from_value}")
        out.add(f"reason:{t.reason}")
    for a in run.actions:
        tail = f":{a.skip_reason}" if a.skip_reason else ""
        out.add(f"action:{a.type}:{a.channel}:{a.template}{tail}")
    return out


def day_of(ms: int) -> float:
    return (ms - T0) / DAY_MS


def healthy(s: Scenario, until: float) -> Scenario:
    """A converted team with two users active every day up to ``until``."""
    return s.team().convert().active(1, until)
