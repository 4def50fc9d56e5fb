"""Hypothesis invariants of the post-sale core over random account histories.

- an account's health components always sum to its score (every transition, every state);
- no advocacy ask while any risk flag is open;
- no post-sale email (or other personal send) to a user who unsubscribed or hard-bounced,
  checked against an oracle built from the inputs, not from the core's own state;
- each renewal touchpoint fires at most once per renewal date.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.accounts.driver import AccountDriver
from stream.accounts.engine import ACCOUNT_EVENT_TYPES
from stream.accounts.health import components, health
from stream.accounts.model import AccountStep, decode_state, encode_state
from stream.accounts.work import PERSONAL
from stream.core.model import DAY_MS, Event
from tests.support.accounts import CFG, T0

LEADS = ("u1", "u2", "u3", "u4")
RENEWALS = ("2027-05-29T00:00:00Z", "2027-03-01T00:00:00Z", "2027-09-15T12:00:00Z")


def _props(draw: st.DrawFn, etype: str) -> dict[str, Any]:
    pick = st.sampled_from
    if etype in ("lead.created", "lead.updated"):
        return {"role": draw(pick(["admin", "end_user", "executive"]))}
    if etype == "feature.used":
        return {
            "feature": draw(pick(["reports", "integrations", "automations", "dashboards", "x"]))
        }
    if etype == "subscription.converted":
        out: dict[str, Any] = {"seats_limit": draw(pick([3, 5, 10])), "arr": 10000.0}
        if draw(st.booleans()):
            out["renewal_at"] = draw(pick(RENEWALS))
        return out
    if etype == "subscription.upgraded":
        return {"limits": {"seats": draw(pick([5, 10, 20]))}}
    if etype == "subscription.renewed":
        return {"renewal_at": draw(pick(RENEWALS))}
    if etype == "support.ticket_opened":
        return {
            "ticket_id": draw(pick(["T1", "T2", "T3"])),
            "severity": draw(pick(["low", "normal", "high", "urgent"])),
        }
    if etype == "support.ticket_resolved":
        return {"ticket_id": draw(pick(["T1", "T2", "T3"]))}
    if etype == "nps.submitted":
        return {"score": draw(st.integers(0, 10))}
    if etype == "csat.submitted":
        return {"score": draw(st.integers(1, 5))}
    if etype == "billing.status_changed":
        return {"status": draw(pick(["active", "past_due", "payment_failed", "suspended"]))}
    if etype == "outcome.achieved":
        return {"outcome": draw(pick(["first_report", "automation_live"]))}
    if etype == "advocacy.completed":
        return {"kind": draw(pick(["review", "reference", "case_study"]))}
    if etype == "usage.reported":
        return {"metric": "seats", "value": draw(st.integers(0, 12))}
    if etype == "email.bounced":
        return {"hard": draw(st.booleans())}
    return {}


# every type the account folds (the engine's own list, so a new type is drawn too), with
# sessions drawn three times as often: they move the usage component
TYPES = [*sorted(ACCOUNT_EVENT_TYPES), "session.started", "session.started"]


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    steps = [
        (0.0, "lead.created", lead, {"role": role})
        for lead, role in zip(LEADS, ("admin", "executive", "end_user", "end_user"), strict=True)
    ]
    steps.append((0.0, "subscription.converted", "u1", {"seats_limit": 5, "arr": 12000.0}))
    for _ in range(draw(st.integers(0, 60))):
        etype = draw(st.sampled_from(TYPES))
        day = draw(st.floats(0, 420, allow_nan=False))
        steps.append((day, etype, draw(st.sampled_from(LEADS)), _props(draw, etype)))
    steps.sort(key=lambda s: s[0])
    return [
        Event(f"e{i}", t, lead, T0 + int(day * DAY_MS), "A-1", props)
        for i, (day, t, lead, props) in enumerate(steps)
    ]


def _drive(events: list[Event], check: Any) -> AccountDriver:
    """Feed in event time; ``check(result, blocked)`` sees every step with the oracle's view."""
    blocked: set[str] = set()
    driver = AccountDriver(CFG, sink=lambda _a, result: check(result, blocked))
    for e in events:
        driver.fire_until(max(e.at, driver.clock or e.at))
        if e.type == "email.unsubscribed" or (e.type == "email.bounced" and e.properties["hard"]):
            blocked.add(e.lead_id)
        driver.feed(e)
    driver.finish(T0 + 450 * DAY_MS)
    return driver


@settings(max_examples=80, deadline=None)
@given(histories())
def test_post_sale_invariants(events: list[Event]) -> None:
    touchpoints: Counter[tuple[Any, ...]] = Counter()

    def check(result: AccountStep, blocked: set[str]) -> None:
        for t in result.transitions:
            assert sum(c.points for c in t.health.components) == pytest.approx(t.health.score)
        for a in result.actions:
            if a.program == "advocacy" and a.type == "send":
                assert result.state.flags == (), "advocacy ask with a risk flag open"
                assert result.state.band == "green"
            if a.type == "send" and a.channel in PERSONAL and a.lead_id is not None:
                assert a.lead_id not in blocked, f"{a.template} sent to suppressed {a.lead_id}"
            if a.reason == "risk_renewal.touchpoint":
                key = (a.context["renewal_at_ms"], a.context["days_before_renewal"], a.channel)
                touchpoints[key] += 1
                assert touchpoints[key] == 1, f"touchpoint {key} fired twice"

    driver = _drive(events, check)
    state = driver.accounts["A-1"].state
    assert state is not None
    now = state.watermark or T0
    h = health(state, now, CFG.accounts, CFG.version)
    assert sum(c.points for c in components(state, now, CFG.accounts)) == pytest.approx(h.score)
    assert 0 <= h.score <= 100
    assert decode_state(encode_state(state)) == state
    # the JSON earlier workers stored (orjson of the dataclass state: the same object of fields)
    assert decode_state(orjson.dumps(msgspec.to_builtins(state))) == state
    assert len(state.users) <= CFG.accounts.max_users
    assert len(state.tickets) <= CFG.accounts.max_tickets
    assert len(state.seen_ids) <= CFG.accounts.max_event_ids


@settings(max_examples=25, deadline=None)
@given(histories())
def test_replaying_the_same_history_gives_the_same_outputs(events: list[Event]) -> None:
    def outputs() -> list[bytes]:
        seen: list[bytes] = []

        def sink(_a: str, r: AccountStep) -> None:
            seen.extend(repr(t.to_record()).encode() for t in r.transitions)
            seen.extend(repr(a.to_record()).encode() for a in r.actions)

        driver = AccountDriver(CFG, sink=sink)
        for e in events:
            driver.feed(e)
        driver.finish(T0 + 450 * DAY_MS)
        return seen

    assert outputs() == outputs()
