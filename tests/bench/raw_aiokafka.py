"""The raw ceiling of the throughput bench: aiokafka ``getmany`` -> ``orjson.loads`` -> ``send``.

Run as ``python -m tests.bench.raw_aiokafka BOOTSTRAP GROUP OUT_TOPIC TOTAL TOPIC...``. Reads
TOTAL messages from the topics (its own consumer group, from the earliest offset), decodes each
value with orjson (a malformed one counts too: it was read and decoded), produces each to
OUT_TOPIC without awaiting the delivery of single records, flushes, and prints
``RESULT <messages> <seconds>`` on stderr, timed from the first message to the flushed last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def run(bootstrap: str, group: str, out: str, total: int, topics: list[str]) -> float:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    seen = 0
    t0 = 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for msgs in batches.values():
                for msg in msgs:
                    if seen == 0:
                        t0 = time.perf_counter()
                    seen += 1
                    with contextlib.suppress(orjson.JSONDecodeError):
                        orjson.loads(msg.value or b"null")
                    await producer.send(out, msg.value, key=msg.key)
        await producer.flush()
        return time.perf_counter() - t0
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str]) -> int:
    bootstrap, group, out, total, *topics = argv
    elapsed = asyncio.run(run(bootstrap, group, out, int(total), topics))
    sys.stderr.write(f"RESULT {total} {elapsed}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
