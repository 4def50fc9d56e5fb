"""The worker's account processor (the lead processor with the account core) against the replay
oracle: same transitions and actions per account, and after a crash (cache lost, inputs
re-delivered from the last committed offset) nothing lost and nothing stepped twice."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from stream.accounts.driver import AccountDriver
from stream.accounts.model import AccountStep
from stream.core.config import RulesConfig, load_config
from stream.core.model import DAY_MS, Event
from stream.offline.customers import CUSTOMER_PERSONAS
from stream.offline.simulate import generate, write_file
from stream.runtime.accounts import (
    account_forward,
    account_key,
    account_processor,
    account_view,
    as_account_input,
    forward_envelope,
    forward_value,
    open_envelope,
    open_forward,
)
from stream.runtime.batch import BatchResult, Input
from stream.runtime.record import split_record
from stream.settings import Settings
from topics.parse import InvalidEvent, parse_event, parse_forward

CFG = load_config()
TOPIC = "nurture-account-events"


@pytest.fixture(scope="module")
def account_events(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    path = tmp_path_factory.mktemp("acc") / "events.jsonl"
    write_file(path, generate(30, 60, seed=5, customers=len(CUSTOMER_PERSONAS)))
    events = []
    for line in path.read_bytes().splitlines():
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        if account_key(event) is not None:
            events.append(event)
    events.sort(key=lambda e: e.at)  # the repartition topic in event time
    return events


def _oracle(events: list[Event], horizon: int, config: RulesConfig = CFG) -> dict[str, list[bytes]]:
    outs: list[bytes] = []

    def sink(_account_id: str, r: AccountStep) -> None:
        outs.extend(orjson.dumps(t.to_record()) for t in r.transitions)
        outs.extend(orjson.dumps(a.to_record()) for a in r.actions)

    driver = AccountDriver(config, sink=sink)
    for e in events:
        driver.feed(e)
    driver.finish(horizon)
    return _by_account(outs)


def _by_account(outs: list[bytes]) -> dict[str, list[bytes]]:
    """Per account: its transitions in order, then its actions in order (the worker sends an
    input's transitions and actions as two lists; the order within each is the core's)."""
    trs: dict[str, list[bytes]] = defaultdict(list)
    acs: dict[str, list[bytes]] = defaultdict(list)
    for raw in outs:
        doc = orjson.loads(raw)
        (trs if "kind" in doc else acs)[doc["account_id"]].append(raw)
    return {a: trs[a] + acs[a] for a in sorted(set(trs) | set(acs))}


class Store:
    """The ``accounts`` table of one partition as a dict (the runner applies a batch's writes
    to RocksDB the same way)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, partition: int) -> list[tuple[bytes, bytes]]:
        return list(self.data.items())

    def apply(self, result: BatchResult) -> None:
        for key, value in result.writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


def _outputs(result: BatchResult) -> list[bytes]:
    return [v for _k, v in result.transitions + result.actions]


def _run(proc: Any, store: Store, events: list[Event], first_offset: int, out: list[bytes]) -> int:
    """One batch per input (each its own anchor); returns the outputs re-sent."""
    replayed = 0
    for offset, e in enumerate(events[first_offset:], start=first_offset):
        result = proc.process(0, [Input(TOPIC, offset, as_account_input(e))], caught_up=False)
        store.apply(result)
        out += _outputs(result)
        replayed += result.replayed
    return replayed


def _tick(proc: Any, store: Store, out: list[bytes]) -> None:
    """A tick: the account processor fires due timers on the (injected) wall clock."""
    more = True
    while more:
        result = proc.process(0, [Input("ticks", 0)], caught_up=True)
        store.apply(result)
        out += _outputs(result)
        more = result.more_due


def test_processor_gives_the_replay_outputs_per_account(account_events: list[Event]) -> None:
    horizon = account_events[-1].at + DAY_MS
    store = Store()
    now = [0]
    proc = account_processor(CFG, store, clock=lambda: now[0])
    out: list[bytes] = []
    _run(proc, store, account_events, 0, out)
    now[0] = horizon
    _tick(proc, store, out)
    assert _by_account(out) == _oracle(account_events, horizon)
    assert len(_by_account(out)) >= len(CUSTOMER_PERSONAS)


