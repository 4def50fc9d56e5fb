"""``nurture topics create|list``: the contract's topics (topics.catalog) on a Kafka cluster."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "topics", help="create (idempotently) or list the catalog's Kafka topics"
    )
    parser.add_argument("action", choices=["create", "list"])
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="host:port[,host:port]; default: NURTURE_KAFKA_BOOTSTRAP_SERVERS",
    )
    parser.add_argument(
        "--all", action="store_true", help="list: every topic, not only the catalog's"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.settings import load_settings
    from stream.topics_admin import (
        catalog_from_settings,
        check_access,
        describe_topics,
        ensure_topics,
    )

    overrides: dict[str, object] = {}
    if args.bootstrap:
        overrides["kafka_bootstrap_servers"] = args.bootstrap
    settings = load_settings(**overrides)
    check_access(settings, timeout=args.timeout)
    bootstrap, auth = settings.kafka_bootstrap_servers, settings.kafka_auth()
    specs = catalog_from_settings(settings)
    if args.action == "create":
        report = ensure_topics(
            bootstrap,
            specs,
            replication_factor=settings.replication_factor,
            timeout=args.timeout,
            auth=auth,
        )
        for line in report.lines():
            print(line)
        return 1 if report.partition_mismatch else 0
    info = describe_topics(bootstrap, None, timeout=args.timeout, auth=auth)
    names = sorted(info) if args.all else [spec.name for spec in specs]
    for name in names:
        topic = info.get(name)
        if topic is None:
            print(f"{name:40} missing (run: nurture topics create)")
        else:
            print(f"{name:40} partitions={topic.partitions}")
    return 0 if all(name in info for name in names) else 1
