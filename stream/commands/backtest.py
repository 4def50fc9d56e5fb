"""``nurture backtest EVENTS.jsonl --config A.yaml --config B.yaml``: two configs side by side.

Prints pipeline contribution per program and ICP tier under both configs and a sample of leads
whose path differs, with the rule that fired at the first divergence. ``--json FILE`` writes the
full comparison (see :func:`stream.offline.backtest.backtest_file`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "backtest", help="compare two rule configurations on the same event file"
    )
    parser.add_argument("events", type=Path)
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        help="rules YAML; give it twice (A then B); 'default' = the built-in rules",
    )
    parser.add_argument("--until", default=None, help="RFC 3339 horizon (see replay)")
    parser.add_argument(
        "--order", choices=("time", "file"), default="time", help="event order (see replay)"
    )
    parser.add_argument("--sample", type=int, default=10, help="differing leads to show")
    parser.add_argument("--json", type=Path, default=None, help="write the comparison here")
    parser.set_defaults(func=run)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _salient(signals: dict[str, Any]) -> dict[str, Any]:
    """The signal values worth reading: drop zeros, falses, nulls and bookkeeping."""
    skip = {"config_version"}
    return {
        k: v
        for k, v in signals.items()
        if k not in skip and v is not None and v is not False and v != 0
    }


def _interval_cells(cmp: dict[str, Any]) -> tuple[str, str, str]:
    """(difference interval, relative lift with interval, verdict) for the table."""
    diff, rel = cmp["difference"], cmp["relative_lift"]
    if diff is None:
        return "-", "-", "not enough data"
    interval = f"[{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}] pt"
    estimate = "n/a" if rel["estimate"] is None else f"{100 * rel['estimate']:+.0f}%"
    relative = f"{estimate} [{100 * rel['low']:+.0f}%, {100 * rel['high']:+.0f}%]"
    return interval, relative, cmp["status"].replace("_", " ")


def run(args: argparse.Namespace) -> int:
    import orjson
    from rich.console import Console
    from rich.table import Table

    from stream.core.config import load_config
    from stream.core.model import rfc3339_to_ms
    from stream.offline.backtest import backtest_file

    if len(args.config) != 2:
        print("give --config exactly twice (A and B)", file=sys.stderr)
        return 2
    paths = [None if c == "default" else Path(c) for c in args.config]
    configs = [load_config(p) for p in paths]
    labels = ("A", "B")
    until = rfc3339_to_ms(args.until) if args.until else None
    doc = backtest_file(
        args.events,
        configs[0],
        configs[1],
        labels=labels,
        until=until,
        sample=args.sample,
        order=args.order,
    )
    doc["configs"] = {label: str(c) for label, c in zip(labels, args.config, strict=True)}
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(
        f"[bold]backtest[/] {args.events}: {doc['events']} events, {doc['leads']} leads; "
        f"A = {args.config[0]}, B = {args.config[1]}"
    )
    entries = Table(title="entries per program")
    entries.add_column("program")
    entries.add_column("A", justify="right")
    entries.add_column("B", justify="right")
    programs = sorted(set(doc["entries"]["A"]) | set(doc["entries"]["B"]))
    for program in programs:
        a, b = doc["entries"]["A"].get(program, 0), doc["entries"]["B"].get(program, 0)
        entries.add_row(program, str(a), str(b))
    console.print(entries)
    table = Table(title="pipeline contribution per program and ICP tier (summed over cohorts)")
    columns = ("program", "tier", "group", "A entries", "A rate", "B entries", "B rate", "B - A")
    for col in (*columns, "95% interval", "relative", "verdict"):
        table.add_column(col, justify="left" if col in ("program", "tier", "group") else "right")
    for row in doc["contribution"]:
        delta = row["rate_delta"]
        table.add_row(
            row["program"],
            row["tier"],
            row["group"],
            str(row["a_entries"]),
            _pct(row["a_rate"]),
            str(row["b_entries"]),
            _pct(row["b_rate"]),
            "-" if delta is None else f"{100 * delta:+.1f} pt",
            *_interval_cells(row["b_vs_a"]),
        )
    console.print(table)
    console.print(f"[bold]{doc['differing_leads']}[/] leads take a different path. Sample:")
    for item in doc["sample"]:
        console.print(f"  [bold]{item['lead_id']}[/] after {item['common_prefix'] or ['(start)']}")
        for label in labels:
            step = item[label]
            text = (
                "no transition"
                if step is None
                else f"{step['to_program']}/{step['to_state']} by {step['reason']} "
                f"{orjson.dumps(_salient(step['signals'])).decode()}"
            )
            console.print(f"    {label}: {text}", highlight=False, markup=False)
    return 0
