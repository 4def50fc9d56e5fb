"""Customer personas for the simulator: accounts after the sale (post-sale plays and health).

``nurture simulate --customers N`` adds N customer accounts, persona ``index % 7`` from
:data:`CUSTOMER_PERSONAS`, each with an admin, an executive sponsor and end users. An account
converts before the window where its story needs tenure (advocacy needs 180 days, renewal
touchpoints start 120 days before the renewal date), so every persona's turning point falls
inside a short window:

======================  ==========================================================================
persona                 shape (days relative to the window start)
======================  ==========================================================================
healthy_advocate        converted ~170 days before; users active most days; first value in week 2;
                        every adoption feature by day 60; executive NPS 9-10; completes the
                        advocacy ask (a review) ~20 days into the window
silent_after_golive     converted 40 days before; active and first value in the first 30 days
                        after go-live, then silent
payment_failure         converted 60 days before; healthy usage; payment fails on day 10; half
                        recover (billing active again) on day 25
urgent_ticket_burst     converted 80 days before; three urgent tickets on days 15-17, resolved
                        on days 30-40
seats_growing           converted 30 days before on a 10-seat plan; weekly seat usage grows to the
                        limit; half request expansion and upgrade to 20 seats (ARR +50%)
renews                  converted ~300 days before on a 12-month term; renews 20 days before the
                        renewal date with ARR +10%
cancels                 converted ~320 days before; usage fades; the admin answers NPS 3-5; cancels
                        on day 30
======================  ==========================================================================
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from stream.core.model import DAY_MS, ms_to_rfc3339
from topics.events import source_of


class _Account:
    """Builds one account's events; ``at(day, ...)`` days are relative to the window start."""

    def __init__(self, rng: random.Random, index: int, start: int) -> None:
        self.rng = rng
        self.index = index
        self.account_id = f"AC-{index:05d}"
        self.start = start
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []
        size = rng.choice((rng.randint(60, 3000), rng.randint(20, 45)))
        self.company = {
            "company_size": size,
            "industry": rng.choice(("software", "saas", "fintech", "media", "logistics")),
        }
        n_end_users = rng.randint(1, 3)
        self.users = [("admin", "u0"), ("executive", "u1")] + [
            ("end_user", f"u{k + 2}") for k in range(n_end_users)
        ]

    def lead(self, short: str) -> str:
        return f"C-{self.index:05d}-{short}"

    def at(self, day: float, etype: str, who: str = "u0", **props: Any) -> None:
        self.events.append((self.start + int(day * DAY_MS), etype, self.lead(who), props))

    def convert(self, day: float, seats: float, arr: float, term_months: int = 12) -> None:
        for role, who in self.users:
            self.at(day - 1, "lead.created", who, role=role, **self.company)
        self.at(
            day,
            "subscription.converted",
            plan="team",
            seats_limit=seats,
            arr=arr,
            term_months=term_months,
            renewal_at=ms_to_rfc3339(self.start + int((day + term_months * 365 / 12) * DAY_MS)),
        )

    def active(self, first: float, last: float, p: float) -> None:
        """Each user starts a session on each day with probability ``p``."""
        day = int(first)
        while day <= last:
            for _role, who in self.users:
                if self.rng.random() < p:
                    self.at(day + self.rng.uniform(0.3, 0.7), "session.started", who)
            day += 1

    def adopt(self, first: float, last: float) -> None:
        for feature in ("reports", "integrations", "automations", "dashboards"):
            who = self.rng.choice(self.users)[1]
            self.at(self.rng.uniform(first, last), "feature.used", who, feature=feature)


def _healthy_advocate(a: _Account, end: float) -> None:
    t0 = -a.rng.uniform(165, 175)
    a.convert(t0, seats=float(len(a.users) + 2), arr=24000.0)
    a.active(t0 + 1, end, 0.75)
    a.at(t0 + a.rng.uniform(10, 18), "outcome.achieved", outcome="first_dashboard_shared")
    a.adopt(t0 + 20, t0 + 60)
    a.at(t0 + 150, "nps.submitted", "u1", score=a.rng.choice((9, 10)))
    a.at(t0 + 155, "csat.submitted", "u2", score=5)
    a.at(t0 + 200, "advocacy.completed", "u1", kind="review")


def _silent_after_golive(a: _Account, end: float) -> None:
    t0 = -40.0
    a.convert(t0, seats=float(len(a.users) + 1), arr=12000.0)
    a.active(t0 + 1, t0 + 30, 0.8)
    a.at(t0 + a.rng.uniform(6, 12), "outcome.achieved", outcome="first_report")
    a.active(t0 + 31, end, 0.01)


