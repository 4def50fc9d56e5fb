"""Replay: the pure core over a file of contract events, in event time.

``nurture replay EVENTS.jsonl --out DIR`` (see :mod:`stream.commands.replay`) calls
:func:`replay_file`. The same :class:`EventTimeRunner` drives :mod:`stream.offline.backtest`.

Time model (the assumptions a reader needs to compare replay with the live worker):

* Each line is parsed with :func:`topics.parse.parse_event` (no key, as a file has none), so
  replay dead-letters exactly the lines the worker would; blank lines are skipped silently.
* ``order="time"`` (the default): events are processed in event-time order whatever the file
  order, ``(occurred_at, lead_id, line)``, so one lead's ties keep file order (an external sort
  in bounded memory, :mod:`stream.offline.order`). How many events arrived out of order, and by
  how much, is counted (``late_events``, ``lateness``). Every phase runs on ``jobs`` processes
  (:mod:`stream.offline.jobs`): the file is scanned in parts (:mod:`stream.offline.parts`),
  leads and accounts are replayed by bucket (:mod:`stream.offline.shards`), the outputs merged
  in time ranges (:mod:`stream.offline.merge`); the outputs do not depend on ``jobs``.
* ``order="file"``: events are processed in file order even when late (``occurred_at`` below
  the clock), in one process: for a dump already in arrival order, such as a topic export.
* Replay's clock is the *event-time watermark*: the largest ``occurred_at`` seen so far. Before
  an event is processed the clock moves to ``max(clock, event.at)`` and every pending timer with
  ``due <= clock`` fires, in ``(due, lead_id, timer_id)`` order (:mod:`stream.offline.runner`).
  Timers that a step schedules at or before the clock (a late event whose checkpoint is already
  in the past) therefore fire before the next input, the replay analogue of "fires at once".
* At the end, every timer with ``due <= until`` fires (including timers scheduled by those
  firings). ``until`` defaults to the latest event time seen. With an explicit ``until``, events
  that occur after it are skipped (counted in ``ReplayStats.after_until``), so ``--until`` is a
  horizon: the run is the world as it stood at that instant.
* Duplicate ``event_id`` handling is the engine's (the lead state remembers ids), as in the worker.

Outputs are deterministic: same input and config, byte-identical files. In time order the
records are ordered by step time per bucket, buckets merged by time. Nothing here reads the
wall clock except the optional progress bar and the phase timings of the summary line.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from stream.core.model import ms_to_rfc3339
from stream.offline.order import Counts, DeadSink, iter_lines, read_events
from stream.offline.outputs import TTO_EDGES, FlowStats, Recorder
from stream.offline.runner import (
    REPLAY_GC_THRESHOLD,
    EventTimeRunner,
    dead_letter_line,
    open_events,
    replay_collector,
)
from topics.parse import InvalidEvent

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.offline.shards import Sections

__all__ = [
    "REPLAY_GC_THRESHOLD",
    "TTO_EDGES",
    "EventTimeRunner",
    "FlowStats",
    "ReplayStats",
    "iter_lines",
    "open_events",
    "replay_file",
]

ORDERS = ("time", "file")
#: time ranges per job in which the outputs are merged (more ranges than processes: a process
#: slowed down by other work on the machine holds the others up for less long)
MERGE_RANGES_PER_JOB = 2


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    events: int = 0
    dead_letters: int = 0
    after_until: int = 0
    late_events: int = 0  # occurred_at below the largest on an earlier line (file order)
    timers_fired: int = 0
    transitions: int = 0
    actions: int = 0
    leads: int = 0
    pending_timers_at_end: int = 0
    first_event_at: str | None = None
    last_event_at: str | None = None
    until: str | None = None
    config_version: str | None = None
    order: str = "time"
    jobs: int = 1
    #: late_events in detail: count and max / p50 / p90 / p99 lateness in hours
    lateness: dict[str, Any] = field(default_factory=dict)
    #: peak RSS of the largest bucket process (MB; time order with jobs > 1)
    worker_peak_rss_mb: float | None = field(default=None, compare=False)
    #: CPU seconds by phase (time order), of every process together: scan (the parts of the
    #: file), leads and accounts (the buckets), merge (the outputs and the report)
    cpu_seconds: dict[str, float] = field(default_factory=dict, compare=False)
    #: wall-clock seconds by phase (time order): scan, buckets, merge
    wall_seconds: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """For report.json: without ``jobs``, the worker peak and the CPU times, which say how
        the run went, not what it found (the outputs are the same whatever ``jobs`` is)."""
        doc = asdict(self)
        del doc["jobs"], doc["worker_peak_rss_mb"], doc["cpu_seconds"], doc["wall_seconds"]
        return doc


class _Progress:
    """A rich progress bar over bytes read, on stderr; a no-op when disabled."""

    def __init__(self, fh: IO[bytes], total: int, enabled: bool) -> None:
        self.enabled = enabled
        self._raw: Any = fh.fileobj if isinstance(fh, gzip.GzipFile) else fh
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("replay"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[events]} events"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("replay", total=total, events=0)
            self._bar.start()

    def update(self, events: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self._raw.tell(), events=events)

    def close(self, events: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self._bar.tasks[0].total, events=events)
            self._bar.stop()


def _ms_text(ms: int | None) -> str | None:
    return None if ms is None else ms_to_rfc3339(ms)


def replay_file(
    events_path: Path,
    out_dir: Path,
    config: RulesConfig,
    *,
    until: int | None = None,
    progress: bool = False,
    html: bool = True,
    order: str = "time",
    jobs: int = 1,
) -> ReplayStats:
    """Replay ``events_path`` and write transitions, actions, dead letters and reports to
    ``out_dir`` (created). Returns the run's counts; it never holds the whole file in memory."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = ReplayStats(config_version=str(getattr(config, "version", None)), order=order)
    with (
        open(out_dir / "dead_letter.jsonl", "wb") as d_out,
        open_events(events_path) as fh,
    ):

        def dead(number: int, raw: bytes, exc: InvalidEvent) -> None:
            d_out.write(orjson.dumps(dead_letter_line(number, raw, exc)) + b"\n")

        bar = _Progress(fh, os.path.getsize(events_path), progress)
        run = _Run(events_path, fh, out_dir, config, until, dead, d_out, stats, bar)
        try:
            if order == "file":
                pipeline, flow, post_sale, lift = _in_file_order(run)
            else:
                stats.jobs = max(1, jobs)
                pipeline, flow, post_sale, lift = _in_time_order(run)
        finally:
            bar.close(stats.events)
    doc = {
        "replay": stats.to_dict(),
        "pipeline": pipeline,
        "flow": flow.to_dict(),
        "lift": lift,
        "post_sale": post_sale,
    }
    (out_dir / "report.json").write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    if html:
        from stream.report.html import render_html

        (out_dir / "report.html").write_text(render_html(doc), encoding="utf-8")
    return stats


