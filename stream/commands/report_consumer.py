"""``nurture report-consumer``: the pipeline report, read from the worker's output topics.

Reads every partition of ``nurture.transitions`` and ``nurture.actions``, keeps per-lead
attribution facts and its read offsets in RocksDB (``NURTURE_REPORT_DATA_DIR``, default
``<NURTURE_DATA_DIR>/report``), and serves ``GET /report`` and ``GET /metrics`` (the
``nurture_pipeline_*`` series) on ``NURTURE_WEB_HOST``:``NURTURE_REPORT_PORT`` (default 6067).
See :mod:`stream.report.consumer`.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report-consumer",
        help="serve the pipeline report, read from the transition and action topics",
        description=(
            "Run the report consumer. Configuration comes from NURTURE_* environment variables "
            "(NURTURE_KAFKA_BOOTSTRAP_SERVERS, NURTURE_TOPIC_TRANSITIONS, NURTURE_TOPIC_ACTIONS, "
            "NURTURE_REPORT_PORT, NURTURE_REPORT_DATA_DIR, NURTURE_WEB_TOKEN); the options below "
            "override them. SIGTERM/SIGINT stop it; it resumes where it stopped."
        ),
    )
    parser.add_argument("--bootstrap", dest="kafka_bootstrap_servers", help="host:port[,...]")
    parser.add_argument("--port", dest="report_port", type=int, help="HTTP port")
    parser.add_argument("--data-dir", dest="report_data_dir", help="RocksDB folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from stream.report.consumer import serve
    from stream.report.store import RocksStore
    from stream.settings import load_settings

    keys = ("kafka_bootstrap_servers", "report_port", "report_data_dir")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    s = load_settings(**overrides)
    logging.basicConfig(
        level=s.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    data_dir = s.report_data_dir if s.report_data_dir is not None else s.data_dir / "report"
    asyncio.run(serve(s, RocksStore(data_dir), s.web_host, s.report_port))
    return 0
