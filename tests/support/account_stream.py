"""Customer personas through the broker (accounts on): the input, the account topic read back
(forward envelopes), the pure account core over a sequence as the reference, and the account
outputs read from the output topics."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.accounts.driver import AccountDriver
from stream.accounts.model import AccountStep
from stream.core.config import load_config
from stream.core.model import DAY_MS, HOUR_MS, Event, ms_to_rfc3339
from stream.offline.customers import CUSTOMER_PERSONAS
from stream.offline.simulate import SimEvent, generate
from stream.runtime.accounts import account_key
from topics.parse import InvalidEvent, parse_event

if TYPE_CHECKING:
    from stream.settings import Settings

CUSTOMERS = len(CUSTOMER_PERSONAS)


def build_input(path: Path, days: float = 60, seed: int = 11) -> list[SimEvent]:
    """Customer personas a year ahead of the wall clock (the worker's clock is then the event
    time), plus one flush event per account at ``T_end`` so that both the worker and the
    reference fire the account timers due up to ``T_end``. Written to ``path`` too."""
    start = (int(time.time() * 1000) // DAY_MS + 400) * DAY_MS
    events = list(generate(0, days, seed, start=start, late_share=0.0, customers=CUSTOMERS))
    t_end = max(e.deliver_at for e in events) + HOUR_MS
    for i in range(CUSTOMERS):
        lead = f"C-{i:05d}-u0"
        doc = {
            "event_id": f"flush-{i:05d}",
            "type": "lead.updated",
            "lead_id": lead,
            "account_id": f"AC-{i:05d}",
            "occurred_at": ms_to_rfc3339(t_end),
        }
        events.append(SimEvent(t_end, lead, "crm", orjson.dumps(doc)))
    path.write_bytes(b"".join(e.line + b"\n" for e in events))
    return events


def as_records(settings: Settings, events: Iterable[SimEvent]) -> list[tuple[str, bytes, bytes]]:
    """(input topic, key, value) per simulated line, in the file's order."""
    topics = {
        "product": settings.topic_product_events,
        "email": settings.topic_email_events,
        "crm": settings.topic_crm_events,
    }
    return [(topics[e.source], e.lead_id.encode(), e.line) for e in events]


def origin_of(row: dict[str, Any]) -> tuple[str, int, int]:
    topic, partition, offset = row["value"]["src"]
    return topic, partition, offset


def forwards(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The forward envelopes among account-topic rows (the rest are progress markers)."""
    return [r for r in rows if isinstance(r["value"], dict) and "src" in r["value"]]


def file_order(events: Iterable[SimEvent]) -> dict[str, list[Event]]:
    """Each account's events as replaying the file orders them (event time, stable)."""
    per: dict[str, list[Event]] = collections.defaultdict(list)
    parsed = []
    for e in events:
        try:
            parsed.append(parse_event(e.line))
        except InvalidEvent:
            continue
    for event in sorted(parsed, key=lambda e: e.at):
        if account_key(event) is not None:
            assert event.account_id is not None
            per[event.account_id].append(event)
    return per


def topic_order(forwarded: Iterable[dict[str, Any]]) -> dict[str, list[Event]]:
    """Each account's events in the order the account topic holds them (rows of forward
    envelopes), a forward whose origin (input topic, partition, offset) was seen before
    dropped: the lead runner's re-send after a crash."""
    per: dict[str, list[Event]] = collections.defaultdict(list)
    seen: set[tuple[str, int, int]] = set()
    for r in sorted(forwards(forwarded), key=lambda r: (r["partition"], r["offset"])):
        origin = origin_of(r)
        if origin in seen:
            continue
        seen.add(origin)
        e = parse_event(orjson.dumps(r["value"]["event"]))
        assert e.account_id is not None
        per[e.account_id].append(e)
    return per


def core_outputs(per_account: dict[str, list[Event]]) -> dict[str, set[str]]:
    """The pure core over each account's own sequence (timers on its own event-time clock, as
    the worker fires them), outputs as normalised JSON."""
    config = load_config(None)
    out: dict[str, set[str]] = {}
    for account, events in per_account.items():
        records: set[str] = set()

        def sink(_a: str, r: AccountStep, records: set[str] = records) -> None:
            records.update(orjson.dumps(t.to_record()).decode() for t in r.transitions)
            records.update(orjson.dumps(a.to_record()).decode() for a in r.actions)

        driver = AccountDriver(config, sink=sink)
        for e in events:
            driver.feed(e)
        out[account] = records
    return out


def live_outputs(rows: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Account transitions and actions read from the output topics, per account, as normalised
    JSON (the set: at-least-once re-sends are the same bytes)."""
    live: dict[str, set[str]] = collections.defaultdict(set)
    for row in rows:
        value = row["value"]
        is_output = isinstance(value, dict) and ("kind" in value or "action_id" in value)
        if is_output and value.get("account_id"):
            live[value["account_id"]].add(orjson.dumps(value).decode())
    return live


def read_account_outputs(settings: Settings, want: int, timeout: float) -> list[dict[str, Any]]:
    """The transitions and actions topics, each read up to its end offsets (every partition),
    until they hold ``want`` distinct account records (or ``timeout`` passes: the caller
    asserts on what was read)."""
    from tests.support.worker import consume_to_end

    bootstrap = settings.kafka_bootstrap_servers
    deadline = time.monotonic() + timeout
    while True:
        rows = consume_to_end(bootstrap, settings.topic_transitions, timeout=120)
        rows += consume_to_end(bootstrap, settings.topic_actions, timeout=120)
        if sum(len(v) for v in live_outputs(rows).values()) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(2)  # poll interval of a condition with a deadline
