"""Sends a batch's records through the aiokafka producer of Faust's producer.

Records go through the aiokafka producer of Faust's producer, so Faust's flush before every
offset commit (``Consumer._commit_offsets`` -> ``producer.flush()``) covers them. Keyed
records are partitioned like Faust's/aiokafka's default partitioner (murmur2 of the key), so
outputs stay co-partitioned with the lead's inputs.

Two ways into the producer's accumulator, by group size (records of one batch for one topic
partition):

* a large group is one ``BatchBuilder`` (``create_batch`` / ``send_batch``): no per-record
  coroutine, the cheap path when the worker reads a backlog;
* a small group goes record by record through ``send``, which appends to the topic
  partition's open batch. ``send_batch`` always queues a new batch, and aiokafka's
  ``add_batch`` first waits until the partition's pending batch is drained (its linger, then
  the in-flight request of that partition): with a small batch per partition every few
  milliseconds (low load), each group waited a produce round trip before the next partition's
  batch could even be stepped, and event-to-action latency grew to seconds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.partitioner import murmur2

# (topic, partition or None for the key's partition, key, value or None for a tombstone)
Record = tuple[str, "int | None", "bytes | None", "bytes | None"]

BATCH_API_MIN = 64  # records of one topic partition from which a group goes as one BatchBuilder


class Sender:
    def __init__(self, producer: Callable[[], Any], batch_api_min: int = BATCH_API_MIN) -> None:
        self._producer = producer  # returns the started aiokafka producer
        self._partitions: dict[str, int] = {}
        self._hash: dict[bytes, int] = {}
        self.batch_api_min = batch_api_min

    async def _count(self, aio: Any, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            n = self._partitions[topic] = len(await aio.partitions_for(topic))
        return n

    def _partition_of(self, key: bytes, n: int) -> int:
        h = self._hash.get(key)
        if h is None:
            if len(self._hash) > 100_000:
                self._hash.clear()  # a bounded memo of murmur2 (pure Python in aiokafka)
            h = self._hash[key] = murmur2(key) & 0x7FFFFFFF
        return h % n

    async def send(self, records: Iterable[Record]) -> dict[tuple[str, int], list[Any]]:
        """Queue ``records`` in the producer, in their order within each topic partition.
        Returns the delivery futures per (topic, partition), each ``(future, record count)``
        (a future per record for a small group, per batch for a large one)."""
        aio = self._producer()
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for topic, partition, key, value in records:
            if partition is None:
                n = await self._count(aio, topic)
                partition = self._partition_of(key, n) if key is not None else random.randrange(n)
            groups.setdefault((topic, partition), []).append((key, value))
        futures: dict[tuple[str, int], list[Any]] = {}
        for (topic, partition), items in groups.items():
            futs = futures[(topic, partition)] = []
            if len(items) < self.batch_api_min:
                for key, value in items:
                    futs.append((await aio.send(topic, value, key=key, partition=partition), 1))
                continue
            batch = aio.create_batch()
            count = 0
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futs.append((await aio.send_batch(batch, topic, partition=partition), count))
                    batch = aio.create_batch()
                    count = 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a record of {topic} does not fit a batch")
                count += 1
            if count:
                futs.append((await aio.send_batch(batch, topic, partition=partition), count))
        return futures


def last_offset(futures: list[tuple[asyncio.Future[Any], int]]) -> int | None:
    """The offset of the last record of resolved futures ``(future, record count)`` (a batch's
    future resolves to its first record's offset, a record's to its own)."""
    last = None
    for fut, count in futures:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            last = fut.result().offset + count - 1
    return last
