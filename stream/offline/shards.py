"""Time-ordered replay by bucket, in one process or several, merged in a fixed order.

Each bucket of :func:`stream.offline.order.scan` is replayed on its own (its own clock and
timer heap): lead bucket ``b`` through the lead core, account bucket ``b`` (the events that
reach an account, bucketed by ``account_id``) through the account core. Leads are independent
of each other, and so are accounts; a bucket's events are in event-time order, so every lead and
every account sees exactly the inputs it would in one global run, and its timers fire up to the
run's global horizon. A bucket writes keyed output lines (see
:class:`stream.offline.outputs.Recorder`) and returns its counts and its report *totals*
(counts and times, kilobytes: the per-lead and per-account facts stay in the bucket process).

:class:`stream.offline.merge.OutputMerge` then merges the buckets' lines by key, ties by
bucket number, and :func:`merge_reports` adds up their totals. Buckets are fixed (not derived
from the number of processes), so the outputs are byte-identical whatever ``jobs`` is. Memory:
a process holds one bucket's states at a time; the parent holds totals.
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from stream.offline.jobs import Jobs
from stream.offline.merge import output_path
from stream.offline.order import Scan, bucket_events
from stream.offline.outputs import FlowStats, Recorder
from stream.offline.runner import EventTimeRunner, replay_collector

if TYPE_CHECKING:
    from stream.accounts.model import AccountStep
    from stream.core.config import RulesConfig
    from stream.report.pipeline import PipelineTotals
    from stream.report.postsale import PostSaleTotals
    from stream.report.stats import StatsSettings

#: CPU per byte of an account bucket's runs against a lead bucket's (measured on the 100k-lead
#: file, 07:05: 0.21 against 0.24 CPU s per MB), so the largest work is started first and the
#: smallest ends the phase
ACCOUNT_WEIGHT = 0.9


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
    """What a lead bucket hands back."""

    bucket: int
    transitions: int
    actions: int
    timers_fired: int
    leads: int
    pending_timers: int
    report: PipelineTotals
    flow: FlowStats
    peak_rss_mb: float
    cpu_seconds: float


@dataclass(slots=True)
class AccountBucketResult:
    """What an account bucket hands back."""

    bucket: int
    transitions: int
    actions: int
    timers_fired: int
    accounts: int
    post_sale: PostSaleTotals
    peak_rss_mb: float
    cpu_seconds: float


def run_bucket(
    bucket: int, runs: list[Path], config: RulesConfig, horizon: int | None, work_dir: Path
) -> BucketResult:
    """Replay one lead bucket's events; its keyed outputs go to ``work_dir``."""
    from stream.report.pipeline import PipelineReport

    began = time.process_time()
    with (
        replay_collector(),
        open(output_path(work_dir, "t", bucket), "wb", buffering=1 << 20) as t_out,
        open(output_path(work_dir, "a", bucket), "wb", buffering=1 << 20) as a_out,
    ):
        recorder = Recorder(t_out.write, a_out.write, PipelineReport(), FlowStats(), keyed=True)
        runner = EventTimeRunner(config, recorder)
        for event in bucket_events(runs):
            runner.process(event)
        if horizon is not None:
            runner.fire_until(horizon)
    recorder.flow.drop_open_entries()  # the bucket's leads are done: only the counts travel
    return BucketResult(
        bucket=bucket,
        transitions=recorder.transitions,
        actions=recorder.actions,
        timers_fired=runner.timers_fired,
        leads=len(runner.states),
        pending_timers=runner.pending_timers,
        report=recorder.report.totals(),
        flow=recorder.flow,
        peak_rss_mb=peak_rss_mb(),
        cpu_seconds=time.process_time() - began,
    )


class _AccountRecorder:
    """The account driver's sink: keyed contract records, as :class:`Recorder` writes them."""

    def __init__(self, t_out: IO[bytes], a_out: IO[bytes]) -> None:
        self._t, self._a = t_out.write, a_out.write
        self.key = 0
        self.transitions = 0
        self.actions = 0

    def __call__(self, _account_id: str, result: AccountStep) -> None:
        transitions, actions = result.transitions, result.actions
        if not transitions and not actions:
            return
        first = transitions[0].at if transitions else actions[0].at
        if first > self.key:
            self.key = first
        prefix = b"%016d" % self.key
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        for t in transitions:
            self._t(prefix + dumps(t.to_record(), option=newline))
        for a in actions:
            self._a(prefix + dumps(a.to_record(), option=newline))
        self.transitions += len(transitions)
        self.actions += len(actions)