@dataclass(slots=True)
class _Run:
    """What both orders read from and write to."""

    path: Path
    fh: IO[bytes]
    out_dir: Path
    config: RulesConfig
    until: int | None
    dead: DeadSink
    dead_out: IO[bytes]
    stats: ReplayStats
    bar: _Progress


def _in_time_order(run: _Run) -> Sections:
    from stream.offline.jobs import Jobs
    from stream.offline.merge import OutputMerge
    from stream.offline.parts import scan_file
    from stream.offline.shards import merge_reports, run_buckets
    from stream.report.pipeline import DEFAULT_WINDOW_DAYS
    from stream.report.stats import StatsSettings

    out_dir, config, until, stats = run.out_dir, run.config, run.until, run.stats
    with (
        tempfile.TemporaryDirectory(prefix=".replay-", dir=out_dir) as tmp,
        Jobs(stats.jobs) as jobs,
    ):
        work = Path(tmp)
        began, wall = jobs.cpu_seconds(), [time.perf_counter()]
        found, cuts = scan_file(
            run.fh,
            run.path,
            work,
            jobs,
            run.dead_out,
            until=until,
            on_line=run.bar.update,
            ranges=MERGE_RANGES_PER_JOB * jobs.jobs if jobs.parallel else 1,
        )
        scanned = jobs.cpu_seconds()
        wall.append(time.perf_counter())
        horizon = found.last_at if until is None else until
        leads, accounts = run_buckets(found, config, horizon, work, jobs)
        merging = jobs.cpu_seconds()
        wall.append(time.perf_counter())
        # the report's intervals are computed while the outputs merge
        sections = jobs.submit(
            merge_reports,
            leads,
            accounts,
            StatsSettings.from_rules(config),
            DEFAULT_WINDOW_DAYS,
            horizon,
        )
        buckets = {"lead": [r.bucket for r in leads], "account": [r.bucket for r in accounts]}
        OutputMerge(jobs, work, out_dir, buckets, cuts).finish()
        result = sections.result()
        merged = jobs.cpu_seconds()
        wall.append(time.perf_counter())
    stats.cpu_seconds = {
        "scan": round(scanned - began, 2),
        "leads": round(sum(r.cpu_seconds for r in leads), 2),
        "accounts": round(sum(r.cpu_seconds for r in accounts), 2),
        "merge": round(merged - merging, 2),
    }
    stats.wall_seconds = {
        phase: round(end - start, 2)
        for phase, start, end in zip(("scan", "buckets", "merge"), wall, wall[1:], strict=False)
    }
    _set_counts(stats, found, horizon)
    stats.timers_fired = sum(r.timers_fired for r in leads)
    stats.transitions = sum(r.transitions for r in leads)
    stats.actions = sum(r.actions for r in leads)
    stats.leads = sum(r.leads for r in leads)
    stats.pending_timers_at_end = sum(r.pending_timers for r in leads)
    if stats.jobs > 1 and len(leads) + len(accounts) > 1:
        peaks = [r.peak_rss_mb for r in leads] + [r.peak_rss_mb for r in accounts]
        stats.worker_peak_rss_mb = round(max(peaks), 1)
    return result


