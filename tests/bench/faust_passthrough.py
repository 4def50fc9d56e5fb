"""The per-event Faust ceiling of the throughput bench: a bare passthrough agent.

Run as ``python -m tests.bench.faust_passthrough OUT_TOPIC TOTAL PORT DATADIR`` with the worker's
``NURTURE_*`` environment. The app takes the worker's consumer, producer and stream tuning from
the worker's own app (``create_app(settings).conf``, read, never started), so the two differ
only in the per-event work. One agent (concurrency 1) iterates ``stream.events()`` over the three
input topics and awaits ``producer.send`` of each message's key and value to OUT_TOPIC; after
TOTAL messages it flushes and prints ``RESULT <messages> <seconds>`` on stderr, timed from the
first message to the flushed last one.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

# conf keys that tune fetching, buffering and producing: copied from the worker's app
TUNING = (
    "producer_linger",
    "producer_max_batch_size",
    "producer_acks",
    "broker_max_poll_records",
    "broker_max_poll_interval",
    "consumer_max_fetch_size",
    "stream_buffer_maxsize",
    "stream_wait_empty",
    "broker_commit_every",
    "broker_commit_interval",
    "stream_recovery_delay",
)


def tuning(settings: Any) -> dict[str, Any]:
    from stream.app import create_app

    conf = create_app(settings).conf
    return {key: getattr(conf, key) for key in TUNING}


def main(argv: list[str]) -> int:
    import faust

    from stream.settings import load_settings

    out, total_s, port, datadir = argv
    total = int(total_s)
    s = load_settings()
    app = faust.App(
        s.app_id + "-passthrough",
        broker=[f"kafka://{h.strip()}" for h in s.kafka_bootstrap_servers.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        datadir=datadir,
        web_port=int(port),
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        topic_partitions=s.topic_partitions,
        **tuning(s),
    )
    channel = app.topic(*s.input_topics, key_serializer="raw", value_serializer="raw")
    seen = 0
    t0 = 0.0

    @app.agent(channel, concurrency=1)
    async def passthrough(stream: Any) -> None:
        nonlocal seen, t0
        async for event in stream.events():
            if seen == 0:
                t0 = time.perf_counter()
            seen += 1
            msg = event.message
            await app.producer.send(out, msg.key, msg.value, None, None, None)
            if seen == total:
                await app.producer.flush()
                sys.stderr.write(f"RESULT {seen} {time.perf_counter() - t0}\n")
                sys.stderr.flush()
                os._exit(0)

    faust.Worker(app, loglevel="WARNING").execute_from_commandline()
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
