"""The report consumer: the pipeline report built from the worker's output topics, not its RAM.

``nurture report-consumer`` runs one :class:`ReportConsumer`: it reads every partition of
``nurture.transitions`` and ``nurture.actions`` (manual assignment, no consumer group), feeds
each record to a :class:`stream.report.pipeline.PipelineReport` whose per-lead facts live in
RocksDB (:class:`stream.report.store.RocksStore`), and after each fetched batch writes the
changed leads together with the offsets read (one ``WriteBatch``). A restart resumes from the
stored offsets with the facts that go with them; a lost data folder is rebuilt by re-reading
the topics from their beginning (as far as their retention reaches). The worker keeps nothing
of the report, so its memory does not grow with the leads, and one report covers every
partition whatever the number of workers.

HTTP (aiohttp, ``NURTURE_WEB_HOST`` : ``NURTURE_REPORT_PORT``, default 6067):

* ``GET /report``  the report JSON (:meth:`PipelineReport.to_dict`); bearer token if
  ``NURTURE_WEB_TOKEN`` is set;
* ``GET /metrics`` the ``nurture_pipeline_*`` series (:class:`stream.metrics.PipelineMetrics`),
  restored from the stored facts at start, so a restart does not reset them;
* ``GET /livez``, ``GET /readyz`` (200 once the topics were read up to their end offsets at
  start).

``nurture report --from-kafka`` uses the same class once: read to the end offsets, print.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from stream.report.pipeline import DEFAULT_WINDOW_DAYS, PipelineReport

if TYPE_CHECKING:
    from stream.metrics import PipelineMetrics
    from stream.report.store import RocksStore
    from stream.settings import Settings

log = logging.getLogger("nurture.report")

FETCH_MAX = 5000


class ReportConsumer:
    """Reads the transition and action topics into a report (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: RocksStore,
        *,
        metrics: PipelineMetrics | None = None,
        window_days: int = DEFAULT_WINDOW_DAYS,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.report = PipelineReport(window_days=window_days, metrics=metrics, store=store)
        self.transitions_topic = settings.topic_transitions
        self.actions_topic = settings.topic_actions
        self.offsets: dict[tuple[str, int], int] = {}
        self.targets: dict[tuple[str, int], int] = {}  # end offsets at start: ready when reached
        self.invalid = 0
        self.consumer: Any = None

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        s = self.settings
        self.offsets = self.store.offsets()
        counts = self.store.counts()
        self.report.transitions_seen, self.report.actions_seen = counts
        if self.metrics is not None:
            began = time.perf_counter()
            n = self.report.restore_metrics()
            took = time.perf_counter() - began
            log.info("pipeline series restored from %d leads in %.1fs", n, took)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **s.kafka_auth(),
        )
        await consumer.start()
        self.consumer = consumer
        # the consumer's public topics() fetches this too but keeps only the topic names
        cluster = await consumer._client.fetch_all_metadata()
        tps = []
        for topic in (self.transitions_topic, self.actions_topic):
            parts = cluster.partitions_for_topic(topic)
            if not parts:
                await consumer.stop()
                raise SystemExit(
                    f"topic {topic!r} does not exist on {s.kafka_bootstrap_servers}: "
                    "run `nurture topics create` (or start the worker) first"
                )
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        fresh = []
        for tp in tps:
            stored = self.offsets.get((tp.topic, tp.partition))
            if stored is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, stored)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        ends = await consumer.end_offsets(tps)
        self.targets = {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}
        log.info(
            "report consumer reading %d partitions (%d resumed from stored offsets)",
            len(tps),
            len(tps) - len(fresh),
        )

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    # --- reading -------------------------------------------------------------------------------
    def caught_up(self) -> bool:
        """Read everything that was on the topics when the consumer started."""
        return all(self.offsets.get(tp, 0) >= end for tp, end in self.targets.items())

    async def poll(self, timeout_ms: int = 500) -> int:
        """Fetch one batch, feed it to the report, and store it. Returns the records read."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=FETCH_MAX)
        n = 0
        report = self.report
        for tp, messages in batches.items():
            add = report.add_transition if tp.topic == self.transitions_topic else report.add_action
            for msg in messages:
                n += 1
                try:
                    record = orjson.loads(msg.value)
                    add(record)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.invalid += 1
                    log.warning("unreadable record %s:%d:%d", tp.topic, tp.partition, msg.offset)
        # the position, not the last offset + 1: transaction markers take offsets too
        for tp in self.consumer.assignment():
            self.offsets[(tp.topic, tp.partition)] = int(await self.consumer.position(tp))
        if n:
            self.store.flush(self.offsets, (report.transitions_seen, report.actions_seen))
        return n

    async def catch_up(self, timeout: float = 300.0) -> int:
        """Read until :meth:`caught_up` (the end offsets seen at start); returns records read."""
        deadline = time.monotonic() + timeout
        n = 0
        while not self.caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"report consumer not caught up after {timeout:.0f}s")
            n += await self.poll(200)
        return n

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()

    # --- HTTP ----------------------------------------------------------------------------------
    def web_app(self) -> Any:
        from aiohttp import web

        from stream.metrics import CONTENT_TYPE

        token = self.settings.web_token

        def authorized(request: web.Request) -> bool:
            if not token:
                return True
            header = request.headers.get("Authorization", "")
            return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())

        async def report(request: web.Request) -> web.Response:
            if not authorized(request):
                return web.json_response({"error": "unauthorized"}, status=401)
            body = orjson.dumps(self.report.to_dict())
            return web.Response(body=body, content_type="application/json")

        async def metrics(request: web.Request) -> web.Response:
            if self.metrics is None:
                return web.json_response({"error": "no metrics"}, status=404)
            return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        async def livez(request: web.Request) -> web.Response:
            return web.json_response({"status": "alive"})

        async def readyz(request: web.Request) -> web.Response:
            ready = self.consumer is not None and self.caught_up()
            status = "ready" if ready else "reading the topics up to their end at start"
            doc = {"ready": ready, "status": status}
            return web.json_response(doc, status=200 if ready else 503)

        app = web.Application()
        app.router.add_get("/report", report)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/livez", livez)
        app.router.add_get("/readyz", readyz)
        return app


async def serve(settings: Settings, store: RocksStore, host: str, port: int) -> None:
    """Run the report consumer and its HTTP server until SIGTERM/SIGINT."""
    import signal

    from aiohttp import web

    from stream.metrics import PipelineMetrics

    rc = ReportConsumer(settings, store, metrics=PipelineMetrics())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await rc.start()
    runner = web.AppRunner(rc.web_app())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("report consumer serving http://%s:%d/report", host, port)
    try:
        await rc.run(stop)
    finally:
        await runner.cleanup()
        await rc.stop()
        store.close()


async def read_once(settings: Settings, store: RocksStore, window_days: int) -> dict[str, Any]:
    """Read the topics up to their current end offsets into ``store``; the report."""
    rc = ReportConsumer(settings, store, window_days=window_days)
    await rc.start()
    try:
        await rc.catch_up()
    finally:
        await rc.stop()
    return rc.report.to_dict()