def _set_counts(stats: ReplayStats, counts: Counts, horizon: int | None) -> None:
    stats.lines, stats.events = counts.lines, counts.events
    stats.dead_letters, stats.after_until = counts.dead_letters, counts.after_until
    stats.late_events = counts.lateness.count
    stats.lateness = counts.lateness.to_dict()
    stats.first_event_at = _ms_text(counts.first_at)
    stats.last_event_at = _ms_text(counts.last_at)
    stats.until = _ms_text(horizon)


def _in_file_order(run: _Run) -> Sections:
    from stream.offline.accounts import AccountReplay
    from stream.report.pipeline import PipelineReport
    from stream.report.stats import StatsSettings, lift_rows

    out_dir, config, until, stats = run.out_dir, run.config, run.until, run.stats
    counts = Counts()
    with (
        open(out_dir / "transitions.jsonl", "wb", buffering=1 << 20) as t_out,
        open(out_dir / "actions.jsonl", "wb", buffering=1 << 20) as a_out,
        AccountReplay(out_dir, config) as accounts,
    ):
        report = PipelineReport(stats=StatsSettings.from_rules(config))
        recorder = Recorder(t_out.write, a_out.write, report, FlowStats())
        runner = EventTimeRunner(config, recorder)
        with replay_collector():
            for _, event in read_events(iter_lines(run.fh), run.dead, counts, until):
                runner.process(event)
                accounts.feed(event)
                if counts.events % 20000 == 0:
                    run.bar.update(counts.events)
            horizon = runner.finish(until)
            post_sale = accounts.finish(horizon)
    _set_counts(stats, counts, horizon)
    stats.transitions, stats.actions = recorder.transitions, recorder.actions
    stats.timers_fired = runner.timers_fired
    stats.leads = len(runner.states)
    stats.pending_timers_at_end = runner.pending_timers
    pipeline = recorder.report.to_dict()
    return pipeline, recorder.flow, post_sale, lift_rows(pipeline, report.stats)
