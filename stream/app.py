"""The Faust application factory. No app exists until :func:`create_app` is called.

``nurture worker`` (see :mod:`stream.commands.worker`) and ``faust -A stream.app worker`` run the
same app: ``stream.app.app`` is built lazily (PEP 562 module ``__getattr__``) from the
``NURTURE_*`` environment the first time it is asked for, never at import.

Topology (all topics co-partitioned, same partition count):

* agent ``nurture-leads`` (concurrency 1) over the three input topics and the internal tick topic
  ``<app_id>-timer-ticks``;
* table ``leads`` (RocksDB via rocksdict, changelog ``<app_id>-leads-changelog``): per lead, the
  core's encoded state plus delivery metadata (:mod:`stream.runtime.record`);
* outputs: actions, transitions, dead letters (keyed by lead_id / original key).

Delivery guarantee (``NURTURE_PROCESSING_GUARANTEE``, default ``at_least_once``):

* at_least_once: outputs and changelog writes are flushed before every offset commit (Faust
  flushes the producer before committing). After a crash, inputs after the last commit are
  delivered again; the lead's record remembers the highest input offset applied and keeps the
  outputs of uncommitted inputs (an outbox, :mod:`stream.runtime.record`), so a re-delivered
  input is never stepped twice and its outputs are sent again: nothing is lost, duplicates are
  possible and carry the same ``action_id``. Proven by tests/reliability/test_worker_crash.py
  (SIGKILLs while events stream and while timers fall due; deduplicated actions equal the core's).
* exactly_once (tried, not kept): outputs go through the transactional producer of the input
  partition, together with that partition's changelog writes and offsets. The end-to-end
  scenarios pass under it, but the SIGKILL test does not: after a restart, during the
  rebalance, Faust's producer buffer sends a changelog record outside a transaction
  (aiokafka ``IllegalOperation: Can't send messages while not in transaction``), the app
  crashes ("Cannot flush: Producer not Running") and stops processing (the faust-streaming
  transaction bugs #177/#323/#517). Re-run with
  ``NURTURE_TEST_PROCESSING_GUARANTEE=exactly_once pytest tests/reliability/test_worker_crash.py``.

What a consumer of nurture.actions must do either way: read with ``read_committed`` and
deduplicate on ``action_id`` (it is derived from the cause, so a replay or a re-send carries the
same id); act only on ``type == "send"`` for email.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import faust

    from stream.core.config import RulesConfig
    from stream.metrics import Metrics
    from stream.settings import Settings
    from topics.catalog import TopicSpec

log = logging.getLogger("nurture.worker")


def create_app(
    settings: Settings | None = None,
    *,
    metrics: Metrics | None = None,
    config: RulesConfig | None = None,
) -> faust.App:
    """Build the worker app from settings (default: ``NURTURE_*`` environment)."""
    from faust.types import TP

    from stream.core.config import load_config
    from stream.metrics import Metrics
    from stream.runtime.account_agent import connect_accounts, install_accounts
    from stream.runtime.agent import LeadRunner, tick_topic_name
    from stream.runtime.counters import RuntimeCounters
    from stream.runtime.drain import NurtureApp
    from stream.runtime.processor import LeadProcessor
    from stream.runtime.tablestore import TableStore, table_options
    from stream.runtime.web import readiness, register_views
    from stream.settings import load_settings

    s = settings if settings is not None else load_settings()
    if s.processing_guarantee != "at_least_once":
        raise SystemExit(
            "invalid configuration:\n  processing_guarantee (env NURTURE_PROCESSING_GUARANTEE): "
            f"{s.processing_guarantee!r} is not supported by the batch runtime; "
            "use at_least_once (outbox + applied offsets, see stream/app.py)"
        )
    quiet_client_logs()
    rules = config if config is not None else load_config(s.rules_file)
    m = metrics if metrics is not None else Metrics()
    n = s.topic_partitions

    app = NurtureApp(
        s.app_id,
        broker=[f"kafka://{h.strip()}" for h in s.kafka_bootstrap_servers.split(",")],
        broker_credentials=s.faust_credentials(),
        store="rocksdb://",
        datadir=str(s.data_dir),
        processing_guarantee=s.processing_guarantee,
        table_standby_replicas=s.standby_replicas,
        topic_partitions=n,
        topic_replication_factor=s.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # a SIGKILLed member holds its partitions until its session expires (Faust's default
        # is 60 s); 15 s keeps failover short while tolerating a busy event loop
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        # throughput: batch produce requests (NURTURE_PRODUCER_LINGER_MS, 5 ms by default,
        # inside the 50 ms event-to-action budget) and fetch in larger bites
        producer_linger=s.producer_linger_ms / 1000.0,
        # one open batch per topic partition takes a whole batch's records: aiokafka's
        # ``add_message`` awaits the drain of a full batch (a produce round trip, one request
        # in flight per broker), and Faust's 16 KB default held ~7 changelog records of a lead
        # (see stream/runtime/sender.py); under the broker's 1 MB message limit
        producer_max_batch_size=1_000_000,
        broker_max_poll_records=2000,
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=8192,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_bind=s.web_host,
        web_host=s.web_host,
        web_port=s.web_port,
        autodiscover=False,
        logging_config=None,
    )
    app.fetch_max_wait_ms = s.fetch_max_wait_ms
    app.fetch_min_bytes = s.fetch_min_bytes
    options = table_options(s.state_write_buffer_mb, s.state_block_cache_mb)
    leads = app.Table(
        "leads",
        partitions=n,
        key_type=bytes,
        value_type=bytes,
        options=options,
    )

    def committed(topic: str, partition: int) -> int | None:
        consumer: Any = app.consumer
        offsets: Any = consumer._committed_offset
        value = offsets.get(TP(topic, partition))
        return None if value is None else int(value)

    store = TableStore(leads)
    processor = LeadProcessor(rules, store, committed=committed, cache_size=s.lead_cache_size)
    runner = LeadRunner(app, s, processor, store, m, counters=RuntimeCounters(m.registry))
    topic = runner.topic()
    topic.subscribe()
    app.fast_path = {name: runner.deliver for name in topic.topics}
    app.task(runner.run)
    accounts = None
    if s.accounts_enabled:  # post-sale: account runner + table; the lead runner re-keys to it
        accounts = install_accounts(app, s, rules, m, committed)
        connect_accounts(runner, accounts, s)

    inputs = {*s.input_topics, tick_topic_name(s)}

    async def _revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await runner.on_revoked({tp.partition for tp in revoked if tp.topic in inputs})

    async def _assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        await runner.on_assigned({tp.partition for tp in assigned if tp.topic in inputs})

    async def _gauges() -> None:
        tables: Any = app.tables
        recovery = tables.recovery
        ready, _why = readiness(app)
        if ready:
            m.set_recovery_progress(1.0)
        else:
            remaining = recovery.active_remaining_total()
            total = sum(recovery.active_highwaters.values()) or 1
            m.set_recovery_progress(1.0 - remaining / total)
        consumer: Any = app.consumer
        for tp in app.assignor.assigned_actives():
            if tp.topic in s.input_topics:
                committed_offset = consumer._committed_offset.get(tp)
                try:
                    high = consumer.highwater(tp)
                except Exception:
                    continue
                if high is not None:
                    m.set_consumer_lag(tp.topic, tp.partition, high - (committed_offset or 0))

    app.on_partitions_revoked.connect(cast(Any, _revoked))
    app.on_partitions_assigned.connect(cast(Any, _assigned))
    app.timer(1.0, name="nurture-gauges")(_gauges)
    register_views(app, s, runner, m)
    app.nurture_agent = runner  # type: ignore[attr-defined]
    app.nurture_accounts = accounts  # type: ignore[attr-defined]
    app.nurture_metrics = m  # type: ignore[attr-defined]
    return app


def quiet_client_logs() -> None:
    """Keep the Kafka clients' per-request debug logging off the hot path whatever the root
    level is (aiokafka logs every batch it sends at DEBUG)."""
    for name in ("aiokafka", "kafka"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def tick_topic_spec(settings: Settings) -> TopicSpec:
    """The internal tick topic: co-partitioned with the inputs, short retention (ticks are
    worthless once processed; a re-delivered tick is harmless)."""
    from stream.runtime.agent import tick_topic_name
    from topics.catalog import TopicSpec

    return TopicSpec(
        tick_topic_name(settings),
        "none (explicit partition)",
        "internal",
        "worker ticker",
        "worker",
        settings.topic_partitions,
        {"retention.ms": str(6 * 3600 * 1000), "cleanup.policy": "delete"},
    )


def run_worker(settings: Settings | None = None) -> int:
    """Create the topics if missing (the catalog's and the tick topic; ``faust -A stream.app``
    expects them to exist), then run the worker until SIGTERM/SIGINT (graceful)."""
    import faust

    from stream.runtime.account_agent import account_topic_specs
    from stream.settings import load_settings
    from stream.topics_admin import catalog_from_settings, check_access, ensure_topics

    s = settings if settings is not None else load_settings()
    check_access(s)  # wrong credentials / TLS: a clear exit now, not Faust retrying forever
    ensure_topics(
        s.kafka_bootstrap_servers,
        (
            *catalog_from_settings(s),
            tick_topic_spec(s),
            *(account_topic_specs(s) if s.accounts_enabled else ()),
        ),
        replication_factor=s.replication_factor,
        auth=s.kafka_auth(),
    )
    app = create_app(s)
    worker = faust.Worker(app, loglevel=s.log_level.upper())
    # Faust's terminal spinner, kept at WARNING and above, sets the root logger to DEBUG (its
    # handler spins on every record): every debug call of aiokafka and Faust then builds a
    # record the output handler drops (~6% of the worker in a profile at log level warning)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def main() -> int:
    return run_worker()


def __getattr__(name: str) -> Any:
    # ``faust -A stream.app`` looks up ``stream.app.app``: build it on first access only.
    if name == "app":
        return create_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
