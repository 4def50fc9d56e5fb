"""The worker's delivery logic without Kafka: :class:`stream.runtime.processor.LeadProcessor`
over a dict store with an injected committed-offset function and clock, and the event-time
merge of :mod:`stream.runtime.merge`.

Each path is shown to run through the counter or record it changes (``skipped``, ``replayed``,
outbox entries, the journal), and outputs are checked against the pure core
(:func:`tests.support.reference.core_outputs`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from stream.core.config import load_config
from stream.core.model import HOUR_MS
from stream.runtime.batch import BatchResult, Input
from stream.runtime.journal import decode_journal, journal_key
from stream.runtime.merge import PartitionMerge, Slot
from stream.runtime.processor import LeadProcessor
from stream.runtime.record import OUTBOX_CAP, split_record
from tests.support.leads import trial_leads
from tests.support.reference import core_outputs
from topics.parse import parse_event

CONFIG = load_config(None)
TOPIC = "product"
P = 0
T0 = 1_900_000_000_000  # event times: ms


class DictStore:
    """A partitioned dict store applying a batch's writes (what the runner does with RocksDB)."""

    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return list(self.data.get(partition, {}).items())

    def apply(self, result: BatchResult) -> None:
        data = self.data.setdefault(result.partition, {})
        for key, value in result.writes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value


