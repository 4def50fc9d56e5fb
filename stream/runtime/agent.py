"""The Faust side of the worker: one agent over the input topics and the tick topic.

Everything that changes a lead happens inside this agent's stream iteration (concurrency 1,
faust-streaming #606): input events, and timer firings, which arrive as ticks on an internal
topic co-partitioned with the inputs. A tick for partition ``p`` is processed in order with
``p``'s events, and its table writes land in changelog partition ``p`` with the lead's state.

The :class:`Ticker` (an ``app.timer`` task) sends a tick to each partition this worker owns as
soon as the partition's due index says a timer is due, at the latest every
``timer_tick_seconds``, and when a partition's due index is not loaded yet (after assignment;
the agent rebuilds it from the table on that tick, after table recovery).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from stream.runtime.accounts import account_key
from stream.runtime.processor import LeadProcessor, Outcome, now_ms
from topics.parse import InvalidEvent, dead_letter_record, parse_event

if TYPE_CHECKING:
    import faust

    from stream.metrics import Metrics
    from stream.settings import Settings

log = logging.getLogger("nurture.worker")

MAX_DEAD_LETTER_BYTES = 900_000  # stay under the broker's default 1 MB message limit
TICK_BATCH = 2000  # leads fired per tick; the rest go on the next (immediate) tick


def tick_topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-timer-ticks"


def _fit_dead_letter(record: bytes) -> bytes:
    """Keep a dead-letter record under the message size limit: drop the text copy first, then
    truncate the base64 original (flagged ``original_truncated``)."""
    if len(record) <= MAX_DEAD_LETTER_BYTES:
        return record
    doc = orjson.loads(record)
    doc["original_text"] = None
    encoded = orjson.dumps(doc)
    if len(encoded) > MAX_DEAD_LETTER_BYTES:
        doc["original"] = doc["original"][: MAX_DEAD_LETTER_BYTES // 2]
        doc["original_truncated"] = True
        encoded = orjson.dumps(doc)
    return encoded


class LeadAgent:
    """Processes one message at a time for the partitions this worker owns."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        processor: LeadProcessor,
        metrics: Metrics | None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.tick_topic = tick_topic_name(settings)
        self.input_topics = set(settings.input_topics)
        self.tick_outstanding: dict[int, float] = {}  # partition -> monotonic time sent
        self.index_loaded_event = 0  # count of index rebuilds (for tests/ops)
        self.events_processed = 0
        self.dead_lettered = 0
        self.timers_fired = 0
        self.duplicates_resent = 0
        self.eos = settings.processing_guarantee == "exactly_once"
        self.account_topic: str | None = None  # set: forward account events (runtime.accounts)
        self.forwarded = 0

    # --- the agent body ----------------------------------------------------------------------
    async def __call__(self, stream: Any) -> None:
        async for event in stream.events():
            await self.handle(event.message)

    async def handle(self, msg: Any) -> None:
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        if topic == self.tick_topic:
            await self._on_tick(topic, partition, offset)
            return
        raw, key = msg.value, msg.key
        if raw is None:
            await self._dead_letter(b"", key, "empty_value", "tombstone / null value", msg)
            return
        try:
            event = parse_event(raw, key, key_required=True)
        except InvalidEvent as exc:
            await self._dead_letter(raw, key, exc.reason, exc.detail, msg)
            return
        if self.account_topic is not None and (account := account_key(event)) is not None:
            await self.send(self.account_topic, account, raw, topic, partition)
            self.forwarded += 1
        try:
            self.ensure_index(partition)
            out = self.processor.on_event(event, topic, partition, offset)
        except Exception as exc:  # a core bug must not stop the worker: park the message
            log.exception("processing %s:%s:%s failed", topic, partition, offset)
            await self._dead_letter(raw, key, "processing_error", repr(exc)[:500], msg)
            return
        self.events_processed += 1
        await self._emit(key, out, topic, partition)
        m = self.metrics
        if m is not None:
            m.event_in(topic, event.type)
            if msg.timestamp:
                m.observe_latency(time.time() - msg.timestamp)
            self._observe(out)

    def ensure_index(self, partition: int) -> None:
        """Rebuild the partition's due index from the (recovered) table before the first input
        of the partition is processed after an assignment or a restart: an event must not
        create an empty index that hides the timers of the partition's other leads."""
        proc = self.processor
        if proc.due.loaded(partition):
            return
        table: Any = proc.store
        store = table.data
        db = store._db_for_partition(partition)
        n = proc.rebuild_index(partition, store._visible_items(db))
        self.index_loaded_event += 1
        log.info("timer index for partition %d rebuilt: %d leads with timers", partition, n)

    async def _on_tick(self, topic: str, partition: int, offset: int) -> None:
        self.tick_outstanding.pop(partition, None)
        proc = self.processor
        self.ensure_index(partition)
        out, more = proc.on_tick(topic, partition, offset, limit=TICK_BATCH)
        if more:
            self.tick_outstanding.pop(partition, None)  # let the ticker send the next at once
        self.timers_fired += len(out.fired_lags_ms)
        if out.transition_out or out.action_out:
            await self._emit(None, out, topic, partition)
        if self.metrics is not None:
            self._observe(out)

    # --- outputs -----------------------------------------------------------------------------
    async def send(
        self, topic: str, key: bytes | None, value: bytes, src_topic: str, src_partition: int
    ) -> None:
        """Send an output. At least once: the plain producer (flushed before every offset
        commit). Exactly once: the transactional producer of the *input* partition, so the
        output commits atomically with that partition's offsets and changelog writes."""
        if self.eos:
            app: Any = self.app
            group = app.assignor.group_for_topic(src_topic)
            tid = f"{app.conf.id}-{group}-{src_partition}"
            await app.consumer.transactions.producer.send(
                topic, key, value, None, None, None, transactional_id=tid
            )
        else:
            await self.app.producer.send(topic, key, value, None, None, None)

    async def _emit(self, key: bytes | None, out: Outcome, src: str, part: int) -> None:
        send = self.send
        s = self.settings
        self.duplicates_resent += out.replayed
        # all outputs of an event belong to its lead; a tick's outputs name theirs
        for value in out.transition_out:
            lead = key if key is not None else orjson.loads(value)["lead_id"].encode()
            await send(s.topic_transitions, lead, value, src, part)
        for value in out.action_out:
            lead = key if key is not None else orjson.loads(value)["lead_id"].encode()
            await send(s.topic_actions, lead, value, src, part)

    def _observe(self, out: Outcome) -> None:
        m = self.metrics
        assert m is not None
        for record in out.transition_records:
            m.observe_transition(record)
        for record in out.action_records:
            m.observe_action(record)
        for lag in out.fired_lags_ms:
            m.timer_fired(lag / 1000.0)

    async def _dead_letter(
        self, raw: bytes, key: bytes | None, reason: str, detail: str, msg: Any
    ) -> None:
        record = dead_letter_record(
            raw,
            key,
            reason,
            detail,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
        )
        await self.send(
            self.settings.topic_dead_letter,
            key,
            _fit_dead_letter(record),
            msg.topic,
            msg.partition,
        )
        self.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.dead_letter(reason)

    # --- rebalance ---------------------------------------------------------------------------
    def on_assigned(self, partitions: set[int]) -> None:
        """Partitions newly assigned (or re-assigned) lose their cache and due index: another
        worker may have changed them, and the index is rebuilt from the recovered table."""
        self.processor.forget_partitions(partitions)
        for p in partitions:
            self.tick_outstanding.pop(p, None)

    def on_revoked(self, partitions: set[int]) -> None:
        self.processor.forget_partitions(partitions)
        for p in partitions:
            self.tick_outstanding.pop(p, None)


