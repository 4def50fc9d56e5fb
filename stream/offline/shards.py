"""Time-ordered replay by lead bucket, in one process or several, merged in a fixed order.

Each bucket of :func:`stream.offline.order.scan` is replayed on its own (its own clock and
timer heap: leads are independent and the bucket's events are in event-time order, so every
lead sees exactly the inputs it would in one global run). The bucket's timers fire up to the
run's global horizon. Bucket ``b`` writes keyed transition and action lines (see
:class:`stream.offline.outputs.Recorder`) and returns its counts and its report facts.

:func:`merge_keyed` then merges the buckets' lines by key, ties by bucket number. Buckets are
fixed (not derived from the number of processes), so the outputs are byte-identical whatever
``jobs`` is. Memory: a process holds one bucket's lead states at a time.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import resource
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from stream.offline.order import bucket_events
from stream.offline.outputs import FlowStats, Recorder
from stream.offline.runner import REPLAY_GC_THRESHOLD, EventTimeRunner

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.report.pipeline import PipelineReport
    from stream.report.stats import StatsSettings

KEY_WIDTH = 16
T = TypeVar("T")


def peak_rss_mb() -> float:
    """This process's own peak RSS in MB.

    Linux's ``VmHWM``, not ``getrusage(...).ru_maxrss``: a process started by ``fork``/``vfork``
    + ``exec`` inherits its parent's high-water mark into ``ru_maxrss`` (the kernel records the
    old address space's peak at ``exec``), so a small child of a big parent reports the
    parent's peak; ``RUSAGE_CHILDREN`` is the largest of those.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(slots=True)
class BucketResult:
    bucket: int
    transitions: int
    actions: int
    timers_fired: int
    leads: int
    pending_timers: int
    report: PipelineReport
    flow: FlowStats
    peak_rss_mb: float


def _paths(work_dir: Path, bucket: int) -> tuple[Path, Path]:
    return work_dir / f"t{bucket:03d}.jsonl", work_dir / f"a{bucket:03d}.jsonl"


def run_bucket(
    bucket: int, runs: list[Path], config: RulesConfig, horizon: int | None, work_dir: Path
) -> BucketResult:
    """Replay one bucket's events; its keyed outputs go to ``work_dir``."""
    from stream.report.pipeline import PipelineReport

    t_path, a_path = _paths(work_dir, bucket)
    gc_threshold = gc.get_threshold()
    gc.freeze()  # as replay_file: start-up objects out of reach, young generation larger
    gc.set_threshold(*REPLAY_GC_THRESHOLD)
    try:
        with (
            open(t_path, "wb", buffering=1 << 20) as t_out,
            open(a_path, "wb", buffering=1 << 20) as a_out,
        ):
            recorder = Recorder(t_out.write, a_out.write, PipelineReport(), FlowStats(), keyed=True)
            runner = EventTimeRunner(config, recorder)
            for event in bucket_events(runs):
                runner.process(event)
            if horizon is not None:
                runner.fire_until(horizon)
    finally:
        gc.set_threshold(*gc_threshold)
        gc.unfreeze()
    recorder.flow.drop_open_entries()  # the bucket's leads are done: only the counts travel
    return BucketResult(
        bucket=bucket,
        transitions=recorder.transitions,
        actions=recorder.actions,
        timers_fired=runner.timers_fired,
        leads=len(runner.states),
        pending_timers=runner.pending_timers,
        report=recorder.report,
        flow=recorder.flow,
        peak_rss_mb=peak_rss_mb(),
    )


def run_buckets(
    runs: list[list[Path]],
    config: RulesConfig,
    horizon: int | None,
    work_dir: Path,
    jobs: int,
    meanwhile: Callable[[], T],
) -> tuple[list[BucketResult], T]:
    """Every non-empty bucket, on ``jobs`` processes (1: in this process), in bucket order,
    and what ``meanwhile`` returns (called in this process while the buckets run)."""
    todo = [b for b, paths in enumerate(runs) if paths]
    if jobs <= 1 or len(todo) <= 1:
        results = [run_bucket(b, runs[b], config, horizon, work_dir) for b in todo]
        return results, meanwhile()
    # largest buckets first so the processes finish together; "spawn": a fresh interpreter,
    # not a copy of this process's memory
    by_size = sorted(todo, key=lambda b: -sum(p.stat().st_size for p in runs[b]))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context) as pool:
        futures = {
            b: pool.submit(run_bucket, b, runs[b], config, horizon, work_dir) for b in by_size
        }
        other = meanwhile()
        return [futures[b].result() for b in todo], other


def _keyed_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as fh:
        yield from fh


def merge_keyed(work_dir: Path, buckets: list[int], kind: str, out: IO[bytes]) -> None:
    """Merge the buckets' ``kind`` lines (``t`` transitions, ``a`` actions) by key into ``out``,
    ties in bucket order, without the keys."""
    index = 0 if kind == "t" else 1
    sources = [_keyed_lines(_paths(work_dir, b)[index]) for b in buckets]
    write = out.write
    for line in heapq.merge(*sources, key=_key):
        write(line[KEY_WIDTH:])


def _key(line: bytes) -> bytes:
    return line[:KEY_WIDTH]


def merge_results(
    results: list[BucketResult], stats: StatsSettings
) -> tuple[PipelineReport, FlowStats]:
    """One pipeline report and one flow over all buckets (merged in bucket order)."""
    from stream.report.pipeline import PipelineReport

    report, flow = PipelineReport(stats=stats), FlowStats()
    for result in results:
        report.merge(result.report)
        flow.merge(result.flow)
    return report, flow
