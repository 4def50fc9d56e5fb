"""The Faust side of the worker: batches per partition, in event time, under Faust.

Faust keeps the consumer group, the assignment, table recovery, standbys, the web server and
the lifecycle. Messages of the input topics and of the internal tick topic reach
:class:`LeadRunner` through :class:`stream.runtime.intake.BatchTopic` (no per-message stream
iteration). One task, :meth:`LeadRunner.run`, then loops over the partitions this worker owns:

1. take up to ``batch_size`` buffered messages of the partition, merged in event time
   (:class:`stream.runtime.merge.PartitionMerge`: heads of the input topics by
   ``occurred_at``, holding while another input topic of the partition has unread data, for
   at most ``max_task_idle_ms``);
2. step them with :class:`stream.runtime.processor.LeadProcessor` (timers fire on the
   partition's stream time, inline with the batch);
3. write each touched lead once (one RocksDB ``WriteBatch``), queue the changelog records and
   the outputs together (:class:`stream.runtime.sender.Sender`);
4. ack the batch's messages. Faust commits acked offsets, after flushing the producer.

A partition with nothing to read but a timer due on the wall clock gets a tick (a message to
its partition of ``<app_id>-timer-ticks``): the tick is the input that anchors the timer
outputs for the outbox (:mod:`stream.runtime.processor`).

Another keyed state (accounts) can run its own :class:`LeadRunner`-style loop over its own
topics and table: the loop depends on the processor only through ``prepare``/``process``/
``forget_partitions`` and :class:`stream.runtime.batch.BatchResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from stream.runtime.batch import NO_TIME, BatchResult, Input, now_ms
from stream.runtime.counters import RuntimeCounters
from stream.runtime.intake import BatchTopic, Intake, unread_on_broker
from stream.runtime.late import LateLog
from stream.runtime.merge import PartitionMerge, Slot
from stream.runtime.observe import observe_lead_batch
from stream.runtime.outgoing import batch_records
from stream.runtime.processor import LeadProcessor
from stream.runtime.sender import Sender, last_offset
from stream.runtime.stall import StallWatch, log_partition_state
from stream.runtime.trace import BatchTrace, open_trace
from stream.runtime.trace import now as trace_now
from topics.parse import InvalidEvent, parse_event

if TYPE_CHECKING:
    import faust

    from stream.metrics import Metrics
    from stream.runtime.account_merge import Progress
    from stream.runtime.record import LeadRecord
    from stream.runtime.tablestore import TableStore
    from stream.settings import Settings

log = logging.getLogger("nurture.worker")

BUFFER_HIGH = 4096  # buffered messages of one topic partition that pause its fetching
BUFFER_LOW = 1024  # ... and resume it


def tick_topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-timer-ticks"


class Parsed:
    """A buffered input: the Faust message and its event, or why it is invalid."""

    __slots__ = ("delivered", "error", "event", "message")

    def __init__(
        self, message: Any, event: Any, error: InvalidEvent | None, delivered: float = 0.0
    ) -> None:
        self.message = message
        self.event = event
        self.error = error
        self.delivered = delivered  # wall-clock ms, only when tracing (stream.runtime.trace)


class LeadRunner:
    """Buffers, merges and processes the input of the partitions this worker owns."""

    # its records are leads: a partition's nurture_leads share is rebuilt from them on assignment
    counts_occupancy = True

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        processor: LeadProcessor,
        store: TableStore,
        metrics: Metrics | None,
        *,
        inputs: tuple[str, ...] | None = None,
        tick_topic: str | None = None,
        counters: RuntimeCounters | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.processor = processor
        self.store = store
        self.metrics = metrics
        # the input topics in merge order (equal event times: CRM records, a lead's creation,
        # before product events before email events)
        self.merge_order = inputs or (
            settings.topic_crm_events,
            settings.topic_product_events,
            settings.topic_email_events,
        )
        self.input_topics = tuple(self.merge_order)
        self.tick_topic = tick_topic or tick_topic_name(settings)
        self.account_topic: str | None = None  # set: forward account events (runtime.accounts)
        self.progress: Progress | None = None  # set with it: progress markers to that topic
        self.batch_size = settings.batch_size
        self.linger = settings.batch_linger_ms / 1000.0
        self.max_idle = settings.max_task_idle_ms / 1000.0
        self.sender = Sender(lambda: app.producer._ensure_producer())  # type: ignore[attr-defined]
        self.merges: dict[int, PartitionMerge] = {}
        self.ticks: dict[int, list[Any]] = {}
        self.received: dict[tuple[str, int], int] = {}  # last offset buffered per topic partition
        self.paused: dict[tuple[str, int], Any] = {}  # resume callbacks of paused partitions
        self.tick_outstanding: dict[int, float] = {}  # partition -> monotonic time sent
        self.intake = Intake(self.deliver)
        self.wake = asyncio.Event()
        self.lock = asyncio.Lock()
        self.events_processed = 0
        self.dead_lettered = 0
        self.timers_fired = 0
        self.duplicates_resent = 0
        self.forwarded = 0
        self.batches = 0
        self.idle_timeouts = 0
        self._logged = 0.0
        self.busy_s = 0.0  # time spent in batch rounds (see idle_clock)
        self.counters = counters  # the runtime series (one set per registry: the lead runner's)
        self.late = LateLog(counters)  # input behind its partition's stream time
        self.stall_watch = StallWatch(lambda: app.consumer)  # logs input that is not delivered
        self.trace_out = open_trace(settings.trace_latency_file)
        self._owned_for: object = None  # the assignor's assignment that _owned was computed for
        self._owned: list[int] = []
        self.round_began = 0.0  # wall-clock ms of the current round (tracing only)

    def topic(self) -> BatchTopic:
        """The Faust topic over the input topics and the tick topic, delivering to us."""
        n = self.settings.topic_partitions
        return BatchTopic(
            self.app,
            topics=[*self.input_topics, self.tick_topic],
            partitions=n,
            key_serializer="raw",
            value_serializer="raw",
            intake=self.intake,
        )

    # --- intake (called by Faust's conductor for every message) ------------------------------
    def deliver(self, value: Any, on_high: Any, on_drop: Any) -> None:
        # Faust's compiled (Cython) conductor delivers an Event, the Python one our decode
        message = getattr(value, "message", value)
        topic, partition = message.topic, message.partition
        if topic == self.tick_topic:
            ticks = self.ticks.setdefault(partition, [])
            while ticks and ticks[-1].offset >= message.offset:
                ticks.pop()  # delivered again after a seek back: keep one copy
            ticks.append(message)
            self.wake.set()
            return
        event, error = self.parse(message)
        merge = self.merges.get(partition)
        if merge is None:
            merge = self.merges[partition] = self.new_merge()
        at = NO_TIME if event is None else event.at
        parsed = Parsed(message, event, error)
        if self.trace_out is not None:
            parsed.delivered = trace_now()
        n = merge.push(topic, Slot(at, message.offset, parsed))
        tp = (topic, partition)
        self.received[tp] = message.offset
        if n >= BUFFER_HIGH and tp not in self.paused:
            self.paused[tp] = on_drop
            on_high()
        self.wake.set()

    def new_merge(self) -> Any:
        """The buffers and event-time merge of one partition (PartitionMerge's interface)."""
        return PartitionMerge(self.merge_order)

    def parse(self, message: Any) -> tuple[Any, InvalidEvent | None]:
        """(the processor's input, None) or (None, why the message is invalid)."""
        raw = message.value
        if raw is None:
            return None, InvalidEvent("empty_value", "tombstone / null value")
        try:
            return parse_event(raw, message.key, key_required=True), None
        except InvalidEvent as exc:
            return None, exc

    def _clear(self) -> None:
        """Drop everything buffered (partitions revoked): Faust seeks the partitions it assigns
        next to their committed offsets before it delivers them again."""
        for merge in self.merges.values():
            merge.clear()
        self.ticks.clear()
        self.received.clear()
        self.paused.clear()

    # --- the loop ----------------------------------------------------------------------------
    def _ready(self) -> bool:
        app: Any = self.app
        return bool(
            app.flow_control.is_active()
            and not app.rebalancing
            and app.tables.recovery.completed.is_set()
        )

    def owned_partitions(self) -> list[int]:
        """The input partitions assigned to this worker, computed once per assignment (the
        assignor's set comprehension every round was 1.5% of a paced profile): Faust's
        assignor replaces its ``_assignment`` object at every rebalance."""
        assignor: Any = self.app.assignor
        assignment = getattr(assignor, "_assignment", None)
        if assignment is not None and assignment is self._owned_for:
            return self._owned
        topics = set(self.input_topics)
        owned = sorted({tp.partition for tp in assignor.assigned_actives() if tp.topic in topics})
        if assignment is not None:
            self._owned_for, self._owned = assignment, owned
        return owned

    async def run(self) -> None:
        """The worker's processing task (``app.task``)."""
        interval = self.settings.timer_tick_seconds
        while not self.app.should_stop:
            timeout = self._next_wakeup(interval)
            if not self.wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            if self.linger and self.buffered() < self.batch_size:
                await asyncio.sleep(self.linger)  # let the fetcher deliver more first
            self.wake.clear()
            if self.stall_watch.due():
                topics = self.input_topics
                owned = self.owned_partitions()
                self.stall_watch.look(topics, owned, self.received, self.paused)
            if not self._ready():
                continue
            async with self.lock:
                began = time.monotonic()
                try:
                    await self._round()
                except Exception:
                    log.exception("batch round failed")
                    raise
                finally:
                    self.busy_s += time.monotonic() - began

    def buffered(self) -> int:
        return sum(m.buffered() for m in self.merges.values())

    def idle_clock(self) -> float:
        """Seconds of the event loop not spent in batch rounds: what the event-time merge's
        bounded wait is measured in (while a long round runs, the fetcher cannot deliver, and
        that must not count as the waited-for topic being idle)."""
        return time.monotonic() - self.busy_s

    def _next_wakeup(self, interval: float) -> float:
        now = self.idle_clock()
        wait = interval
        for merge in self.merges.values():
            left = merge.hold_remaining(now, self.max_idle)
            if left is not None:
                wait = min(wait, left + 0.001)
        wall = now_ms()
        for p in self.processor.partitions():
            due = self.processor.earliest_due(p)
            if due is not None and p not in self.tick_outstanding:
                wait = min(wait, max(0.0, (due - wall) / 1000.0))
        return max(wait, 0.001)

    def _log_state(self, owned: list[int]) -> None:
        now = time.monotonic()
        if now - self._logged < 5.0 or not log.isEnabledFor(logging.DEBUG):
            return
        self._logged = now
        for p in owned:
            merge = self.merges.get(p)
            if merge is not None:
                unread = unread_on_broker(self.app.consumer, self.received, p)
                log_partition_state(log, p, merge, unread, self.processor)

    async def _round(self) -> None:
        if self.trace_out is not None:
            self.round_began = trace_now()
        owned = self.owned_partitions()
        self._log_state(owned)
        proc = self.processor
        m = self.metrics
        for p in owned:
            if not proc.prepared(p):
                count = m is not None and self.counts_occupancy
                programs: list[tuple[str | None, str | None]] | None = [] if count else None
                n = proc.prepare(p, programs)
                if m is not None and programs is not None:
                    m.rebuild_occupancy(p, programs)  # nurture_leads right after restarts
                log.info("partition %d ready: %d leads with pending timers", p, n)
        for p in owned:
            if not self._ready():
                return
            if await self._partition_round(p):
                # let the producer's sender and the consumer's drain run between partitions:
                # a round without awaits held the previous partitions' produce requests (and
                # so the account topic's input) and the next fetch's delivery until it ended
                await asyncio.sleep(0)
        if self.progress is not None:  # after the round: behind its forwards on every partition
            markers = self.progress.flush()
            if markers:
                await self.sender.send(markers)

    async def _partition_round(self, p: int) -> bool:
        """Take, step and queue a batch of partition ``p``; whether there was one."""
        merge = self.merges.get(p)
        if merge is None:
            merge = self.merges[p] = self.new_merge()
        unread = unread_on_broker(self.app.consumer, self.received, p)
        trace = None
        if self.trace_out is not None:
            trace = BatchTrace(self.trace_out, type(self).__name__, p, self.round_began)
        before = merge.idle_timeouts
        held_since = merge.held_since
        slots = merge.take(self.batch_size, unread, self.idle_clock(), self.max_idle)
        if trace is not None and held_since is not None and slots:
            trace.held = (self.idle_clock() - held_since) * 1000.0
        if merge.idle_timeouts != before:
            self.idle_timeouts += merge.idle_timeouts - before
            if self.counters is not None:
                self.counters.idle_timeouts.inc(merge.idle_timeouts - before)
            log.warning(
                "event-time merge of %s partition %d stopped waiting after %.1f s for %s "
                "(their later input is processed late)",
                self.input_topics[0],
                p,
                self.max_idle,
                sorted(merge.forced, key=str),
            )
        self._resume_fetching(p, merge)
        ticks = self.ticks.pop(p, None) or []
        if ticks:
            self.tick_outstanding.pop(p, None)
        caught_up = merge.caught_up(unread)
        if not slots and not ticks:
            if caught_up:
                await self._maybe_tick(p)
                if self.progress is not None:  # idle: tell the account topic how far we got
                    self.progress.note(p, self.processor.stream_time(p), idle=True)
            return False
        inputs = [Input(s.item.message.topic, s.offset, s.item.event) for s in slots]
        inputs += [Input(t.topic, t.offset) for t in ticks]
        messages = [s.item.message for s in slots] + ticks
        consumer: Any = self.app.consumer
        unacked = consumer._unacked_messages
        for m in messages:
            unacked.add(m)  # a rebalance waits for this batch (Consumer.wait_empty)
        result = self.processor.process(p, inputs, caught_up)
        if result.late:
            self.late.note(p, result)
        if result.writes:
            self.store.write(p, result.writes)
        if trace is not None:
            trace.processed = trace_now()
            trace.actions = len(result.actions)
            trace.inputs = [
                (s.item.message.timestamp * 1000.0, s.item.delivered) for s in slots if s.item.event
            ]
        await self._flush(p, result, slots, trace)
        ack = consumer.ack
        for m in messages:
            ack(m)
        self.batches += 1
        self._observe(result, slots)
        c = self.counters
        if c is not None:
            c.batches.inc()
            c.batch_inputs.inc(len(messages))
            if result.replayed:
                c.outbox_resent.inc(result.replayed)
            if result.skipped:
                c.redelivered_skipped.inc(result.skipped)
        if result.more_due or merge.buffered():
            self.wake.set()
        return True

    async def _flush(
        self, p: int, result: BatchResult, slots: list[Slot], trace: BatchTrace | None = None
    ) -> None:
        """Queue the batch's changelog records (its state is written) and outputs together."""
        store = self.store
        out = batch_records(
            p,
            result,
            slots,
            self.settings,
            store.changelog_topic,
            self.account_topic,
            self.progress,
        )
        self.forwarded += out.forwarded
        for reason in out.dead_letters:
            self.dead_lettered += 1
            if self.metrics is not None:
                self.metrics.dead_letter(reason)
        records = out.records
        if not records:
            return
        futures = await self.sender.send(records)
        if trace is not None:
            trace.queued = trace_now()
            trace.on_sent([f for futs in futures.values() for f, _n in futs])
        if result.writes:
            changelog_futures = futures.get((store.changelog_topic, p))
            if changelog_futures:
                self._on_changelog_sent(p, changelog_futures)

    def _on_changelog_sent(self, p: int, futures: list[Any]) -> None:
        store = self.store

        def done(_: Any) -> None:
            if all(f.done() for f, _n in futures):
                offset = last_offset(futures)
                if offset is not None:
                    store.set_persisted_offset(p, offset)

        futures[-1][0].add_done_callback(done)

    def _resume_fetching(self, p: int, merge: PartitionMerge) -> None:
        if not self.paused:
            return
        for topic, queue in merge.queues.items():
            tp = (topic, p)
            if tp in self.paused and len(queue) <= BUFFER_LOW:
                self.paused.pop(tp)()

    async def _maybe_tick(self, p: int) -> None:
        """A caught-up partition with a timer due on the wall clock and no input: send it a
        tick (its batch fires the timers), unless one is on its way."""
        due = self.processor.earliest_due(p)
        if due is None or due > now_ms():
            return
        now = time.monotonic()
        sent = self.tick_outstanding.get(p)
        if sent is not None and now - sent < 10 * self.settings.timer_tick_seconds:
            return
        self.tick_outstanding[p] = now
        value = orjson.dumps({"now": now_ms()})
        await self.sender.send([(self.tick_topic, p, None, value)])

    def peek(self, lead_id: str) -> LeadRecord | None:
        """A lead's record if its partition is on this worker (for the HTTP view)."""
        found = self.store.get_any(lead_id.encode())
        return None if found is None else self.processor.peek(found[0], lead_id)

    # --- metrics ------------------------------------------------------------------
    def _observe(self, result: BatchResult, slots: list[Slot]) -> None:
        self.duplicates_resent += result.replayed
        self.timers_fired += len(result.fired_lags_ms)
        self.events_processed += sum(1 for slot in slots if slot.item.event is not None)
        if self.metrics is not None:
            self.observe_series(self.metrics, result, slots)

    def observe_series(self, m: Metrics, result: BatchResult, slots: list[Slot]) -> None:
        """The lead series of a batch: inputs by type, latency, transitions, actions, timers."""
        observe_lead_batch(m, result, slots, self.processor.pending_timers())

    # --- rebalance ---------------------------------------------------------------------------
    async def on_revoked(self, partitions: set[int]) -> None:
        """Faust revokes every partition at a rebalance (eager protocol), after its flow is
        stopped (nothing is delivered until the partitions assigned next are sought to their
        committed offsets): the buffers are dropped here, and only here (see
        :mod:`stream.runtime.intake` for why not on Faust's flow-control resume)."""
        async with self.lock:  # a batch in flight finishes first
            self._clear()
            self._forget(partitions)

    async def on_assigned(self, partitions: set[int]) -> None:
        """Newly (re)assigned partitions lose cache, index and journal: another worker may have
        changed them; they are rebuilt from the recovered table before their first batch. (Their
        buffers are empty: dropped on revoke, and nothing is delivered before Faust's recovery
        resumes the stream partitions, which is after this signal.)"""
        async with self.lock:
            self._forget(partitions)

    def _forget(self, partitions: set[int]) -> None:
        self.processor.forget_partitions(partitions)
        if self.progress is not None:
            self.progress.forget(partitions)
        if self.metrics is not None:
            self.metrics.drop_occupancy(partitions)
        for p in partitions:
            self.tick_outstanding.pop(p, None)
            merge = self.merges.pop(p, None)
            if merge is not None:
                merge.clear()
            self.ticks.pop(p, None)
        for tp in [tp for tp in self.received if tp[1] in partitions]:
            del self.received[tp]
            self.paused.pop(tp, None)


LeadAgent = LeadRunner  # the name the web views use