def _payment_failure(a: _Account, end: float) -> None:
    t0 = -60.0
    a.convert(t0, seats=float(len(a.users) + 2), arr=18000.0)
    a.active(t0 + 1, end, 0.6)
    a.at(t0 + a.rng.uniform(8, 20), "outcome.achieved", outcome="first_report")
    a.at(10, "billing.status_changed", status="payment_failed")
    if a.index % 2 == 0:
        a.at(25, "billing.status_changed", status="active")


def _urgent_ticket_burst(a: _Account, end: float) -> None:
    t0 = -80.0
    a.convert(t0, seats=float(len(a.users) + 2), arr=30000.0)
    a.active(t0 + 1, end, 0.65)
    a.at(t0 + a.rng.uniform(8, 20), "outcome.achieved", outcome="first_report")
    for k in range(3):
        ticket = f"T-{a.index:05d}-{k}"
        a.at(
            15 + k,
            "support.ticket_opened",
            f"u{2 if k else 0}",
            ticket_id=ticket,
            severity="urgent",
        )
        a.at(a.rng.uniform(30, 40), "support.ticket_resolved", ticket_id=ticket, severity="urgent")


def _seats_growing(a: _Account, end: float) -> None:
    t0 = -30.0
    a.convert(t0, seats=10.0, arr=20000.0)
    a.active(t0 + 1, end, 0.7)
    a.at(t0 + a.rng.uniform(5, 15), "outcome.achieved", outcome="first_automation")
    seats = 5.0
    week = 1
    while t0 + 7 * week <= end and seats < 10:
        seats = min(10.0, seats + a.rng.choice((0.0, 1.0, 1.0, 2.0)))
        a.at(t0 + 7 * week, "usage.reported", metric="seats", value=seats, limit=10.0)
        week += 1
    if a.index % 2 == 0:
        ask = t0 + 7 * week + 1
        a.at(ask, "expansion.requested", "u0")
        a.at(ask + 5, "subscription.upgraded", plan="business", limits={"seats": 20.0}, arr=30000.0)


def _renews(a: _Account, end: float) -> None:
    t0 = -a.rng.uniform(290, 305)
    a.convert(t0, seats=float(len(a.users) + 2), arr=15000.0)
    a.active(t0 + 1, end, 0.6)
    a.at(t0 + a.rng.uniform(8, 25), "outcome.achieved", outcome="first_report")
    renewal = t0 + 365
    a.at(
        renewal - 20,
        "subscription.renewed",
        renewal_at=ms_to_rfc3339(a.start + int((renewal + 365) * DAY_MS)),
        arr=16500.0,
    )


def _cancels(a: _Account, end: float) -> None:
    t0 = -a.rng.uniform(315, 325)
    a.convert(t0, seats=float(len(a.users) + 2), arr=10000.0)
    a.active(t0 + 1, -60, 0.5)
    a.active(-59, 30, 0.08)
    a.at(5, "nps.submitted", "u0", score=a.rng.randint(3, 5))
    a.at(30, "subscription.cancelled", reason="low adoption")


CUSTOMER_PERSONAS: tuple[tuple[str, Callable[[_Account, float], None]], ...] = (
    ("healthy_advocate", _healthy_advocate),
    ("silent_after_golive", _silent_after_golive),
    ("payment_failure", _payment_failure),
    ("urgent_ticket_burst", _urgent_ticket_burst),
    ("seats_growing", _seats_growing),
    ("renews", _renews),
    ("cancels", _cancels),
)


def customer_persona(index: int) -> str:
    return CUSTOMER_PERSONAS[index % len(CUSTOMER_PERSONAS)][0]


def customer_events(
    seed: int, index: int, start: int, end: int
) -> Iterator[tuple[int, str, str, bytes]]:
    """(occurred_at, lead_id, source, JSON line) of one customer account, in event-time order, up to
    ``end`` (epoch ms). Deterministic in (seed, index)."""
    rng = random.Random(f"{seed}:customer:{index}")
    account = _Account(rng, index, start)
    CUSTOMER_PERSONAS[index % len(CUSTOMER_PERSONAS)][1](account, (end - start) / DAY_MS)
    account.events.sort(key=lambda e: (e[0], e[2]))
    for seq, (at, etype, lead_id, props) in enumerate(account.events):
        if at >= end:
            break
        doc = {
            "event_id": f"c-{index:05d}-{seq:05d}",
            "type": etype,
            "lead_id": lead_id,
            "account_id": account.account_id,
            "occurred_at": ms_to_rfc3339(at),
            "properties": props,
        }
        yield at, lead_id, source_of(etype), orjson.dumps(doc)
