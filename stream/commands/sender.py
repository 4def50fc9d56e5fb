"""``nurture sender``: deliver ``send`` actions once (SMTP, webhook or stdout); stream/sender/."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sender",
        help="deliver send actions exactly once (SMTP, webhook or stdout)",
        description=(
            "Read nurture.actions (read_committed), deduplicate on action_id in a local RocksDB "
            "store, hold until deliver_after, deliver through NURTURE_SENDER_TRANSPORT, publish "
            "email.sent, commit. Configuration: NURTURE_SENDER_* and NURTURE_KAFKA_* "
            "environment variables; the options below override them. SIGTERM stops it."
        ),
    )
    parser.add_argument("--bootstrap", dest="kafka_bootstrap_servers", help="host:port[,...]")
    parser.add_argument(
        "--transport", dest="sender_transport", choices=("smtp", "webhook", "stdout")
    )
    parser.add_argument("--smtp-host", dest="sender_smtp_host")
    parser.add_argument("--smtp-port", dest="sender_smtp_port", type=int)
    parser.add_argument("--webhook-url", dest="sender_webhook_url")
    parser.add_argument("--templates", dest="sender_templates_dir", help="Jinja2 template folder")
    parser.add_argument("--data-dir", dest="sender_data_dir", help="dedupe store folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.commands.heap import tune_gc
    from stream.sender.service import run_sender
    from stream.settings import load_settings

    keys = (
        "kafka_bootstrap_servers",
        "sender_transport",
        "sender_smtp_host",
        "sender_smtp_port",
        "sender_webhook_url",
        "sender_templates_dir",
        "sender_data_dir",
    )
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    tune_gc()
    return run_sender(load_settings(**overrides))