def run_account_bucket(
    bucket: int, runs: list[Path], config: RulesConfig, horizon: int | None, work_dir: Path
) -> AccountBucketResult:
    """Replay one account bucket's events through the account core (timers up to
    ``horizon``); its keyed outputs go to ``work_dir``, its post-sale totals are returned."""
    from stream.accounts.driver import AccountDriver
    from stream.report.postsale import PostSaleTotals

    began = time.process_time()
    with (
        replay_collector(),
        open(output_path(work_dir, "at", bucket), "wb", buffering=1 << 20) as t_out,
        open(output_path(work_dir, "aa", bucket), "wb", buffering=1 << 20) as a_out,
    ):
        recorder = _AccountRecorder(t_out, a_out)
        driver = AccountDriver(config, sink=recorder)
        for event in bucket_events(runs):
            driver.feed(event)
        driver.finish(horizon)
    totals = PostSaleTotals()
    accounts = 0
    for run in driver.accounts.values():
        if run.state is not None:
            accounts += 1
            totals.add(run.state, horizon, config.accounts)
    return AccountBucketResult(
        bucket=bucket,
        transitions=recorder.transitions,
        actions=recorder.actions,
        timers_fired=driver.timers_fired,
        accounts=accounts,
        post_sale=totals,
        peak_rss_mb=peak_rss_mb(),
        cpu_seconds=time.process_time() - began,
    )


def run_buckets(
    found: Scan, config: RulesConfig, horizon: int | None, work_dir: Path, jobs: Jobs
) -> tuple[list[BucketResult], list[AccountBucketResult]]:
    """Every non-empty lead and account bucket, on ``jobs``; the results in bucket order."""
    leads = [b for b, paths in enumerate(found.runs) if paths]
    accounts = [b for b, paths in enumerate(found.extra) if paths]
    # the largest work first, so the processes finish together
    order = sorted(
        [("lead", b, _size(found.runs[b])) for b in leads]
        + [("account", b, ACCOUNT_WEIGHT * _size(found.extra[b])) for b in accounts],
        key=lambda task: -task[2],
    )
    lead_futures: dict[int, Future[BucketResult]] = {}
    account_futures: dict[int, Future[AccountBucketResult]] = {}
    for kind, b, _ in order:
        if kind == "lead":
            lead_futures[b] = jobs.submit(run_bucket, b, found.runs[b], config, horizon, work_dir)
        else:
            account_futures[b] = jobs.submit(
                run_account_bucket, b, found.extra[b], config, horizon, work_dir
            )
    return (
        [lead_futures[b].result() for b in leads],
        [account_futures[b].result() for b in accounts],
    )


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


#: the pipeline report, the flow statistics, the post-sale section and the lift rows
Sections = tuple[dict[str, Any], FlowStats, dict[str, Any], list[dict[str, Any]]]


def merge_reports(
    leads: list[BucketResult],
    accounts: list[AccountBucketResult],
    stats: StatsSettings,
    window_days: int,
    horizon: int | None,
) -> Sections:
    """The report sections over every bucket (a task: the intervals of the report cost seconds
    at 100k leads, and run while the outputs merge)."""
    from stream.report.stats import lift_rows

    pipeline, flow = merge_results(leads, stats, window_days)
    return pipeline, flow, merge_post_sale(accounts, horizon), lift_rows(pipeline, stats)


def merge_results(
    results: list[BucketResult], stats: StatsSettings, window_days: int
) -> tuple[dict[str, Any], FlowStats]:
    """The pipeline report and the flow over all lead buckets (merged in bucket order)."""
    from stream.report.pipeline import PipelineTotals

    totals, flow = PipelineTotals(), FlowStats()
    for result in results:
        totals.merge(result.report)
        flow.merge(result.flow)
    return totals.to_dict(window_days, stats), flow


def merge_post_sale(results: list[AccountBucketResult], horizon: int | None) -> dict[str, Any]:
    """The post-sale report section over all account buckets (merged in bucket order)."""
    from stream.report.postsale import PostSaleTotals

    totals = PostSaleTotals()
    for result in results:
        totals.merge(result.post_sale)
    doc = totals.to_dict(horizon)
    doc["accounts"] = sum(r.accounts for r in results)
    doc["transitions"] = sum(r.transitions for r in results)
    doc["actions"] = sum(r.actions for r in results)
    doc["timers_fired"] = sum(r.timers_fired for r in results)
    return doc
