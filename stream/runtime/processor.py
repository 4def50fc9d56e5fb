"""The per-lead batch logic of the worker, independent of Faust.

:class:`LeadProcessor` steps one batch of one partition's inputs (already merged in event time
by :mod:`stream.runtime.merge`) through the pure core, fires due timers on the partition's
stream time, and returns what to send and what to write: each touched lead is encoded once
per batch (one table write), outputs come back as one list. The runner
(:mod:`stream.runtime.agent`) writes, sends, and only then acks the batch's offsets. The
unit tests drive it with a dict store and an injected committed-offset function.

Time model (the only clock read of the product is ``clock``, for the caught-up case):

* Stream time of a partition = the largest ``occurred_at`` it has processed; once the
  partition has caught up with its input topics it is ``max(stream time, wall clock)``.
* Before an event is stepped, its lead's timers with ``due <= stream time`` fire (due order,
  chains included); after it, timers the step scheduled at or before stream time fire at once.
  This is replay's event-time watermark (:mod:`stream.offline.replay`) per partition.
* After the batch's events, every lead of the partition with a timer due by stream time fires
  (up to ``fire_limit`` leads per batch; the rest fire in the next batch): timers never wait
  behind a queue of input messages.

Delivery (at-least-once, see :mod:`stream.runtime.record`): every output of a batch is kept
under the batch's *anchor*, the (topic, offset) of the batch's last input, in the partition's
journal (table key ``__batch__:<p>:<anchor>``: the leads with outputs and those outputs; a
batch whose outputs exceed ``JOURNAL_OUTPUTS_MAX`` keeps them in its leads' outboxes instead).
The runner acks all inputs of a batch together after its outputs and writes are queued, and
Faust flushes the producer before it commits, so either every input of a batch is committed
with its outputs delivered, or the anchor is delivered again. A re-delivered anchor re-sends
its outputs (same ``action_id``) and writes its leads again; a re-delivered input whose offset
is ``<=`` its lead's applied offset is not stepped again. Journal and outbox entries are
dropped once the consumer has committed past their anchor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import TimerFired
from stream.core.state import peek_program
from stream.runtime.batch import (
    NO_TIME,
    BatchResult,
    Committed,
    Input,
    PartitionState,
    PartitionStore,
    Pending,
    never_committed,
    now_ms,
)
from stream.runtime.journal import (
    JOURNAL_OUTPUTS_MAX,
    LeadOutputs,
    decode_journal,
    journal_anchor,
    journal_deletes,
    journal_writes,
    read_outputs,
)
from stream.runtime.record import (
    HISTORY_KEEP,
    OUTBOX_CAP,
    LeadRecord,
    OutboxEntry,
    encode_record,
    history_entry,
    peek_next_due,
    peek_state_bytes,
    split_record,
)

if TYPE_CHECKING:
    from stream.core.config import RulesConfig

# a chain of timers whose firing schedules another already-due timer is bounded per input
MAX_TIMER_CHAIN = 64
INTERNAL_PREFIX = "__"


class LeadProcessor:
    """Runs the core over batches for the lead partitions this worker owns."""

    def __init__(
        self,
        config: RulesConfig,
        store: PartitionStore,
        *,
        cache_size: int = 200_000,
        clock: Callable[[], int] = now_ms,
        committed: Committed = never_committed,
        fire_limit: int = 2000,
        journal_outputs_max: int = JOURNAL_OUTPUTS_MAX,
        step: Callable[..., Any] | None = None,
        encode: Callable[[Any], bytes] | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> None:
        from stream.core import engine, state

        self.config = config
        self.store = store
        self.clock = clock
        self.committed = committed
        self.fire_limit = fire_limit
        self.journal_outputs_max = journal_outputs_max
        self._step = step or engine.step
        self._encode = encode or state.encode_state
        self._decode = decode or state.decode_state
        self.cache_size = cache_size
        self._parts: dict[int, PartitionState] = {}
        self.index_rebuilds = 0

    # --- partition lifecycle -----------------------------------------------------------------
    def prepared(self, partition: int) -> bool:
        return partition in self._parts

    def prepare(
        self, partition: int, programs: list[tuple[str | None, str | None]] | None = None
    ) -> int:
        """Load the partition's due index (from the record headers) and journal from the
        store; called before the partition's first batch after an assignment or a restart.
        With ``programs``, also appends each lead's ``(program, program_state)`` to it (for
        the ``nurture_leads`` gauge). Returns the number of leads with pending timers."""
        part = PartitionState()
        entries = []
        for key, value in self.store.items(partition):
            if key.startswith(b"__"):
                anchor = journal_anchor(key, partition)
                if anchor is not None:
                    entry = decode_journal(value)
                    part.journal[anchor] = entry.leads
                    if entry.parts:
                        part.journal_parts[anchor] = entry.parts
                    topic, _, offset = anchor.rpartition(":")
                    part.note_anchor(topic, int(offset))
                continue
            if programs is not None and value:
                # ValueError: not the core's codec (a test's injected codec): not counted
                with contextlib.suppress(ValueError):
                    programs.append(peek_program(peek_state_bytes(value)))
            due = peek_next_due(value)
            if due is not None:
                entries.append((key.decode(), due))
        part.due.load(entries)
        self._parts[partition] = part
        self.index_rebuilds += 1
        return len(part.due)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop cache, due index and journal of partitions revoked from (or newly given to) us."""
        for p in partitions:
            self._parts.pop(p, None)

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def pending_timers(self) -> int:
        return sum(len(p.due) for p in self._parts.values())

    def earliest_due(self, partition: int) -> int | None:
        part = self._parts.get(partition)
        return None if part is None else part.due.earliest()

    def stream_time(self, partition: int) -> int:
        part = self._parts.get(partition)
        return NO_TIME if part is None else part.stream_time

    def leads_cached(self) -> int:
        return sum(len(p.cache) for p in self._parts.values())

    # --- state access ------------------------------------------------------------------------
    def _load(self, part: PartitionState, partition: int, lead_id: str) -> LeadRecord:
        cache = part.cache
        rec = cache.pop(lead_id, None)
        if rec is None:
            raw = self.store.get(partition, lead_id.encode())
            if raw is None:
                rec = LeadRecord(None)
            else:
                state_bytes, applied, outbox, history = split_record(raw)
                rec = LeadRecord(self._decode(state_bytes), applied, outbox, history)
        cache[lead_id] = rec  # (re)insert at the end: dict order is the LRU order
        return rec

    def _trim_cache(self, part: PartitionState) -> None:
        cache = part.cache
        limit = max(1, self.cache_size // max(1, len(self._parts)))
        while len(cache) > limit:
            del cache[next(iter(cache))]

    def _live(self, topic: str, partition: int, offset: int) -> bool:
        """Whether an anchor at ``offset`` may still be delivered again (not committed past)."""
        done = self.committed(topic, partition)
        return done is None or offset >= done

    def _encode_record(self, partition: int, rec: LeadRecord) -> bytes:
        if rec.outbox:
            keep = [e for e in rec.outbox if self._live(e.topic, partition, e.offset)]
            rec.outbox = keep[-OUTBOX_CAP:]
        st = rec.state
        return encode_record(self._encode(st), rec, _next_due(st))

    # --- processing --------------------------------------------------------------------------
    def _fire_due(self, st: Any, lead_id: str, until: int, pending: Pending) -> Any:
        for _ in range(MAX_TIMER_CHAIN):
            if st is None:
                return st
            timers = st.timers  # (an account's is a property: read once)
            if not timers:
                return st
            timer = timers[0]  # both cores keep a state's timers sorted by due
            if timer.due > until:
                return st
            result = self._step(st, TimerFired(lead_id, timer.timer_id, timer.due), self.config)
            self._collect(result, pending)
            pending.lags.append(until - timer.due)
            if result.state is st:
                return st  # the core ignored it: do not spin
            st = result.state
        return st

    @staticmethod
    def _collect(result: Any, pending: Pending) -> None:
        for t in result.transitions:
            record = t.to_record()
            pending.transition_records.append(record)
            pending.transitions.append(orjson.dumps(record))
            pending.history.append(history_entry(t))
        for a in result.actions:
            record = a.to_record()
            pending.action_records.append(record)
            pending.actions.append(orjson.dumps(record))

    def _replay(
        self, part: PartitionState, partition: int, inp: Input, leads: list[str], res: BatchResult
    ) -> dict[str, LeadRecord]:
        touched = {}
        topic, offset = inp.topic, inp.offset
        for outputs in self._journal_outputs(partition, f"{topic}:{offset}"):
            _resend(res, outputs.lead_id, outputs.transitions, outputs.actions)
        for lead_id in leads:  # outputs kept in outboxes (too large, or an earlier layout)
            rec = self._load(part, partition, lead_id)
            for entry in rec.outbox:
                if entry.offset == offset and entry.partition == partition and entry.topic == topic:
                    _resend(res, lead_id, entry.transitions, entry.actions)
            touched[lead_id] = rec
        return touched

    def _journal_outputs(self, partition: int, anchor: str) -> list[LeadOutputs]:
        """The outputs kept in the journal value of ``anchor`` (read back from the store: only
        a re-delivered anchor needs them)."""
        store = self.store
        return read_outputs(lambda key: store.get(partition, key), partition, anchor)

    def process(self, partition: int, inputs: Sequence[Input], caught_up: bool) -> BatchResult:
        """Step one batch of ``partition`` (inputs in event-time order; at least one input,
        the batch's anchor is the last). ``caught_up``: no input of the partition is left
        unread, so stream time may advance to the wall clock."""
        if not inputs:
            raise ValueError("a batch needs at least one input (its anchor)")
        part = self._parts.get(partition)
        if part is None:
            self.prepare(partition)
            part = self._parts[partition]
        res = BatchResult(partition)
        dirty: dict[str, LeadRecord] = {}
        pending: dict[str, Pending] = {}
        journal = part.journal
        due = part.due
        step = self._step
        config = self.config
        st_time = part.stream_time
        anchors_upto = part.journal_topics
        applied_keys: dict[str, str] = {}  # topic -> "topic:partition"
        for inp in inputs:
            topic = inp.topic
            if journal and inp.offset <= anchors_upto.get(topic, -1):
                leads = journal.get(f"{topic}:{inp.offset}")
                if leads:  # a re-delivered anchor: re-send what its batch produced
                    dirty.update(self._replay(part, partition, inp, leads, res))
            event = inp.event
            if event is None:
                continue
            behind = st_time  # a stepped input earlier than this is late
            if event.at > st_time:
                st_time = event.at
            lead_id = event.lead_id
            rec = self._load(part, partition, lead_id)
            # a re-keyed copy (an account input) is applied once per origin offset
            origin: tuple[str, int] | None = getattr(event, "origin", None)
            if origin is None:
                applied_key = applied_keys.get(topic) or applied_keys.setdefault(
                    topic, f"{topic}:{partition}"
                )
                applied_at = inp.offset
            else:
                applied_key, applied_at = origin
            if applied_at <= rec.applied.get(applied_key, -1):
                res.skipped += 1
                dirty[lead_id] = rec  # written again: its first changelog write may be lost
                continue
            if event.at < behind:
                if not res.late:
                    res.late_first = (topic, inp.offset, event.at, behind)
                res.late += 1
            before = rec.state
            out = Pending()
            try:
                st = self._fire_due(before, lead_id, st_time, out)
                result = step(st, event, config)
                self._collect(result, out)
                st = self._fire_due(result.state, lead_id, st_time, out)
            except Exception as exc:  # a core bug must not stop the worker: park the input
                res.failed.append((inp, repr(exc)[:500]))
                continue
            if out.transitions or out.actions or out.lags:
                if lead_id in pending:
                    pending[lead_id].extend(out)
                else:
                    pending[lead_id] = out
            res.stepped += 1
            rec.applied[applied_key] = applied_at
            if st is not before:
                rec.state = st
                dirty[lead_id] = rec
                due.set(lead_id, _next_due(st))
        if caught_up:
            st_time = max(st_time, self.clock())
        part.stream_time = res.stream_time = st_time
        for lead_id, _due in due.pop_due(st_time, self.fire_limit):
            rec = self._load(part, partition, lead_id)
            fired = pending.get(lead_id)
            if fired is None:
                fired = pending[lead_id] = Pending()
            st = self._fire_due(rec.state, lead_id, st_time, fired)
            if st is not None and st is not rec.state:
                rec.state = st
                dirty[lead_id] = rec
            if st is not None:
                due.set(lead_id, _next_due(st))
        earliest = due.earliest()
        res.more_due = earliest is not None and earliest <= st_time
        self._record_outputs(part, partition, inputs[-1], pending, dirty, res)
        writes = res.writes
        for lead_id, rec in dirty.items():
            if rec.state is not None:
                writes[lead_id.encode()] = self._encode_record(partition, rec)
        self._trim_cache(part)
        return res

    def _record_outputs(
        self,
        part: PartitionState,
        partition: int,
        anchor: Input,
        pending: dict[str, Pending],
        dirty: dict[str, LeadRecord],
        res: BatchResult,
    ) -> None:
        """Journal the batch's outputs under the anchor (in its leads' outboxes if too large)."""
        journal = part.journal
        with_outputs = []
        kept: list[LeadOutputs] = []
        for lead_id, out in pending.items():
            res.fired_lags_ms += out.lags
            if not out.transitions and not out.actions:
                continue
            key = lead_id.encode()
            res.transitions += [(key, v) for v in out.transitions]
            res.actions += [(key, v) for v in out.actions]
            res.transition_records += out.transition_records
            res.action_records += out.action_records
            rec = part.cache[lead_id]
            if out.history:
                rec.history = (rec.history + out.history)[-HISTORY_KEEP:]
            kept.append(LeadOutputs(lead_id, out.transitions, out.actions))
            dirty[lead_id] = rec
            with_outputs.append(lead_id)
        if with_outputs:
            name = f"{anchor.topic}:{anchor.offset}"
            if name in journal:  # the anchor was re-delivered as this batch's anchor: keep both
                with_outputs = list(dict.fromkeys(journal[name] + with_outputs))
                kept = self._journal_outputs(partition, name) + kept
            writes, parts, spilled = journal_writes(
                partition,
                name,
                with_outputs,
                kept,
                self.journal_outputs_max,
                part.journal_parts.pop(name, 0),
            )
            for outputs in spilled:  # too large for a journal value: in the lead's outbox
                part.cache[outputs.lead_id].outbox.append(
                    OutboxEntry(
                        anchor.topic, partition, anchor.offset, outputs.transitions, outputs.actions
                    )
                )
            journal[name] = with_outputs
            if parts:
                part.journal_parts[name] = parts
            part.note_anchor(anchor.topic, anchor.offset)
            res.writes.update(writes)
        if journal:
            self._prune_journal(part, partition, res)

    def _prune_journal(self, part: PartitionState, partition: int, res: BatchResult) -> None:
        """Delete the journal entries of anchors the consumer has committed past (checked
        only when a committed offset moved)."""
        topics = sorted(part.journal_topics)  # not a pass over the journal per batch
        marks = tuple(self.committed(t, partition) for t in topics)
        if marks == part.pruned_at:
            return
        part.pruned_at = marks
        for anchor in list(part.journal):
            topic, _, offset = anchor.rpartition(":")
            if not self._live(topic, partition, int(offset)):
                del part.journal[anchor]
                parts = part.journal_parts.pop(anchor, 0)
                res.writes.update(journal_deletes(partition, anchor, parts))

    def peek(self, partition: int | None, lead_id: str) -> LeadRecord | None:
        """Read a record without touching the LRU order (for the HTTP views). ``partition``
        None: look in every partition this processor holds."""
        if partition is None:
            for p in list(self._parts):
                rec = self.peek(p, lead_id)
                if rec is not None:
                    return rec
            return None
        part = self._parts.get(partition)
        if part is not None:
            rec = part.cache.get(lead_id)
            if rec is not None:
                return rec
        raw = self.store.get(partition, lead_id.encode())
        if raw is None:
            return None
        state_bytes, applied, outbox, history = split_record(raw)
        return LeadRecord(self._decode(state_bytes), applied, outbox, history)


def _resend(res: BatchResult, lead_id: str, transitions: list[bytes], actions: list[bytes]) -> None:
    """Queue a lead's kept outputs of a re-delivered anchor again (as they were sent)."""
    key = lead_id.encode()
    res.transitions.extend((key, v) for v in transitions)
    res.actions.extend((key, v) for v in actions)
    res.replayed += len(transitions) + len(actions)


def _next_due(st: Any) -> int | None:
    """The earliest due time of a state's timers (both cores keep them sorted by due)."""
    timers = st.timers
    return timers[0].due if timers else None
