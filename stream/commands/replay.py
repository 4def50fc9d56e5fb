"""``nurture replay EVENTS.jsonl --out DIR``: the pure core over an event file, in event time.

See :mod:`stream.offline.replay` for the time model. Prints a one-line summary with events/s
to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container's cpuset or
    ``taskset`` narrows), not every core of the machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity on this platform
        return os.cpu_count() or 1


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
    parser.add_argument(
        "--order",
        choices=("time", "file"),
        default="time",
        help="time (default): event-time order whatever the file order; file: as the lines "
        "come (a dump already in arrival order, such as a topic export; one process)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=usable_cores(),
        help="processes for --order time: the file scanned in parts, leads and accounts in "
        "buckets, the outputs merged in time ranges across them (default: the cores this "
        "process may run on); the outputs are the same whatever it is",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream.commands.heap import tune_gc
    from stream.core.config import load_config
    from stream.core.model import rfc3339_to_ms
    from stream.offline.replay import replay_file
    from stream.offline.shards import peak_rss_mb

    if args.jobs < 1:
        print("--jobs must be at least 1", file=sys.stderr)
        return 2
    if not args.events.exists():
        print(f"no such file: {args.events}", file=sys.stderr)
        return 2
    until = rfc3339_to_ms(args.until) if args.until else None
    config = load_config(args.config)
    progress = bool(args.progress or sys.stderr.isatty())
    tune_gc()  # this process (shard processes tune themselves: stream.offline.shards)
    began, own_cpu = time.perf_counter(), time.process_time()
    stats = replay_file(
        args.events,
        args.out,
        config,
        until=until,
        progress=progress,
        html=not args.no_html,
        order=args.order,
        jobs=args.jobs,
    )
    elapsed = time.perf_counter() - began
    own_cpu = time.process_time() - own_cpu
    rate = stats.events / elapsed if elapsed > 0 else 0.0
    late = stats.lateness
    lateness = (
        f"{stats.late_events} arrived out of order (max {late['max_hours']:.1f} h late, "
        f"p99 {late['p99_hours']:.1f} h)"
        if stats.late_events
        else "none out of order"
    )
    workers = (
        f", largest worker {stats.worker_peak_rss_mb:.0f} MB"
        if stats.worker_peak_rss_mb is not None
        else ""
    )
    cpu = ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in stats.cpu_seconds.items())
    if stats.wall_seconds:
        cpu += "; wall s: " + ", ".join(
            f"{phase} {seconds:.1f}" for phase, seconds in stats.wall_seconds.items()
        )
    if cpu and stats.jobs > 1:
        # the work the worker processes cannot share: an upper bound (it includes waiting)
        cpu += f"; replay process alone {own_cpu:.1f} CPU s"
    print(
        f"replayed {stats.events} events ({stats.dead_letters} dead-lettered, "
        f"{stats.timers_fired} timers fired) for {stats.leads} leads in {stats.order} order, "
        f"jobs {stats.jobs}: {stats.transitions} transitions, {stats.actions} actions "
        f"in {elapsed:.2f} s = {rate:,.0f} events/s, peak RSS {peak_rss_mb():.0f} MB{workers}; "
        f"{lateness}" + (f"; CPU s: {cpu}" if cpu else ""),
        file=sys.stderr,
    )
    print(args.out / "report.html" if not args.no_html else args.out / "report.json")
    return 0