def test_crash_loses_nothing_and_steps_nothing_twice(account_events: list[Event]) -> None:
    horizon = account_events[-1].at + DAY_MS
    n = len(account_events)
    crash_at, committed = (2 * n) // 3, n // 3
    store = Store()
    out: list[bytes] = []
    now = [0]
    first = account_processor(CFG, store, clock=lambda: now[0])
    _run(first, store, account_events[:committed], 0, out)
    _run(first, store, account_events[:crash_at], committed, [])  # stepped, never sent
    # the worker dies: in-memory cache, due index and unsent outputs are gone; the store
    # (RocksDB + changelog) survives; the consumer restarts from the last committed offset;
    # the new processor rebuilds its due index and journal from the store
    second = account_processor(CFG, store, clock=lambda: now[0], committed=lambda _t, _p: committed)
    replayed = _run(second, store, account_events, committed, out)
    now[0] = horizon
    _tick(second, store, out)
    assert replayed > 0  # the re-delivered inputs re-sent their outputs from the outbox
    got = _by_account(out)
    want = _oracle(account_events, horizon)
    assert set(got) == set(want)
    for account, records in want.items():
        # duplicates are allowed (same bytes, same action_id), losses and divergence are not
        assert list(dict.fromkeys(got[account])) == list(dict.fromkeys(records)), account


def test_account_view_explains_the_score(account_events: list[Event]) -> None:
    store = Store()
    proc = account_processor(CFG, store, clock=lambda: 0)
    _run(proc, store, account_events, 0, [])
    view = account_view(proc, "AC-00000")
    assert view is not None and view["stage"] is not None
    health = view["health"]
    assert sum(c["points"] for c in health["components"].values()) == pytest.approx(health["score"])
    assert view["pending_timers"] and view["last_transitions"]
    assert account_view(proc, "AC-99999") is None


def test_only_account_events_are_forwarded(tmp_path: Path) -> None:
    base = {"event_id": "e", "lead_id": "L", "occurred_at": "2026-11-20T10:00:00Z"}
    with_account = parse_event(orjson.dumps({**base, "type": "session.started", "account_id": "A"}))
    without = parse_event(orjson.dumps({**base, "type": "session.started"}))
    pre_sale = parse_event(
        orjson.dumps(
            {**base, "type": "page.viewed", "account_id": "A", "properties": {"page": "x"}}
        )
    )
    assert account_key(with_account) == b"A"
    assert account_key(without) is None and account_key(pre_sale) is None


def test_forward_envelope_round_trip() -> None:
    raw = b'{"event_id":"e","type":"session.started","lead_id":"L","account_id":"A",' + (
        b'"occurred_at":"2026-11-20T10:00:00Z"}'
    )
    value = forward_envelope(raw, "nurture.product-events", 3, 41)
    assert orjson.loads(value) == {
        "src": ["nurture.product-events", 3, 41],
        "event": orjson.loads(raw),
    }
    assert open_envelope(value) == (raw, "nurture.product-events", 3, 41)
    assert open_envelope(raw) is None  # a bare event is not a forward
    assert open_envelope(b'{"src":["t",1],"event":{}}') is None

    class Message:
        topic, partition, offset, value = "nurture.product-events", 3, 41, raw
        src = ("nurture.product-events", 3, 41)

    record = account_forward("acc", Message(), parse_event(raw))
    assert record == ("acc", None, b"A", forward_value(parse_event(raw), *Message.src))


