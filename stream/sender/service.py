"""The sender loop: read actions (read_committed), hold, deliver once, record, commit.

For each action record, in partition order:

1. not JSON / no ``action_id``: dead letter ``invalid_action``; not ``type == "send"``, or a
   channel outside ``sender_channels`` (default: email; sales and CSM tasks are for other
   consumers): ignored;
2. a delivered marker exists (:mod:`.store`): a duplicate (the worker's at-least-once re-send,
   or our own re-read after a crash); skipped. If its ``email.sent`` was not yet published, it
   is published now;
3. ``deliver_after`` in the future: held in the store, delivered by the hold loop when due,
   also after a restart;
4. otherwise rendered and delivered, retried with exponential backoff; after
   ``sender_max_attempts`` failures it goes to the dead-letter topic with the reason;
5. the delivered marker is written (a ``write(2)`` into RocksDB's log: it survives a SIGKILL
   of this process from then on), and ``email.sent`` {action_id, template}, keyed by lead_id,
   is queued for the email-events topic.

At the end of a partition's batch (up to 500 records) the sender publishes the batch's
``email.sent`` records and waits for their acks, flags them published, fsyncs the store's log
once (:meth:`DeliveryStore.sync`) and only then commits the batch's offsets. A SIGKILL between
a delivery and the commit makes Kafka hand the action out again; its marker, already in the
kernel's page cache, turns that copy into a skipped duplicate, which publishes the
``email.sent`` the batch did not get to (a kill inside the publish step can publish one twice,
with the same ``event_id``, which the engine processes once). The one gap left is between the
transport's accept and the marker write (microseconds, no I/O in between): there the receiver
sees the same ``Message-ID`` / ``Idempotency-Key`` (the action_id) twice. The fsync per batch,
not per delivery, only matters if the host itself goes down: then the batch in flight is
re-read and re-delivered (at most 500 duplicates), never lost, since its offsets were not
committed. A release from the hold loop is settled on its own.

One sender (one store) per consumer group: the markers are local, so two senders sharing a
group could each deliver a partition's record during a rebalance.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import ms_to_rfc3339, rfc3339_to_ms
from stream.sender.store import DeliveryStore, Held
from stream.sender.templates import TemplateError, Templates
from stream.sender.transports import Outbound, Transport, TransportError
from topics.parse import dead_letter_record

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from stream.settings import Settings

log = logging.getLogger("nurture.sender")
PRUNE_EVERY_S = 600.0


class SenderMetrics:
    """Prometheus series of one sender process (its own registry)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry: CollectorRegistry = CollectorRegistry()
        self.actions = Counter(
            "nurture_sender_actions",
            "actions read, by outcome: delivered, duplicate, held, ignored, dead_lettered",
            ["outcome"],
            registry=self.registry,
        )
        self.failures = Counter(
            "nurture_sender_attempt_failures",
            "failed delivery attempts (each retried or dead-lettered)",
            registry=self.registry,
        )
        self.syncs = Counter(
            "nurture_sender_store_syncs",
            "fsyncs of the delivery store's log (one per batch of records, before its commit)",
            registry=self.registry,
        )
        self.held = Gauge(
            "nurture_sender_held", "actions held until deliver_after", registry=self.registry
        )
        self.produce_retries = Counter(
            "nurture_sender_produce_retries",
            "produce rounds (email.sent, dead letters) retried after a Kafka error: a broker "
            "outage is waited out, the offsets stay uncommitted meanwhile",
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)