class Ticker:
    """Sends ticks to the tick-topic partitions this worker actively owns."""

    def __init__(self, app: faust.App, agent: LeadAgent, settings: Settings) -> None:
        self.app = app
        self.agent = agent
        self.max_interval = settings.timer_tick_seconds
        self._last_sent: dict[int, float] = {}

    def owned_partitions(self) -> list[int]:
        topic = self.agent.tick_topic
        return sorted(
            tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic
        )

    async def tick(self) -> None:
        tables: Any = self.app.tables
        if self.app.rebalancing or not tables.recovery.completed.is_set():
            return
        agent = self.agent
        due = agent.processor.due
        now_wall = now_ms()
        now = time.monotonic()
        for p in self.owned_partitions():
            sent = agent.tick_outstanding.get(p)
            if sent is not None and now - sent < 10 * self.max_interval:
                continue  # the previous tick has not been processed yet
            if due.loaded(p):
                earliest = due.partition(p).earliest()
                idle = now - self._last_sent.get(p, 0.0) >= self.max_interval
                if not idle and (earliest is None or earliest > now_wall):
                    continue
            agent.tick_outstanding[p] = now
            self._last_sent[p] = now
            value = orjson.dumps({"now": now_wall})
            # ticks are not part of any transaction: visible at once, harmless if repeated
            producer = self.app.producer
            await producer.maybe_start()
            await producer.send(agent.tick_topic, None, value, p, None, None)
        m = agent.metrics
        if m is not None:
            m.set_pending_timers(due.pending())