def test_re_sent_forwards_are_applied_once_whatever_the_event_id_window(
    account_events: list[Event],
) -> None:
    """A lead-side crash re-sends the forwards of its uncommitted inputs: the account topic
    holds them twice at new offsets. With an event-id window of 2 the core alone would step
    them again; the per-origin offsets drop exactly the re-sends (and nothing else)."""
    config = CFG.model_copy(
        update={"accounts": CFG.accounts.model_copy(update={"max_event_ids": 2})}
    )
    horizon = account_events[-1].at + DAY_MS
    origins = [("nurture.product-events", i % 3, i // 3) for i in range(len(account_events))]
    n = len(account_events)
    # the account topic: every forward, then the last third again (a lead worker died before
    # committing them), then the rest of the input was never sent (nothing after the re-sends)
    topic = list(range(n)) + list(range((2 * n) // 3, n))
    store = Store()
    now = [0]
    proc = account_processor(config, store, clock=lambda: now[0])
    out: list[bytes] = []
    skipped = 0
    for offset, i in enumerate(topic):
        inp = as_account_input(account_events[i], *origins[i])
        result = proc.process(0, [Input(TOPIC, offset, inp)], caught_up=False)
        store.apply(result)
        out += _outputs(result)
        skipped += result.skipped
    now[0] = horizon
    _tick(proc, store, out)
    assert skipped == n - (2 * n) // 3  # the path under test ran: each re-send skipped
    assert _by_account(out) == _oracle(account_events, horizon, config)
    # each account record keeps one applied offset per origin (bounded), none per message
    for key, raw in store.data.items():
        if not key.startswith(b"__"):
            assert set(split_record(raw)[1]) <= {f"{t}:{p}" for t, p, _ in origins}


def test_a_backlog_behind_the_wall_clock_gives_the_replay_outputs(
    account_events: list[Event],
) -> None:
    """The worker back from an outage: every account event is older than the wall clock. The
    account timers fire on the partition's stream time (the account topic is merged in event
    time), not on the wall clock: a daily timer does not fire before the backlog's earlier
    events (with the wall clock, every account's outputs differed: silence that was not)."""
    horizon = account_events[-1].at + DAY_MS
    store = Store()
    proc = account_processor(CFG, store, clock=lambda: horizon)  # the wall clock is past all
    out: list[bytes] = []
    _run(proc, store, account_events, 0, out)
    _tick(proc, store, out)
    assert _by_account(out) == _oracle(account_events, horizon)


def test_a_forward_is_parsed_in_one_pass_to_what_opening_and_parsing_it_gives() -> None:
    """parse_forward (the account runner's one pass over envelope and event) gives the event
    and origin that open_envelope + parse_event give, for every simulated line the lead runner
    would forward; values of another shape are left to that path (None)."""
    checked = 0
    for offset, ev in enumerate(generate(40, 20, 5, customers=5)):
        try:
            event = parse_event(ev.line)
        except InvalidEvent:
            continue  # the simulation's malformed lines are not forwarded
        value = forward_envelope(ev.line, "nurture.crm-events", 7, offset)
        got = parse_forward(value)
        assert got is not None
        assert got == (event, ("nurture.crm-events", 7, offset))
        opened = open_envelope(value)
        assert opened is not None and parse_event(opened[0]) == got[0]
        checked += 1
    assert checked > 300
    assert parse_forward(b'{"progress":[1,2]}') is None
    assert parse_forward(b'{"src":["t",1],"event":{}}') is None
    assert parse_forward(b'{"src":["t",1,2],"event":{"event_id":"e"}}') is None
    with pytest.raises(InvalidEvent, match="unknown_type"):  # the same checks as parse_event
        parse_forward(
            b'{"src":["t",1,2],"event":{"event_id":"e","type":"nope","lead_id":"L",'
            b'"occurred_at":"2026-11-20T10:00:00Z"}}'
        )


def test_a_forward_carries_the_event_the_lead_runner_parsed() -> None:
    """The account runner reads a forward (MessagePack) back to the event parse_event gives
    for the original line and its origin, for every simulated line the lead runner forwards;
    a JSON envelope of an earlier worker is still read to the same input; a value that is
    neither is an invalid input (bad_envelope), not a crash."""
    from stream.runtime.account_agent import _open_forward

    checked = 0
    for offset, ev in enumerate(generate(40, 20, 5, customers=5)):
        try:
            event = parse_event(ev.line)
        except InvalidEvent:
            continue
        if account_key(event) is None:
            continue

        class Message:
            topic, partition, value = "nurture.crm-events", 7, ev.line

        Message.offset = offset  # type: ignore[attr-defined]
        record = account_forward("acc", Message(), event)
        assert record is not None
        value = record[3]
        assert value[:1] != b"{" and open_forward(value) is not None
        expected = (event, "nurture.crm-events", 7, offset)
        assert _open_forward(value) == expected
        assert _open_forward(forward_envelope(ev.line, "nurture.crm-events", 7, offset)) == (
            expected
        )
        checked += 1
    assert checked > 200
    for value in (b"\x94garbage", b"\x94\xa1t\x01\x02\xc0", b"[1,2]", b""):
        got = _open_forward(value)
        assert isinstance(got, InvalidEvent) and got.reason == "bad_envelope", value
    assert open_forward(b'{"progress":[1,2]}') is None


def test_json_forward_format_writes_the_envelope_earlier_workers_read(tmp_path: Path) -> None:
    """NURTURE_ACCOUNT_FORWARD_FORMAT=json (a rolling upgrade from a worker before MessagePack
    forwards): the lead runner's batch sends the JSON envelope of the original bytes, which the
    account runner opens to the same event and origin as the MessagePack forward."""
    from stream.runtime.account_agent import _open_forward
    from stream.runtime.merge import Slot
    from stream.runtime.outgoing import batch_records

    raw = next(ev.line for ev in generate(40, 20, 5, customers=5) if b'"account_id"' in ev.line)
    event = parse_event(raw)
    assert account_key(event) is not None

    message = SimpleNamespace(
        topic="nurture.product-events", partition=3, offset=41, value=raw, key=b"k"
    )
    parsed = SimpleNamespace(message=message, event=event, error=None)

    sent: dict[str, bytes | None] = {}
    for fmt in ("msgpack", "json"):
        settings = Settings(data_dir=tmp_path, account_forward_format=fmt)
        result = BatchResult(partition=3)
        out = batch_records(3, result, [Slot(event.at, 41, parsed)], settings, "cl", "acc", None)
        assert out.forwarded == 1 and len(out.records) == 1
        sent[fmt] = out.records[0][3]
    assert sent["json"].startswith(b'{"src":') and sent["msgpack"][:1] != b"{"
    assert sent["json"] == forward_envelope(raw, "nurture.product-events", 3, 41)
    assert (
        _open_forward(sent["json"])
        == _open_forward(sent["msgpack"])
        == (
            event,
            "nurture.product-events",
            3,
            41,
        )
    )
    with pytest.raises(ValueError, match="account_forward_format"):
        Settings(data_dir=tmp_path, account_forward_format="avro")


def test_assigning_an_account_partition_leaves_the_lead_occupancy_of_that_partition(
    account_events: list[Event],
) -> None:
    """Both runners prepare partition p after an assignment. The lead runner rebuilds p's
    nurture_leads share from its lead records; the account runner's records are accounts, and
    it must not rebuild p's share from them (it did: with the account runner second, p's lead
    count was replaced by nothing)."""
    import asyncio
    from types import SimpleNamespace

    from faust.types import TP

    from stream.metrics import Metrics
    from stream.runtime.account_agent import AccountRunner

    store = Store()
    proc = account_processor(CFG, store)
    for offset, e in enumerate(account_events[:50]):
        store.apply(proc.process(0, [Input(TOPIC, offset, as_account_input(e))], False))
    assert any(not k.startswith(b"__") for k in store.data)
    metrics = Metrics()
    metrics.rebuild_occupancy(0, [("mql_nurture", "awareness")] * 3)  # the lead runner's count
    runner: Any = object.__new__(AccountRunner)
    runner.app = SimpleNamespace(
        assignor=SimpleNamespace(assigned_actives=lambda: {TP(TOPIC, 0)}),
        flow_control=SimpleNamespace(is_active=lambda: False),  # stop after preparing
    )
    runner.input_topics = (TOPIC,)
    runner.processor = account_processor(CFG, store)  # a fresh one: partition 0 unprepared
    runner.metrics = metrics
    runner.trace_out = None
    runner._logged = 0.0
    asyncio.run(runner._round())
    assert runner.processor.prepared(0)  # the account partition was prepared
    got = metrics.registry.get_sample_value(
        "nurture_leads", {"program": "mql_nurture", "state": "awareness"}
    )
    assert got == 3


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([b'{"progress":[[0,30],[2,50]]}'], id="combined"),
        pytest.param([b'{"progress":[0,30]}', b'{"progress":[2,50]}'], id="one_per_partition"),
    ],
)
def test_the_account_runner_applies_every_lead_partition_of_a_marker(
    tmp_path: Path, values: list[bytes]
) -> None:
    """A marker of either kind advances the account partition's merge for each lead partition
    it names, and is no input (acked with its batch)."""
    from types import SimpleNamespace

    from stream.runtime.account_agent import AccountRunner

    runner: Any = object.__new__(AccountRunner)
    runner.settings = Settings(data_dir=tmp_path, topic_partitions=3)
    runner.input_topics = (TOPIC,)
    runner.merges = {}
    for offset, value in enumerate(values):
        message = SimpleNamespace(topic=TOPIC, partition=1, offset=offset, value=value, key=None)
        assert runner.parse(message) == (None, None)
    merge = runner.merges[1]
    assert merge.progress == {0: 30, 2: 50}
    assert 1 not in merge.progress  # lead partition 1 reported nothing: it still holds