class Sender:
    def __init__(
        self,
        settings: Settings,
        templates: Templates,
        transport: Transport,
        *,
        metrics: SenderMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.s = settings
        self.templates = templates
        self.transport = transport
        self.metrics = metrics or SenderMetrics()
        self.clock = clock
        folder = settings.sender_data_dir or settings.data_dir / "sender"
        self.store = DeliveryStore(folder, settings.sender_retention_days)
        self.group = settings.sender_group or f"{settings.app_id}-sender"
        self.deliveries = 0
        self._heap: list[tuple[int, str, bytes]] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._producer: Any = None
        self._unsent: dict[str, tuple[bytes, bytes]] = {}  # action_id -> email.sent key, value

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.errors import CommitFailedError

        from stream.topics_admin import check_access_async

        await check_access_async(self.s)  # wrong credentials / TLS: a clear exit, not retries
        auth = self.s.kafka_auth()
        servers = self.s.kafka_bootstrap_servers
        self._producer = AIOKafkaProducer(
            bootstrap_servers=servers, acks="all", enable_idempotence=True, **auth
        )
        consumer = AIOKafkaConsumer(
            self.s.topic_actions,
            bootstrap_servers=servers,
            group_id=self.group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=15_000,
            heartbeat_interval_ms=3_000,
            **auth,
        )
        await start_clients(self._producer, consumer)
        for item in self.store.held():
            heapq.heappush(self._heap, (item.due, item.action_id, item.raw))
        self.metrics.held.set(len(self._heap))
        await self.transport.start()
        hold_loop = asyncio.create_task(self._hold_loop(stop), name="sender-holds")
        log.info(
            "sender ready: group %s, transport %s, %d held, %d templates",
            self.group,
            self.transport.name,
            len(self._heap),
            len(self.templates.names),
        )
        last_prune = 0.0
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=500)
                for tp, messages in batches.items():
                    for message in messages:
                        await self.handle(message.value, message.key, tp.partition, message.offset)
                    async with self._lock:
                        await self.settle()
                    # the position also steps over transaction markers after the last record
                    done = max(messages[-1].offset + 1, await consumer.position(tp))
                    try:
                        await consumer.commit({tp: done})
                    except CommitFailedError as exc:  # a rebalance: copies re-read are deduped
                        log.warning("offset commit failed (%s); re-read records are deduped", exc)
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    last_prune = time.monotonic()
                    pruned = self.store.prune(self.now_ms())
                    if pruned:
                        log.info("pruned %d delivery markers past retention", pruned)
        finally:
            hold_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hold_loop
            await consumer.stop()
            await self._producer.stop()
            await self.transport.close()
            self.store.close()

    # --- one record -----------------------------------------------------------------------
    async def handle(
        self, raw: bytes | None, key: bytes | None, partition: int, offset: int
    ) -> None:
        try:
            action = orjson.loads(raw or b"")
            action_id = str(action["action_id"])
            kind = action["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            await self._dead_letter(raw or b"", key, "invalid_action", repr(exc), partition, offset)
            return
        if kind != "send" or action.get("channel") not in self.s.sender_channels:
            self.metrics.actions.labels("ignored").inc()  # a task or in-app message: not ours
            return
        async with self._lock:
            if await self._seen(action, action_id):
                return
            due = _deliver_after(action)
            if due is not None and due > self.now_ms():
                assert raw is not None
                self.store.hold(action_id, due, raw)
                heapq.heappush(self._heap, (due, action_id, raw))
                self.metrics.held.set(len(self._heap))
                self.metrics.actions.labels("held").inc()
                self._wake.set()
                return
            await self._deliver(action, raw or b"", key, partition, offset)

    async def _seen(self, action: Mapping[str, Any], action_id: str) -> bool:
        marker = self.store.marker(action_id)
        if marker is None and not self.store.is_held(action_id):
            return False
        self.metrics.actions.labels("duplicate").inc()
        log.info("duplicate action %s skipped", action_id)
        if (
            marker is not None
            and marker.status == "delivered"
            and not marker.published
            and action_id not in self._unsent  # its email.sent goes out with this batch
        ):
            await self._publish_sent(action, marker.at)
        return True

    async def _deliver(
        self,
        action: Mapping[str, Any],
        raw: bytes,
        key: bytes | None,
        partition: int | None,
        offset: int | None,
    ) -> None:
        action_id = str(action["action_id"])
        template = str(action.get("template") or "")
        try:
            rendered = self.templates.render(template, action)
        except TemplateError as exc:
            await self._dead_letter(raw, key, "template_error", str(exc), partition, offset)
            self.store.mark(action_id, "dead_lettered", template, self.now_ms())
            return
        lead_id = str(action.get("lead_id"))
        outbound = Outbound(
            action_id=action_id,
            lead_id=lead_id,
            template=template,
            sender=self.s.sender_from,
            recipient=self.s.sender_recipient.format(lead_id=lead_id),
            subject=rendered.subject,
            body=rendered.body,
            action=action,
        )
        error = await self._attempt(outbound)
        if error is not None:
            detail = f"{self.s.sender_max_attempts} attempts over {self.transport.name}: {error}"
            await self._dead_letter(raw, key, "delivery_failed", detail, partition, offset)
            self.store.mark(action_id, "dead_lettered", template, self.now_ms())
            return
        at = self.now_ms()
        self.store.mark(action_id, "delivered", template, at)  # fsynced before the commit
        self.metrics.actions.labels("delivered").inc()
        self.deliveries += 1
        if self.s.sender_fault_kill_after and self.deliveries == self.s.sender_fault_kill_after:
            log.warning("fault injection: SIGKILL after delivering %s, before commit", action_id)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        await self._publish_sent(action, at)

    async def settle(self) -> None:
        """Publish the batch's ``email.sent`` records and wait for their acks, flag them
        published, and fsync the store's log: what the next offset commit may rely on."""
        unsent, self._unsent = self._unsent, {}
        if unsent:
            topic = self.s.topic_email_events
            await self._produce_acked([(topic, k, v) for k, v in unsent.values()])
            for action_id in unsent:
                self.store.mark_published(action_id)
        if self.store.sync():
            self.metrics.syncs.inc()

    async def _produce_acked(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Produce ``records`` and wait for their acks, waiting out a broker outage (a
        timeout, no leader, a refused connection) with the sender's backoff instead of exiting:
        the batch's offsets are committed only after this returns, so a retry can repeat a
        record (the same ``event_id``), never lose one. (In a full ``make chaos`` run the sender
        exited on a ``KafkaTimeoutError`` here while the broker restarted.)"""
        from aiokafka.errors import KafkaError

        delay = self.s.sender_backoff_seconds
        while True:
            try:
                futures = [await self._producer.send(t, v, key=k) for t, k, v in records]
                await asyncio.gather(*futures)
                return
            except KafkaError as exc:
                self.metrics.produce_retries.inc()
                log.warning(
                    "producing %d records failed (%s: %s); retrying in %.1f s",
                    len(records),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(max(2 * delay, 0.1), self.s.sender_backoff_max_seconds)

    async def _attempt(self, outbound: Outbound) -> TransportError | None:
        """Deliver with retries and exponential backoff; the last error if every try failed."""
        delay = self.s.sender_backoff_seconds
        error: TransportError | None = None
        for attempt in range(1, self.s.sender_max_attempts + 1):
            try:
                await self.transport.deliver(outbound)
                return None
            except TransportError as exc:
                error = exc
                self.metrics.failures.inc()
                log.warning("delivery of %s failed (try %d): %s", outbound.action_id, attempt, exc)
            if attempt < self.s.sender_max_attempts:
                await asyncio.sleep(min(delay, self.s.sender_backoff_max_seconds))
                delay *= 2
        return error

    # --- held actions ---------------------------------------------------------------------
    async def _hold_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.now_ms()
            if self._heap and self._heap[0][0] <= now:
                due, action_id, raw = heapq.heappop(self._heap)
                self.metrics.held.set(len(self._heap))
                await self.release(Held(due, action_id, raw))
                continue
            wait = (self._heap[0][0] - now) / 1000 if self._heap else 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 1.0))

    async def release(self, item: Held) -> None:
        async with self._lock:
            if self.store.marker(item.action_id) is not None:
                return
            action = orjson.loads(item.raw)
            key = str(action.get("lead_id")).encode()
            await self._deliver(action, item.raw, key, None, None)
            await self.settle()

    # --- outputs --------------------------------------------------------------------------
    async def _publish_sent(self, action: Mapping[str, Any], at_ms: int) -> None:
        """Queue ``email.sent`` for the batch's :meth:`settle`."""
        lead_id = str(action.get("lead_id"))
        event: dict[str, Any] = {
            "event_id": f"sent-{action['action_id']}",
            "type": "email.sent",
            "lead_id": lead_id,
            "occurred_at": ms_to_rfc3339(at_ms),
            "properties": {"action_id": action["action_id"], "template": action.get("template")},
        }
        if action.get("account_id"):
            event["account_id"] = action["account_id"]
        self._unsent[str(action["action_id"])] = (lead_id.encode(), orjson.dumps(event))

    async def _dead_letter(
        self,
        raw: bytes,
        key: bytes | None,
        reason: str,
        detail: str,
        partition: int | None,
        offset: int | None,
    ) -> None:
        log.error("dead letter (%s): %s", reason, detail)
        value = dead_letter_record(
            raw,
            key,
            reason,
            detail,
            topic=self.s.topic_actions,
            partition=partition,
            offset=offset,
            at=ms_to_rfc3339(self.now_ms()),
        )
        await self._send(self.s.topic_dead_letter, key, value)
        self.metrics.actions.labels("dead_lettered").inc()

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self._produce_acked([(topic, key, value)])


def _deliver_after(action: Mapping[str, Any]) -> int | None:
    value = action.get("deliver_after")
    if not value:
        return None
    try:
        return rfc3339_to_ms(str(value))
    except ValueError:
        return None  # unreadable: deliver now rather than never


async def start_clients(*clients: Any) -> None:
    """Start Kafka clients, turning an authentication or connection failure into a clear exit."""
    from aiokafka.errors import KafkaError

    for client in clients:
        try:
            await client.start()
        except KafkaError as exc:
            raise SystemExit(
                f"cannot connect to Kafka: {type(exc).__name__}: {exc} "
                "(check NURTURE_KAFKA_BOOTSTRAP_SERVERS, NURTURE_KAFKA_SECURITY_PROTOCOL, "
                "NURTURE_KAFKA_SASL_USERNAME / NURTURE_KAFKA_SASL_PASSWORD)"
            ) from None


def run_sender(settings: Settings) -> int:
    """``nurture sender``: check templates and settings, then run until SIGTERM / SIGINT."""
    from stream.core.config import load_config
    from stream.sender.transports import create_transport

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s",
    )
    rules = load_config(settings.rules_file)
    try:
        templates = Templates(rules, settings.sender_templates_dir)
    except TemplateError as exc:
        raise SystemExit(f"nurture sender: {exc}") from None
    metrics = SenderMetrics()
    if settings.sender_metrics_port:
        metrics.serve(settings.web_host, settings.sender_metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sender = Sender(settings, templates, create_transport(settings), metrics=metrics)
        await sender.run(stop)

    asyncio.run(main())
    return 0
