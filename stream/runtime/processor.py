"""The per-lead processing logic of the worker, independent of Faust.

:class:`LeadProcessor` loads a lead's record (hot leads stay decoded in memory in front of the
table), runs the pure core over an input, fires the lead's due timers, writes the record back
and returns the encoded output records. The Faust agent (:mod:`stream.runtime.agent`) feeds it
messages and sends what it returns; the benchmark and unit tests drive it with a dict store.

Time model (the only clock reads of the product are here and in the ticker):

* For an event, ``clock = max(wall clock now, event.at)``. Before the event every pending timer
  of the lead with ``due <= clock`` fires (in due order); then the event is stepped; then timers
  the step scheduled at or before ``clock`` fire at once ("a checkpoint already in the past when
  its cause arrives fires at once"). This is the live analogue of replay's event-time watermark
  (:mod:`stream.offline.replay`): relative to its own events, a lead's timer never fires later
  than in replay. Live, a timer can fire earlier than in replay when the lead's events arrive late.
* A tick for a partition fires every timer of its leads with ``due <= wall clock now``.
* Fire-once lives in the core (a ``TimerFired`` for a timer no longer pending is a no-op) and
  re-delivered inputs are recognised by offset (:mod:`stream.runtime.record`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from stream.core.model import Event, TimerFired, Transition
from stream.runtime.record import (
    HISTORY_KEEP,
    OUTBOX_CAP,
    LeadRecord,
    encode_record,
    peek_next_due,
    split_record,
)
from stream.runtime.timers import DueIndex

if TYPE_CHECKING:
    from stream.core.config import RulesConfig

# a chain of timers whose firing schedules another already-due timer is bounded per input
MAX_TIMER_CHAIN = 64
TICK_KEY_PREFIX = "__tick__:"
INTERNAL_PREFIX = "__"


class StateStore(Protocol):
    """Where lead records live (a Faust table in the worker, a dict in tests)."""

    def get(self, key: str) -> bytes | None: ...

    def __setitem__(self, key: str, value: bytes) -> None: ...


# (topic, partition) -> committed offset (the next offset a restarted consumer reads) or None
Committed = Callable[[str, int], "int | None"]


@dataclass(slots=True)
class Outcome:
    """What processing one input produced; ``*_out`` are the encoded records to send."""

    transitions: list[Transition] = field(default_factory=list)
    transition_records: list[dict[str, Any]] = field(default_factory=list)
    transition_out: list[bytes] = field(default_factory=list)
    action_records: list[dict[str, Any]] = field(default_factory=list)
    action_out: list[bytes] = field(default_factory=list)
    fired_lags_ms: list[int] = field(default_factory=list)  # wall clock minus due, per timer
    replayed: int = 0  # outputs re-sent for a re-delivered input


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _never(topic: str, partition: int) -> int | None:
    return None


class LeadProcessor:
    """Runs the core for the leads of the partitions this worker owns."""

    def __init__(
        self,
        config: RulesConfig,
        store: StateStore,
        *,
        cache_size: int = 200_000,
        clock: Callable[[], int] = now_ms,
        committed: Committed = _never,
        step: Callable[..., Any] | None = None,
        encode: Callable[[Any], bytes] | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> None:
        from stream.core import engine, state

        self.config = config
        self.store = store
        self.clock = clock
        self.committed = committed
        self._step = step or engine.step
        self._encode = encode or state.encode_state
        self._decode = decode or state.decode_state
        self.cache_size = cache_size
        self._cache: dict[int, dict[str, LeadRecord]] = {}
        self.due = DueIndex()

    # --- cache and index lifecycle -----------------------------------------------------------
    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop the cache and due index of partitions revoked from (or newly given to) us."""
        for p in partitions:
            self._cache.pop(p, None)
            self.due.drop(p)

    def rebuild_index(self, partition: int, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Load the due index of ``partition`` from the table's ``(key, value)`` pairs."""

        def entries() -> Iterable[tuple[str, int]]:
            for key, raw in items:
                if key.startswith(b"__"):
                    continue
                due = peek_next_due(raw)
                if due is not None:
                    yield key.decode(), due

        self._cache.pop(partition, None)
        return self.due.load(partition, entries())

    # --- state access ------------------------------------------------------------------------
    def load(self, partition: int, lead_id: str) -> LeadRecord:
        cache = self._cache.get(partition)
        if cache is None:
            cache = self._cache[partition] = {}
        rec = cache.pop(lead_id, None)
        if rec is None:
            raw = self.store.get(lead_id)
            if raw is None:
                rec = LeadRecord(None)
            else:
                state_bytes, applied, outbox, history = split_record(raw)
                rec = LeadRecord(self._decode(state_bytes), applied, outbox, history)
        cache[lead_id] = rec  # (re)insert at the end: dict order is the LRU order
        return rec

    def _save(self, partition: int, lead_id: str, rec: LeadRecord) -> None:
        if rec.outbox:
            committed = self.committed
            keep = []
            for entry in rec.outbox:
                done = committed(entry[0], entry[1])
                if done is None or entry[2] >= done:
                    keep.append(entry)
            rec.outbox = keep[-OUTBOX_CAP:]
        st = rec.state
        self.store[lead_id] = encode_record(self._encode(st), rec, _next_due(st))
        cache = self._cache.setdefault(partition, {})
        cache[lead_id] = rec
        limit = max(1, self.cache_size // max(1, len(self._cache)))
        while len(cache) > limit:
            del cache[next(iter(cache))]

    # --- processing --------------------------------------------------------------------------
    def _fire_due(self, st: Any, lead_id: str, until: int, now: int, out: Outcome) -> Any:
        for _ in range(MAX_TIMER_CHAIN):
            if st is None or not st.timers:
                return st
            timer = min(st.timers)
            if timer.due > until:
                return st
            result = self._step(st, TimerFired(lead_id, timer.timer_id, timer.due), self.config)
            self._collect(result, out)
            out.fired_lags_ms.append(now - timer.due)
            if result.state is st:
                return st  # the core ignored it: do not spin
            st = result.state
        return st

    @staticmethod
    def _collect(result: Any, out: Outcome) -> None:
        for t in result.transitions:
            record = t.to_record()
            out.transitions.append(t)
            out.transition_records.append(record)
            out.transition_out.append(orjson.dumps(record))
        for a in result.actions:
            record = a.to_record()
            out.action_records.append(record)
            out.action_out.append(orjson.dumps(record))

    def _record_outputs(
        self, rec: LeadRecord, topic: str, partition: int, offset: int, out: Outcome
    ) -> None:
        rec.applied[f"{topic}:{partition}"] = offset
        if out.transition_records:
            rec.history = (rec.history + out.transition_records)[-HISTORY_KEEP:]
        trs, acs = out.transition_out, out.action_out
        if trs or acs:
            rec.outbox.append(
                [topic, partition, offset, [b.decode() for b in trs], [b.decode() for b in acs]]
            )

    @staticmethod
    def _replay_outbox(
        rec: LeadRecord, topic: str, partition: int, offset: int, out: Outcome
    ) -> None:
        for entry in rec.outbox:
            if entry[2] == offset and entry[1] == partition and entry[0] == topic:
                out.transition_out.extend(s.encode() for s in entry[3])
                out.action_out.extend(s.encode() for s in entry[4])
                out.replayed += len(entry[3]) + len(entry[4])

    def on_event(self, event: Event, topic: str, partition: int, offset: int) -> Outcome:
        out = Outcome()
        lead_id = event.lead_id
        rec = self.load(partition, lead_id)
        if offset <= rec.applied.get(f"{topic}:{partition}", -1):
            # a re-delivered input: re-send its outputs and re-write the record (under exactly
            # once the first attempt's changelog write may have been aborted with its outputs)
            self._replay_outbox(rec, topic, partition, offset, out)
            self._save(partition, lead_id, rec)
            return out
        now = self.clock()
        clock = max(now, event.at)
        before = rec.state
        st = self._fire_due(before, lead_id, clock, now, out)
        result = self._step(st, event, self.config)
        self._collect(result, out)
        st = self._fire_due(result.state, lead_id, clock, now, out)
        if st is not None and (st is not before or out.transition_out or out.action_out):
            rec.state = st
            self._record_outputs(rec, topic, partition, offset, out)
            self._save(partition, lead_id, rec)
            self.due.partition(partition).set(lead_id, _next_due(st))
        return out

    def on_tick(
        self, topic: str, partition: int, offset: int, now: int | None = None, limit: int = 2000
    ) -> tuple[Outcome, bool]:
        """Fire the partition's due timers. Returns the outcome and whether leads remain due."""
        out = Outcome()
        now = self.clock() if now is None else now
        tick_key = f"{TICK_KEY_PREFIX}{partition}"
        raw = self.store.get(tick_key)
        ticks: dict[str, Any] = orjson.loads(raw) if raw else {}
        touched = ticks.get(str(offset))
        if touched is not None:  # re-delivered tick: re-send what it produced
            self.store[tick_key] = raw  # type: ignore[assignment]
            for lead_id in touched:
                rec = self.load(partition, lead_id)
                self._replay_outbox(rec, topic, partition, offset, out)
                if rec.state is not None:
                    self._save(partition, lead_id, rec)
        part = self.due.partition(partition)
        due = part.pop_due(now, limit)
        if due:
            # the tick's lead list is written before the leads, so a replay finds them all
            done = self.committed(topic, partition)
            ticks = {k: v for k, v in ticks.items() if done is None or int(k) >= done}
            ticks[str(offset)] = [lead_id for lead_id, _ in due]
            self.store[tick_key] = orjson.dumps(ticks)
        for lead_id, _due in due:
            rec = self.load(partition, lead_id)
            n0 = len(out.transition_out)
            r0 = len(out.transition_records)
            a0 = len(out.action_out)
            st = self._fire_due(rec.state, lead_id, now, now, out)
            if st is not None and st is not rec.state:
                rec.state = st
                sub = Outcome(
                    transition_records=out.transition_records[r0:],
                    transition_out=out.transition_out[n0:],
                    action_out=out.action_out[a0:],
                )
                self._record_outputs(rec, topic, partition, offset, sub)
                self._save(partition, lead_id, rec)
            if st is not None:
                part.set(lead_id, _next_due(st))
        earliest = part.earliest()
        return out, earliest is not None and earliest <= now

    def peek(self, partition: int | None, lead_id: str) -> LeadRecord | None:
        """Read a lead's record without touching the LRU order (for the HTTP view)."""
        if partition is not None:
            rec = self._cache.get(partition, {}).get(lead_id)
            if rec is not None:
                return rec
        raw = self.store.get(lead_id)
        if raw is None:
            return None
        state_bytes, applied, outbox, history = split_record(raw)
        return LeadRecord(self._decode(state_bytes), applied, outbox, history)


def _next_due(st: Any) -> int | None:
    return min(t.due for t in st.timers) if st.timers else None
