"""The runtime's batch sender (:mod:`stream.runtime.sender`) against the real broker.

A small group (a few records of one topic partition, what a batch carries at low load) must be
appended to the partition's open producer batch, not queued as a new batch behind it:
aiokafka's ``send_batch`` waits until the partition's pending batch is drained (its linger, then
its in-flight request), which serialised the worker's rounds at low load (event-to-action p99 of
seconds). With a 3 s linger, two small sends in a row return at once with the fix and only after
the first batch's linger without it; both, and a large group, are delivered in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from stream.runtime.sender import Sender, last_offset
from tests.support.worker import consume_all

LINGER_MS = 3000


async def _send_three(bootstrap: str, topic: str) -> tuple[float, list[int | None]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=LINGER_MS)
    await producer.start()
    try:
        sender = Sender(lambda: producer, batch_api_min=8)
        small = [(topic, 0, b"k", b'{"v": "small-%d"}' % i) for i in range(3)]
        t0 = time.monotonic()
        first = await sender.send(small[:2])
        second = await sender.send(small[2:])
        queued_s = time.monotonic() - t0
        large = await sender.send([(topic, 0, b"k", b'{"v": "large-%d"}' % i) for i in range(20)])
        await producer.flush()
        offsets = [last_offset(f[(topic, 0)]) for f in (first, second, large)]
        return queued_s, offsets
    finally:
        await producer.stop()


def test_small_groups_join_the_open_batch_large_ones_go_as_one(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("sender", partitions=1)
    queued_s, offsets = asyncio.run(_send_three(kafka_bootstrap, topic))
    assert queued_s < LINGER_MS / 1000 / 2, f"the second small send waited {queued_s:.2f} s"
    assert offsets == [1, 2, 22]  # last offset of each send: 2 records, 1, then 20
    got = consume_all(kafka_bootstrap, topic, until=lambda r: len(r) >= 23, timeout=60)
    assert [r["value"]["v"] for r in got] == [
        *(f"small-{i}" for i in range(3)),
        *(f"large-{i}" for i in range(20)),
    ]


CHANGELOG_RECORD = b"x" * 2300  # a lead's changelog record is ~2.3 KB (bench mean 2,390 B)


async def _send_partition_batch(bootstrap: str, topic: str, max_batch_size: int) -> int:
    """How many times the event loop ran other tasks while the batch was queued."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=LINGER_MS, max_batch_size=max_batch_size
    )
    await producer.start()
    try:
        sender = Sender(lambda: producer)
        await sender.send([(topic, 0, b"warm-up", b"{}")])  # the topic's metadata
        await producer.flush()
        switches = 0

        async def count() -> None:
            nonlocal switches
            while True:
                await asyncio.sleep(0)
                switches += 1

        counter = asyncio.create_task(count())
        await asyncio.sleep(0)
        before = switches
        records = [(topic, 0, b"lead-%d" % i, CHANGELOG_RECORD) for i in range(50)]
        futures = await sender.send(records)
        during = switches - before
        counter.cancel()
        await producer.flush()
        assert last_offset(futures[(topic, 0)]) == 50
        return during
    finally:
        await producer.stop()


def test_a_partition_batch_of_lead_records_queues_without_a_produce_round_trip(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """The worker's producer batches hold a batch's changelog records (50 leads, ~115 KB, sent
    record by record) and queueing them never waits: with Faust's default of 16 KB every 7th
    append awaited the drain of a full batch (its linger, then the request in flight: one per
    broker), and the worker's whole round waited with it (here 22,120 turns of the event loop
    with a 3 s linger)."""
    from stream.app import create_app
    from stream.settings import Settings

    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "data")
    max_batch_size = create_app(settings).conf.producer_max_batch_size
    topic = topic_factory("sender-batch", partitions=1)
    waits = asyncio.run(_send_partition_batch(kafka_bootstrap, topic, max_batch_size))
    assert waits == 0, f"queueing the batch gave the event loop away {waits} times"
    got = consume_all(kafka_bootstrap, topic, until=lambda r: len(r) >= 51, timeout=60)
    assert len(got) == 51
