"""``nurture report``: the pipeline contribution report, from a running worker or from files.

    nurture report --url http://127.0.0.1:6067     # GET <url>/report of `nurture report-consumer`
    nurture report --from-kafka                    # read the output topics once (NURTURE_* env)
    nurture report --transitions t.jsonl --actions a.jsonl   # records written by replay

Prints the JSON report on stdout (keys in a stable order). On a TTY, a compact table per
program x cohort x ICP tier follows unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="pipeline contribution per program, cohort and ICP tier (nurtured vs holdout)",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--url", help="base URL of a running report consumer, e.g. http://127.0.0.1:6067"
    )
    src.add_argument(
        "--from-kafka",
        action="store_true",
        help="read nurture.transitions and nurture.actions up to their end (NURTURE_* env)",
    )
    src.add_argument("--transitions", help="transition records file (JSON Lines or JSON array)")
    parser.add_argument("--actions", help="action records file (JSON Lines or JSON array)")
    parser.add_argument("--window-days", type=int, default=90, help="template window (days)")
    parser.add_argument("--json", action="store_true", help="JSON only, even on a TTY")
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout (seconds)")
    parser.add_argument(
        "--token",
        default=os.environ.get("NURTURE_WEB_TOKEN"),
        help="bearer token of the report consumer (default: $NURTURE_WEB_TOKEN)",
    )
    parser.set_defaults(func=run)


def fetch(url: str, timeout: float = 10.0, token: str | None = None) -> dict[str, Any]:
    """GET ``<url>/report`` (with ``Authorization: Bearer <token>`` if given), decoded."""
    target = url.rstrip("/")
    if not target.endswith("/report"):
        target += "/report"
    request = urllib.request.Request(target)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        data = json.loads(resp.read().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{target} did not return a JSON object")
    return data


def from_files(transitions: str, actions: str | None, window_days: int = 90) -> dict[str, Any]:
    from stream.report.pipeline import build_report, read_records

    return build_report(
        read_records(transitions),
        read_records(actions) if actions else [],
        window_days=window_days,
    ).to_dict()


def from_kafka(window_days: int = 90) -> dict[str, Any]:
    """Read the output topics of the configured broker once, into a temporary RocksDB."""
    import asyncio
    import tempfile

    from stream.report.consumer import read_once
    from stream.report.store import RocksStore
    from stream.settings import load_settings

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="nurture-report-") as tmp:
        store = RocksStore(tmp)
        try:
            return asyncio.run(read_once(settings, store, window_days))
        finally:
            store.close()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Pipeline contribution (nurtured vs holdout)")
    for col in (
        "program",
        "cohort",
        "tier",
        "entries",
        "opps",
        "rate",
        "median d",
        "p90 d",
        "holdout",
        "h. rate",
        "lift pts",
    ):
        table.add_column(col)
    for program, cohorts in report.get("programs", {}).items():
        for cohort, tiers in cohorts.items():
            for tier, cell in tiers.items():
                n, h, lift = cell["nurtured"], cell["holdout"], cell["lift"]
                ttx = n["time_to_opportunity_days"]
                table.add_row(
                    program,
                    cohort,
                    tier,
                    str(n["entries"]),
                    str(n["opportunities"]),
                    _pct(n["contribution_rate"]),
                    _num(ttx["median"]),
                    _num(ttx["p90"]),
                    str(h["entries"]),
                    _pct(h["contribution_rate"]),
                    _pct(lift["rate_points"]),
                )
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    try:
        if args.url:
            report = fetch(args.url, args.timeout, args.token)
        elif args.from_kafka:
            report = from_kafka(args.window_days)
        else:
            report = from_files(args.transitions, args.actions, args.window_days)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"nurture report: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    if sys.stdout.isatty() and not args.json:
        print_table(report)
    return 0
