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
