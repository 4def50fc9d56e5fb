"""Replay throughput and peak memory on a simulated 100,000-lead file (``make bench``).

Prints: lines, events, events/s of the whole ``nurture replay`` (parse, engine, timers, writing
transitions/actions, pipeline report, report.html) and of the core loop alone (parse + engine +
timer heap, no output), and the replay process's peak RSS. The budget (DESIGN.md section 4) is
>= 100,000 events/s for the pure core on one core; the assertions here are floors that catch a
regression, the printed figures are the measurement.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.offline.simulate import generate, write_file

pytestmark = pytest.mark.bench

LEADS = 100_000
DAYS = 30
SEED = 2026


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "events-100k.jsonl.gz"
    began = time.perf_counter()
    lines = write_file(path, generate(LEADS, DAYS, SEED))
    print(
        f"\nsimulated {LEADS:,} leads / {DAYS} days: {lines:,} lines, "
        f"{path.stat().st_size / 1e6:.1f} MB gzip, in {time.perf_counter() - began:.1f} s"
    )
    return path


def test_bench_replay_cli_throughput_and_peak_memory(big_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", str(big_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stderr.strip().splitlines()[-1]
    events = int(re.search(r"replayed (\d+) events", summary).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"= ([\d,]+) events/s", summary).group(1).replace(",", ""))  # type: ignore[union-attr]
    peak_mb = after.ru_maxrss / 1024  # children's max RSS (KiB on Linux)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"\n{summary}")
    print(
        f"replay CLI: {events:,} events in {wall:.1f} s wall ({cpu:.1f} s CPU) = {rate:,.0f} "
        f"events/s (reported), {events / cpu:,.0f} events per CPU-second; peak RSS {peak_mb:.0f} MB"
    )
    assert events > 600_000
    assert rate > 2_000  # floor against collapse; the figure above is the measurement
    assert peak_mb < 1024
    for name in ("transitions.jsonl", "actions.jsonl", "report.json", "report.html"):
        assert (out / name).stat().st_size > 0


def test_bench_core_loop_without_outputs(big_file: Path) -> None:
    """Parse + engine + timer heap only (results discarded): the part DESIGN.md budgets."""
    from stream.core.config import load_config
    from stream.offline.replay import EventTimeRunner, iter_lines, open_events
    from topics.parse import InvalidEvent, parse_event

    config = load_config(None)
    steps = 0

    def sink(result: object) -> None:
        nonlocal steps
        steps += 1

    runner = EventTimeRunner(config, sink)
    events = 0
    cpu0 = time.process_time()
    began = time.perf_counter()
    with open_events(big_file) as fh:
        for _, raw in iter_lines(fh):
            try:
                event = parse_event(raw)
            except InvalidEvent:
                continue
            events += 1
            runner.process(event)
    runner.finish()
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu0
    print(
        f"\ncore loop: {events:,} events + {runner.timers_fired:,} timers = {steps:,} steps in "
        f"{wall:.1f} s wall / {cpu:.1f} s CPU: {events / wall:,.0f} events/s wall, "
        f"{events / cpu:,.0f} events per CPU-second (budget 100,000)"
    )
    assert steps == events + runner.timers_fired
    assert events / cpu > 2_000
