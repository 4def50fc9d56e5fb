"""``nurture replay EVENTS.jsonl --out DIR``: the pure core over an event file, in event time.

See :mod:`stream.offline.replay` for the time model. Prints a one-line summary with events/s
to stderr.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "replay", help="run the rules over an event file (JSON Lines, .gz ok) in event time"
    )
    parser.add_argument("events", type=Path, help="contract events, one JSON object a line")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--config", type=Path, default=None, help="rules YAML (default built in)")
    parser.add_argument(
        "--until", default=None, help="RFC 3339 horizon: fire timers up to it, skip later events"
    )
    parser.add_argument("--progress", action="store_true", help="progress bar even without TTY")
    parser.add_argument("--no-html", action="store_true", help="skip report.html")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.core.config import load_config
    from stream.core.model import rfc3339_to_ms
    from stream.offline.replay import replay_file

    if not args.events.exists():
        print(f"no such file: {args.events}", file=sys.stderr)
        return 2
    until = rfc3339_to_ms(args.until) if args.until else None
    config = load_config(args.config)
    progress = bool(args.progress or sys.stderr.isatty())
    began = time.perf_counter()
    stats = replay_file(
        args.events, args.out, config, until=until, progress=progress, html=not args.no_html
    )
    elapsed = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = stats.events / elapsed if elapsed > 0 else 0.0
    print(
        f"replayed {stats.events} events ({stats.dead_letters} dead-lettered, "
        f"{stats.timers_fired} timers fired) for {stats.leads} leads: "
        f"{stats.transitions} transitions, {stats.actions} actions "
        f"in {elapsed:.2f} s = {rate:,.0f} events/s, peak RSS {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    print(args.out / "report.html" if not args.no_html else args.out / "report.json")
    return 0
