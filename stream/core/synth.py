"""A deterministic synthetic event stream (seeded), for benchmarks, demos and tests.

Each lead gets a plausible journey: firmographics, page views, downloads, email engagement,
sometimes a trial with sessions, features and activation, sometimes a conversion and usage.
Events of all leads are merged in event-time order; :func:`drive` runs them through ``step``
firing due timers from event time, the same way replay does.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator

from stream.core.config import RulesConfig
from stream.core.engine import StepResult, step
from stream.core.model import DAY_MS, HOUR_MS, Event, Timer, TimerFired
from stream.core.state import LeadState

T0 = 1_790_000_000_000  # 2026-09-21T13:33:20Z
INDUSTRIES = ("saas", "software", "fintech", "retail", "education", "manufacturing", "consumer")
PAGES = ("pricing", "comparison", "alternatives", "case_study", "blog", "docs", "roi_calculator")
FEATURES = ("reports", "alerts", "api", "sso", "dashboards", "exports", "workflows")


def lead_events(rng: random.Random, lead_id: str, start: int, n: int) -> list[Event]:
    """About ``n`` events for one lead, in event-time order."""
    out: list[Event] = []
    t = start
    k = 0

    def ev(etype: str, props: dict[str, object] | None = None) -> None:
        nonlocal k
        k += 1
        out.append(Event(f"{lead_id}-{k}", etype, lead_id, t, None, props or {}))

    ev(
        "lead.created",
        {
            "company_size": rng.choice((5, 30, 120, 800, 2500, 9000)),
            "industry": rng.choice(INDUSTRIES),
        },
    )
    trial = rng.random() < 0.4
    if trial:
        t += rng.randrange(HOUR_MS)
        ev("trial.started")
    while len(out) < n:
        t += rng.randrange(1, 3 * DAY_MS)
        r = rng.random()
        if r < 0.25:
            ev("page.viewed", {"page": rng.choice(PAGES)})
        elif r < 0.35:
            ev("content.downloaded", {"content": rng.choice(("case_study", "whitepaper"))})
        elif r < 0.45:
            ev("email.opened")
        elif r < 0.5:
            ev("email.clicked")
        elif r < 0.74 and not trial:
            ev("email.sent", {"template": "x"})
        elif r < 0.65:
            ev("session.started")
        elif r < 0.72:
            ev("feature.used", {"feature": rng.choice(FEATURES)})
        elif r < 0.74:
            ev("activation.completed")
        elif r < 0.75:
            ev("subscription.converted", {"plan": "team", "seats_limit": 20})
        elif r < 0.8:
            ev("usage.reported", {"metric": "seats", "value": rng.randrange(1, 22)})
        elif r < 0.81:
            ev("email.replied", {"intent": rng.choice(("demo_request", "positive", "other"))})
        elif r < 0.812:
            ev("email.unsubscribed")
        elif r < 0.82:
            ev("opportunity.created")
        else:
            ev("email.sent", {"template": "x"})
    return out


def stream(seed: int, leads: int, events_per_lead: int) -> Iterator[Event]:
    """All leads' events merged in event-time order."""
    rng = random.Random(seed)
    per_lead = [
        lead_events(rng, f"L{i}", T0 + rng.randrange(30 * DAY_MS), events_per_lead)
        for i in range(leads)
    ]
    return heapq.merge(*per_lead, key=lambda e: e.at)


def drive(
    inputs: Iterable[Event | int],
    config: RulesConfig,
    states: dict[str, LeadState] | None = None,
) -> Iterator[StepResult]:
    """Run events through ``step``, firing due timers from event time the way replay does:
    before an event at ``t`` every pending timer due at or before ``t`` fires (earliest first).
    An ``int`` in ``inputs`` advances the clock to that time (firing what is due) without an
    event. Yields every step result that did something (no-op timer firings are skipped)."""
    states = {} if states is None else states
    timers: list[tuple[int, str, str]] = []  # (due, lead_id, timer_id)
    for lead, st in states.items():
        for t in st.timers:
            heapq.heappush(timers, (t.due, lead, t.timer_id))
    for e in inputs:
        until = e if isinstance(e, int) else e.at
        while timers and timers[0][0] <= until:
            due, lead, tid = heapq.heappop(timers)
            before = states.get(lead)
            r = step(before, TimerFired(lead, tid, due), config)
            if before is not None and r.state is not before:
                states[lead] = r.state
                _push_new(timers, lead, before.timers, r)
                yield r
        if isinstance(e, int):
            continue
        before = states.get(e.lead_id)
        r = step(before, e, config)
        states[e.lead_id] = r.state
        _push_new(timers, e.lead_id, before.timers if before is not None else (), r)
        yield r


def _push_new(
    heap: list[tuple[int, str, str]], lead: str, old: tuple[Timer, ...], r: StepResult
) -> None:
    if r.timers != old:
        known = set(old)
        for t in r.timers:
            if t not in known:
                heapq.heappush(heap, (t.due, lead, t.timer_id))
