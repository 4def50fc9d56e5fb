"""``nurture kafka``: a local single-node Kafka broker (KRaft, no Docker) in the foreground.

Resolves the broker jars from Maven Central once (cached), starts the broker on a free loopback
port (or ``--port``), creates the catalog's topics, prints the bootstrap address, and runs until
Ctrl-C or SIGTERM, then stops the broker and deletes its data.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "kafka", help="run a local Kafka broker (KRaft, from Maven Central jars) in the foreground"
    )
    parser.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    parser.add_argument("--version", default=None, help="Kafka version (default: the pinned one)")
    parser.add_argument(
        "--no-topics", action="store_true", help="do not create the catalog's topics"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.kafka_local import LocalKafka
    from stream.settings import load_settings
    from stream.topics_admin import catalog_from_settings, ensure_topics

    settings = load_settings()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    kafka = LocalKafka(version=args.version, port=args.port, partitions=settings.topic_partitions)
    try:
        print(f"starting Kafka {kafka.version} (KRaft, single node) ...", flush=True)
        kafka.start()
        print(f"ready in {kafka.start_seconds:.1f}s; log: {kafka.log_path}", flush=True)
        if not args.no_topics:
            report = ensure_topics(
                kafka.bootstrap,
                catalog_from_settings(settings),
                replication_factor=settings.replication_factor,
            )
            for line in report.lines():
                print(line, flush=True)
        print(f"bootstrap: {kafka.bootstrap}")
        print(f"export NURTURE_KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}")
        print("Ctrl-C or SIGTERM stops the broker and deletes its data.", flush=True)
        while not stop.is_set():
            if not kafka.running:
                print(f"the broker exited; log tail:\n{kafka.log_tail()}")
                return 1
            stop.wait(1.0)
        print("stopping Kafka ...", flush=True)
        return 0
    finally:
        kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