class Committed:
    """The consumer's committed offsets, set by the test."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}

    def __call__(self, topic: str, partition: int) -> int | None:
        return self.offsets.get((topic, partition))


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make(store: DictStore, committed: Committed, clock: Clock) -> LeadProcessor:
    return LeadProcessor(CONFIG, store, committed=committed, clock=clock)


def inputs_of(events: list[dict[str, Any]], start: int = 0, topic: str = TOPIC) -> list[Input]:
    return [
        Input(topic, start + i, parse_event(orjson.dumps(e), e["lead_id"].encode()))
        for i, e in enumerate(events)
    ]


def run(proc: LeadProcessor, store: DictStore, inputs: list[Input], caught_up: bool) -> BatchResult:
    result = proc.process(P, inputs, caught_up)
    store.apply(result)
    return result


def actions_of(result: BatchResult) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _k, v in result.actions]


def leads(n: int, first_due: int, seed: int = 3) -> list[dict[str, Any]]:
    return trial_leads(n, first_due, HOUR_MS, random.Random(seed), prefix="u")


def test_a_batch_gives_the_cores_outputs_and_writes_each_lead_once() -> None:
    events = leads(30, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    proc = make(store, committed, clock)
    result = run(proc, store, inputs_of(events), caught_up=False)
    want_tr, want_ac = core_outputs(events)
    assert result.stepped == len(events)
    assert sorted(orjson.dumps(a) for a in actions_of(result)) == sorted(
        orjson.dumps(a) for a in want_ac
    )
    assert len(result.transitions) == len(want_tr)
    lead_keys = {k for k in result.writes if not k.startswith(b"__")}
    assert lead_keys == {e["lead_id"].encode() for e in events}  # once per lead, not per event
    anchor = f"{TOPIC}:{len(events) - 1}"
    assert journal_key(P, anchor) in result.writes  # outputs are journaled under the anchor


def test_a_redelivered_input_is_not_stepped_again_and_its_outputs_are_resent() -> None:
    """Crash after the batch's writes, before its offsets were committed: a fresh processor
    over the same store sees the same inputs again (applied offsets skip them) and re-sends
    the outputs from the outbox through the anchor's journal entry."""
    events = leads(20, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    first = run(make(store, committed, clock), store, inputs_of(events), caught_up=False)
    assert first.actions

    restarted = make(store, committed, clock)  # cache and index rebuilt from the store
    again = run(restarted, store, inputs_of(events), caught_up=False)
    assert again.stepped == 0 and again.skipped == len(events)
    assert again.replayed == len(first.actions) + len(first.transitions)
    assert sorted(again.actions) == sorted(first.actions)
    assert sorted(again.transitions) == sorted(first.transitions)


def _previous_layout(raw: bytes, transition_records: list[dict[str, Any]]) -> bytes:
    """``raw`` (the current layout) re-encoded as the previous one (``N2``): JSON metadata,
    outputs as JSON strings in it, the full transition records as history."""
    state_bytes, applied, outbox, _history = split_record(raw)
    head = raw[2 : 2 + 12]  # next due, state length: unchanged
    meta = [
        applied,
        [
            [
                e.topic,
                e.partition,
                e.offset,
                [b.decode() for b in e.transitions],
                [b.decode() for b in e.actions],
            ]
            for e in outbox
        ],
        transition_records,
    ]
    return b"N2" + head + state_bytes + orjson.dumps(meta)


def test_a_record_of_the_previous_layout_is_read_resent_and_rewritten() -> None:
    """A worker upgraded in place: its store holds ``N2`` records (outputs as JSON strings,
    full transition records as history) and journal values listing leads (JSON). A
    re-delivered anchor re-sends those outputs, byte for byte; the lead view shows their
    history; the lead's next write is the new layout."""
    events = leads(20, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    # the previous worker kept outputs in the leads' outboxes, the journal listed the leads
    old = LeadProcessor(CONFIG, store, committed=committed, clock=clock, journal_outputs_max=0)
    first = run(old, store, inputs_of(events), caught_up=False)
    assert first.actions
    upgraded = 0
    for key, raw in list(store.data[P].items()):
        if key.startswith(b"__batch__"):
            store.data[P][key] = orjson.dumps(decode_journal(raw).leads)
            continue
        mine = [t for t in first.transition_records if t["lead_id"].encode() == key]
        store.data[P][key] = _previous_layout(raw, mine)
        assert split_record(store.data[P][key])[2] == split_record(raw)[2]
        upgraded += 1
    assert upgraded == len({e["lead_id"] for e in events})

    restarted = make(store, committed, clock)
    again = run(restarted, store, inputs_of(events), caught_up=False)
    assert again.stepped == 0 and again.skipped == len(events)
    assert sorted(again.actions) == sorted(first.actions)  # the exact bytes sent the first time
    assert sorted(again.transitions) == sorted(first.transitions)
    lead = events[0]["lead_id"]
    rec = restarted.peek(P, lead)
    assert rec is not None
    mine = [t for t in first.transition_records if t["lead_id"] == lead]
    shown = ("from_program", "from_state", "to_program", "to_state", "reason", "caused_by", "at")
    assert [h.view() for h in rec.history] == [{k: t[k] for k in shown} for t in mine]
    raw = store.get(P, lead.encode())
    assert raw is not None and raw[:2] == b"N3"  # rewritten (a skipped input's lead is)


def test_the_journal_keeps_the_outputs_as_sent_and_the_record_only_state_and_history() -> None:
    """No JSON inside JSON, no outputs in the lead's record: the batch's journal value holds
    the bytes that were sent; the lead record its state, applied offsets and a compact
    history (what the lead view shows, no signals)."""
    events = leads(5, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    batch = inputs_of(events)
    result = run(make(store, committed, clock), store, batch, caught_up=False)
    lead = events[0]["lead_id"]
    raw = store.get(P, lead.encode())
    assert raw is not None
    _state, applied, outbox, history = split_record(raw)
    assert applied and not outbox
    assert history and all(b"signals" not in orjson.dumps(h.view()) for h in history)
    value = store.get(P, journal_key(P, f"{TOPIC}:{batch[-1].offset}"))
    assert value is not None
    entry = decode_journal(value)
    assert entry.outputs is not None and lead in entry.leads
    mine = [o for o in entry.outputs if o.lead_id == lead]
    sent = [v for k, v in result.transitions if k == lead.encode()]
    assert sent and [v for o in mine for v in o.transitions] == sent  # as sent
    assert b'\\"' not in value


def test_outputs_too_large_for_the_journal_wait_in_the_outboxes_and_are_resent() -> None:
    """A lead whose outputs of a batch alone exceed journal_outputs_max keeps them in its
    outbox (the journal lists the lead only); a re-delivery re-sends them from there."""
    events = leads(20, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)

    def small(store: DictStore) -> LeadProcessor:
        return LeadProcessor(CONFIG, store, committed=committed, clock=clock, journal_outputs_max=1)

    batch = inputs_of(events)
    first = run(small(store), store, batch, caught_up=False)
    value = store.get(P, journal_key(P, f"{TOPIC}:{batch[-1].offset}"))
    assert value is not None and decode_journal(value).outputs == []
    lead = events[0]["lead_id"]
    raw = store.get(P, lead.encode())
    assert raw is not None and split_record(raw)[2], "the lead's outputs wait in its outbox"
    again = run(small(store), store, batch, caught_up=False)
    assert again.stepped == 0 and again.replayed == len(first.actions) + len(first.transitions)
    assert sorted(again.actions) == sorted(first.actions)
    assert sorted(again.transitions) == sorted(first.transitions)


def test_a_batch_with_many_outputs_journals_them_in_parts_resent_and_deleted_together() -> None:
    """Outputs over journal_outputs_max per value go to further parts of the anchor (a value
    is a changelog record: Kafka's message size limit); a re-delivery re-sends all of them;
    once committed, the first value and every part are deleted."""
    events = leads(40, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)

    def chunked(store: DictStore) -> LeadProcessor:
        return LeadProcessor(
            CONFIG, store, committed=committed, clock=clock, journal_outputs_max=3000
        )

    batch = inputs_of(events)
    first = run(chunked(store), store, batch, caught_up=False)
    anchor = f"{TOPIC}:{batch[-1].offset}"
    value = store.get(P, journal_key(P, anchor))
    assert value is not None
    parts = decode_journal(value).parts
    assert parts >= 2
    for i in range(1, parts + 1):
        more = store.get(P, journal_key(P, anchor, i))
        assert more is not None and len(more) <= 3000 + 200  # outputs plus framing
    again = run(chunked(store), store, batch, caught_up=False)
    assert again.stepped == 0 and again.replayed == len(first.actions) + len(first.transitions)
    assert sorted(again.actions) == sorted(first.actions)
    assert sorted(again.transitions) == sorted(first.transitions)
    committed.offsets[(TOPIC, P)] = batch[-1].offset + 1
    later = [dict(events[0], event_id="later", occurred_at=events[-1]["occurred_at"])]
    run(chunked(store), store, inputs_of(later, start=len(batch)), caught_up=False)
    assert not [k for k in store.data[P] if k.startswith(journal_key(P, anchor))]


def test_an_anchor_redelivered_as_the_anchor_of_a_batch_with_new_outputs_keeps_both() -> None:
    """Crash, re-delivery of the last input alone with the clock past the leads' checkpoint
    (caught up): the batch re-sends the first outputs and fires timers under the same anchor.
    A second crash re-sends both."""
    due = T0 + 48 * HOUR_MS
    events = leads(10, due)
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    batch = inputs_of(events)
    first = run(make(store, committed, clock), store, batch, caught_up=False)
    clock.now = due + HOUR_MS
    second = run(make(store, committed, clock), store, batch[-1:], caught_up=True)
    assert second.replayed == len(first.actions) + len(first.transitions)
    fired = [a for a in second.actions if a not in first.actions]
    assert second.fired_lags_ms and fired, "the checkpoints fired in the re-delivered batch"
    third = run(make(store, committed, clock), store, batch[-1:], caught_up=True)
    assert third.stepped == 0
    assert sorted(third.actions) == sorted(second.actions)
    assert sorted(third.transitions) == sorted(second.transitions)


def test_committed_anchors_leave_the_outbox_and_the_journal() -> None:
    events = leads(10, T0 + 48 * HOUR_MS)
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    proc = make(store, committed, clock)
    batch = inputs_of(events)
    run(proc, store, batch, caught_up=False)
    lead = events[0]["lead_id"]
    waiting = store.get(P, journal_key(P, f"{TOPIC}:{batch[-1].offset}"))
    assert waiting is not None, "the lead's outputs wait in the journal"
    assert lead in decode_journal(waiting).leads

    committed.offsets[(TOPIC, P)] = batch[-1].offset + 1  # the consumer committed past it
    more = [dict(events[0], event_id="later", occurred_at=events[-1]["occurred_at"])]
    run(proc, store, inputs_of(more, start=len(batch)), caught_up=False)
    raw = store.get(P, lead.encode())
    assert raw is not None
    assert all(entry.offset >= len(batch) for entry in split_record(raw)[2])
    assert store.get(P, journal_key(P, f"{TOPIC}:{batch[-1].offset}")) is None
    # a (hypothetical) re-delivery of the committed anchor now re-sends nothing
    again = run(make(store, committed, clock), store, batch[-1:], caught_up=False)
    assert again.replayed == 0


def test_timers_fire_on_stream_time_not_on_the_wall_clock_while_behind() -> None:
    due = T0 + 48 * HOUR_MS
    events = leads(10, due)
    store, committed = DictStore(), Committed()
    clock = Clock(due + 10 * HOUR_MS)  # the wall clock is past every checkpoint
    proc = make(store, committed, clock)
    behind = run(proc, store, inputs_of(events), caught_up=False)
    assert behind.fired_lags_ms == [], "behind: stream time is the events' time"
    pending = proc.pending_timers()
    assert pending > 5
    tick = run(proc, store, [Input("ticks", 0)], caught_up=True)
    assert len(tick.fired_lags_ms) >= pending, "caught up: stream time is the wall clock"
    _tr, want_ac = core_outputs(events, until=clock.now)
    got = sorted(orjson.dumps(a) for a in actions_of(behind) + actions_of(tick))
    assert got == sorted(orjson.dumps(a) for a in want_ac)


def test_a_redelivered_tick_resends_its_timer_outputs_once() -> None:
    due = T0 + 48 * HOUR_MS
    events = leads(15, due)
    store, committed, clock = DictStore(), Committed(), Clock(due + 2 * HOUR_MS)
    proc = make(store, committed, clock)
    run(proc, store, inputs_of(events), caught_up=False)
    committed.offsets[(TOPIC, P)] = len(events)  # the events are committed
    tick = [Input("ticks", 7)]
    fired = run(proc, store, tick, caught_up=True)
    assert fired.actions and fired.fired_lags_ms

    restarted = make(store, committed, clock)  # crash before the tick's offset was committed
    again = run(restarted, store, tick, caught_up=True)
    assert again.fired_lags_ms == [], "the timers fired once"
    assert sorted(again.actions) == sorted(fired.actions)
    assert again.replayed == len(fired.actions) + len(fired.transitions)


@dataclass(frozen=True)
class CountState:
    n: int
    timers: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Note:
    n: int

    def to_record(self) -> dict[str, Any]:
        return {"action_id": f"note-{self.n}", "n": self.n}


def counting_step(state: CountState | None, inp: Any, config: Any) -> Any:
    """A stand-in core: every input is a new state and one action."""
    n = 1 if state is None else state.n + 1
    return SimpleNamespace(state=CountState(n), transitions=[], actions=[Note(n)], timers=())


def test_the_outbox_keeps_at_most_the_cap_of_uncommitted_batches() -> None:
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    proc = LeadProcessor(
        CONFIG,
        store,
        committed=committed,
        clock=clock,
        journal_outputs_max=0,  # every batch's outputs to the outbox
        step=counting_step,
        encode=lambda st: str(st.n).encode(),
        decode=lambda raw: CountState(int(raw)),
    )
    event = leads(1, T0 + 48 * HOUR_MS)[0]
    for i in range(OUTBOX_CAP + 20):  # every batch has an output; none is committed
        result = run(proc, store, inputs_of([dict(event, event_id=f"e{i}")], start=i), False)
        assert result.stepped == 1 and len(result.actions) == 1
    raw = store.get(P, event["lead_id"].encode())
    assert raw is not None
    outbox = split_record(raw)[2]
    assert len(outbox) == OUTBOX_CAP
    assert outbox[-1].offset == OUTBOX_CAP + 19  # the newest are kept


def test_a_batch_needs_an_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        make(DictStore(), Committed(), Clock(T0)).process(P, [], caught_up=True)


# --- the event-time merge ------------------------------------------------------------------


def fill(merge: PartitionMerge, topic: str, times: list[int]) -> None:
    for i, at in enumerate(times):
        merge.push(topic, Slot(at, i, (topic, at)))


def test_the_merge_takes_heads_in_event_time_across_topics() -> None:
    merge = PartitionMerge(["a", "b", "c"])
    fill(merge, "a", [1, 5, 9])
    fill(merge, "b", [2, 3, 10])
    fill(merge, "c", [4])
    got = merge.take(100, lambda t: False, now=0.0, max_idle=1.0)
    assert [s.at for s in got] == [1, 2, 3, 4, 5, 9, 10]


def test_the_merge_holds_while_a_topic_has_unread_data_then_gives_up_after_the_bound() -> None:
    merge = PartitionMerge(["a", "b"])
    fill(merge, "a", [5, 6])
    unread = {"b"}
    assert merge.take(100, lambda t: t in unread, now=10.0, max_idle=1.0) == []
    assert merge.take(100, lambda t: t in unread, now=10.5, max_idle=1.0) == []
    assert merge.idle_timeouts == 0
    got = merge.take(100, lambda t: t in unread, now=11.0, max_idle=1.0)
    assert [s.at for s in got] == [5, 6] and merge.idle_timeouts == 1
    # once b delivers, the merge waits for it again
    fill(merge, "a", [7])
    fill(merge, "b", [3])
    got = merge.take(100, lambda t: False, now=11.1, max_idle=1.0)
    assert [s.at for s in got] == [3, 7]


def test_the_merge_does_not_wait_for_a_topic_with_nothing_left_to_read() -> None:
    merge = PartitionMerge(["a", "b"])
    fill(merge, "a", [5, 6])
    got = merge.take(1, lambda t: False, now=0.0, max_idle=1.0)
    assert [s.at for s in got] == [5]
    assert not merge.caught_up(lambda t: False)
    assert [s.at for s in merge.take(10, lambda t: False, 0.0, 1.0)] == [6]
    assert merge.caught_up(lambda t: False) and not merge.caught_up(lambda t: t == "b")


def test_an_input_behind_the_partitions_stream_time_is_counted_late() -> None:
    events = sorted(leads(6, T0 + 48 * HOUR_MS), key=lambda e: e["occurred_at"])
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    proc = make(store, committed, clock)
    batch = inputs_of(events)
    in_order = run(proc, store, batch[:-2], caught_up=False)
    assert in_order.late == 0 and in_order.late_first is None
    # the last event first, then the one before it: that one is behind the stream time
    late = run(proc, store, [batch[-1], batch[-2]], caught_up=False)
    assert batch[-2].event is not None and batch[-1].event is not None
    assert batch[-2].event.at < batch[-1].event.at
    assert late.late == 1
    assert late.late_first == (TOPIC, batch[-2].offset, batch[-2].event.at, batch[-1].event.at)


def test_a_redelivered_input_behind_the_stream_time_is_not_counted_late() -> None:
    events = sorted(leads(4, T0 + 48 * HOUR_MS), key=lambda e: e["occurred_at"])
    store, committed, clock = DictStore(), Committed(), Clock(T0)
    proc = make(store, committed, clock)
    batch = inputs_of(events)
    run(proc, store, batch, caught_up=False)
    again = run(proc, store, batch[:2], caught_up=False)  # delivered again after a restart
    assert again.skipped == 2 and again.late == 0
