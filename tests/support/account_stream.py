"""Customer personas through the broker (accounts on): the input, the account topic read back
(forward envelopes), the pure account core over a sequence as the reference, and the account
outputs read from the output topics."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.accounts.driver import AccountDriver
from stream.accounts.model import AccountStep
from stream.core.config import load_config
from stream.core.model import DAY_MS, HOUR_MS, Event, ms_to_rfc3339, rfc3339_to_ms
from stream.offline.customers import CUSTOMER_PERSONAS
from stream.offline.simulate import SimEvent, generate
from stream.runtime.accounts import account_key, open_forward
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


@dataclass(frozen=True)
class PersonaRun:
    """The input of a personas-through-Kafka test and its reference: the settings (accounts on,
    the event-time merges waiting up to 10 s: a loaded machine must not turn a slow lead batch
    into an idle timeout), each account's events in file order, the replay's outputs, and the
    (topic, key, value) records in the file's order."""

    settings: Settings
    events: list[SimEvent]
    per_file: dict[str, list[Event]]
    want: dict[str, set[str]]
    records: list[tuple[str, bytes, bytes]]

    @property
    def n_want(self) -> int:
        return sum(len(v) for v in self.want.values())


def persona_run(kafka_settings: Settings, path: Path, seed: int = 11) -> PersonaRun:
    """Customer personas written to ``path`` (:func:`build_input`) and their replay."""
    settings = kafka_settings.model_copy(
        update={"accounts_enabled": True, "max_task_idle_ms": 10_000}
    )
    events = build_input(path, seed=seed)
    per_file = file_order(events)
    want = core_outputs(per_file)
    return PersonaRun(settings, events, per_file, want, as_records(settings, events))


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
    """The forwards among account-topic rows (the rest are progress markers), each value as
    ``{"src": [topic, partition, offset], "event": <the event in the contract's JSON>}``: a
    forward (MessagePack) decoded, a JSON envelope of an earlier worker as it is."""
    out = []
    for row in rows:
        value = row["value"]
        if isinstance(value, bytes):
            forward = open_forward(value)
            if forward is None:
                continue
            src = [forward.topic, forward.partition, forward.offset]
            row = {**row, "value": {"src": src, "event": _contract_json(forward.event)}}
        elif not (isinstance(value, dict) and "src" in value):
            continue
        out.append(row)
    return out


def _contract_json(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "lead_id": event.lead_id,
        "occurred_at": ms_to_rfc3339(event.at),
        "account_id": event.account_id,
        "properties": dict(event.properties),
    }


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


def _incarnation(ts_ms: int, starts_ms: list[int]) -> int:
    """Which worker process (1-based, by start time) was running at wall time ``ts_ms``."""
    return sum(1 for s in starts_ms if s <= ts_ms) or 1


def explain_difference(
    account: str,
    want: set[str],
    rows: Iterable[dict[str, Any]],
    forwarded: Iterable[dict[str, Any]],
    starts_ms: list[int],
    logs: Iterable[Path],
) -> str:
    """Why ``account``'s outputs differ from the replay, in full: the records only the replay
    has and those only the output topics have (sorted by event time, each read record with the
    worker process that sent it, by Kafka timestamp against the processes' start times), the
    account's forwards around the first difference (account-topic offset, origin, sending
    process), and the workers' event-time merge give-ups and stalled-input lines."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        value = row["value"]
        if isinstance(value, dict) and value.get("account_id") == account:
            seen.setdefault(orjson.dumps(value).decode(), row)

    def at(record: str) -> str:
        return str(orjson.loads(record).get("at", ""))

    got = set(seen)
    lines = [f"{account}: replay {len(want)} records, read {len(got)}"]
    lines.append(f"only in the replay ({len(want - got)}):")
    lines += [f"  - {r}" for r in sorted(want - got, key=at)]
    lines.append(f"only read from the output topics ({len(got - want)}):")
    for r in sorted(got - want, key=at):
        ts = seen[r]["timestamp"]
        lines.append(f"  + [worker {_incarnation(ts, starts_ms)}, ts {ts}] {r}")
    differing = sorted((want ^ got), key=at)
    if differing:
        first = rfc3339_to_ms(at(differing[0]))
        lines.append("the account's forwards within 3 days before the first difference:")
        for f in sorted(forwards(forwarded), key=lambda r: (r["partition"], r["offset"])):
            event = f["value"]["event"]
            if event.get("account_id") != account:
                continue
            t = rfc3339_to_ms(event["occurred_at"])
            if first - 3 * DAY_MS <= t <= first + HOUR_MS:
                lines.append(
                    f"  p{f['partition']}@{f['offset']} [worker "
                    f"{_incarnation(f['timestamp'], starts_ms)}] src {f['value']['src']} "
                    f"{event['occurred_at']} {event['type']} {event.get('lead_id')}"
                )
    for path in logs:
        text = path.read_text(errors="replace")
        notes = [
            line
            for line in text.splitlines()
            if "stopped waiting" in line or "stalled input" in line or "late input" in line
        ]
        lines.append(f"{path.name}: {len(notes)} merge give-ups, late inputs, stalls")
        lines += [f"  {line[:400]}" for line in notes[:20]]
    return "\n".join(lines)
