"""``nurture worker``: run the stream worker (the same app ``faust -A stream.app worker`` runs)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run the Faust stream worker",
        description=(
            "Run the stream worker. Configuration comes from NURTURE_* environment variables "
            "(NURTURE_KAFKA_BOOTSTRAP_SERVERS, NURTURE_DATA_DIR, NURTURE_APP_ID, "
            "NURTURE_WEB_PORT, NURTURE_PROCESSING_GUARANTEE, NURTURE_STANDBY_REPLICAS, ...); "
            "the options below override them. SIGTERM/SIGINT stop it gracefully."
        ),
    )
    parser.add_argument("--bootstrap", dest="kafka_bootstrap_servers", help="host:port[,...]")
    parser.add_argument("--data-dir", dest="data_dir", help="RocksDB state folder")
    parser.add_argument("--app-id", dest="app_id", help="Faust app id / consumer group")
    parser.add_argument("--web-port", dest="web_port", type=int, help="HTTP port")
    parser.add_argument("--rules", dest="rules_file", help="program rules YAML")
    parser.add_argument(
        "--guarantee",
        dest="processing_guarantee",
        choices=("at_least_once", "exactly_once"),
        help="Kafka processing guarantee",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from stream.app import run_worker
    from stream.commands.heap import tune_gc
    from stream.settings import load_settings

    keys = (
        "kafka_bootstrap_servers",
        "data_dir",
        "app_id",
        "web_port",
        "rules_file",
        "processing_guarantee",
    )
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    settings = load_settings(**overrides)
    tune_gc()
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    return run_worker(settings)
