"""Replay: the pure core over a file of contract events, in file order, in event time.

``nurture replay EVENTS.jsonl --out DIR`` (see :mod:`stream.commands.replay`) calls
:func:`replay_file`. The same :class:`EventTimeRunner` drives :mod:`stream.offline.backtest`.

Time model (the assumptions a reader needs to compare replay with the live worker):

* Each line is parsed with :func:`topics.parse.parse_event` (no key, as a file has none), so
  replay dead-letters exactly the lines the worker would; blank lines are skipped silently.
* Replay's clock is the *event-time watermark*: the largest ``occurred_at`` seen so far. Before
  an event is processed the clock moves to ``max(clock, event.at)`` and every pending timer with
  ``due <= clock`` fires, in ``(due, lead_id, timer_id)`` order across all leads (one global heap).
  Timers that a step schedules at or before the clock (a late event whose checkpoint is already
  in the past) therefore fire before the next input, the replay analogue of "fires at once".
* Events are processed in file order even when late (``occurred_at`` below the clock).
* At the end, every timer with ``due <= until`` fires (including timers scheduled by those
  firings). ``until`` defaults to the latest event time seen. With an explicit ``until``, events
  that occur after it are skipped (counted in ``ReplayStats.after_until``), so ``--until`` is a
  horizon: the run is the world as it stood at that instant.
* Duplicate ``event_id`` handling is the engine's (the lead state remembers ids), as in the worker.

Outputs are deterministic: same input and config, byte-identical files. Nothing here reads the
wall clock except the optional progress bar.
"""

from __future__ import annotations

import base64
import gc
import gzip
import heapq
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from stream.core.fastnew import slot_factory
from stream.core.model import DAY_MS, Event, TimerFired, ms_to_rfc3339
from topics.parse import InvalidEvent, parse_event

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.core.engine import StepResult

STRUCTURED_PROGRAMS = ("mql_nurture", "trial_nurture", "re_engagement", "expansion_nurture")
OPPORTUNITY_REASON = "crm.opportunity_created"
#: time-to-opportunity histogram bucket edges, in days (last bucket is open-ended)
TTO_EDGES: tuple[int, ...] = (0, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90)

#: garbage-collector thresholds while replaying (see :func:`replay_file`)
REPLAY_GC_THRESHOLD = (50_000, 20, 100)

_new_timer_fired = slot_factory(TimerFired)  # TimerFired(...), built faster

StepSink = Callable[["StepResult"], None]


def open_events(path: Path) -> IO[bytes]:
    """Open an events file for binary line reading; gzip is detected by its magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def iter_lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its end-of-line) for every non-blank line."""
    for number, line in enumerate(fh, 1):
        stripped = line.rstrip(b"\r\n")
        if stripped and not stripped.isspace():  # == stripped.strip(), without the copy
            yield number, stripped


def dead_letter_line(number: int, raw: bytes, error: InvalidEvent) -> dict[str, Any]:
    """The record written to DIR/dead_letter.jsonl for a rejected line."""
    record: dict[str, Any] = {"line": number, "reason": error.reason, "detail": error.detail}
    try:
        record["original_text"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["original"] = base64.b64encode(raw).decode()
    return record


class EventTimeRunner:
    """The engine over a stream of events in event time (see the module docstring).

    ``sink`` receives every :class:`StepResult` in processing order.
    """

    def __init__(
        self, config: RulesConfig, sink: StepSink, step: Callable[..., Any] | None = None
    ) -> None:
        if step is None:
            from stream.core.engine import step as engine_step

            step = engine_step
        self._step: Callable[..., Any] = step
        self.config = config
        self.sink = sink
        self.states: dict[str, Any] = {}
        self.pending: dict[str, dict[str, int]] = {}
        self.heap: list[tuple[int, str, str]] = []
        self.clock: int | None = None
        self.timers_fired = 0
        self._last: dict[str, Any] = {}  # lead -> the timers tuple of its last step

    def _apply(self, lead_id: str, inp: Event | TimerFired) -> None:
        result = self._step(self.states.get(lead_id), inp, self.config)
        self.states[lead_id] = result.state
        timers = result.timers
        if timers is self._last.get(lead_id):
            self.sink(result)  # the engine returned the very same timers: nothing to index
            return
        self._last[lead_id] = timers
        old = self.pending.get(lead_id)
        if timers:
            new = {t.timer_id: t.due for t in timers}
            if new != old:
                heap = self.heap
                for timer_id, due in new.items():
                    if old is None or old.get(timer_id) != due:
                        heapq.heappush(heap, (due, lead_id, timer_id))
                self.pending[lead_id] = new
        elif old is not None:
            del self.pending[lead_id]
        self.sink(result)

    def fire_until(self, until: int) -> None:
        """Fire every pending timer with ``due <= until``, in (due, lead, timer) order."""
        heap = self.heap
        pending = self.pending
        while heap and heap[0][0] <= until:
            due, lead_id, timer_id = heapq.heappop(heap)
            timers = pending.get(lead_id)
            if timers is None or timers.get(timer_id) != due:
                continue  # cancelled or rescheduled: a stale heap entry
            self.timers_fired += 1
            self._apply(lead_id, _new_timer_fired(lead_id, timer_id, due))

    def process(self, event: Event) -> None:
        clock = self.clock
        if clock is None or event.at > clock:
            clock = self.clock = event.at
        if self.heap and self.heap[0][0] <= clock:
            self.fire_until(clock)
        self._apply(event.lead_id, event)

    def finish(self, until: int | None = None) -> int | None:
        """Fire the timers due up to ``until`` (default: the clock). Returns the horizon used."""
        horizon = self.clock if until is None else until
        if horizon is not None:
            self.fire_until(horizon)
        return horizon

    @property
    def pending_timers(self) -> int:
        return sum(len(t) for t in self.pending.values())


@dataclass(slots=True)
class FlowStats:
    """What the HTML report draws beyond :class:`stream.report.PipelineReport`: program flow
    (entries, exits, handoffs between programs) and raw time-to-opportunity distributions.

    Time-to-opportunity follows the pipeline report's rule: each entry into a structured program
    converts at the lead's first ``crm.opportunity_created`` transition at or after it.
    """

    flows: dict[tuple[str, str], int] = field(default_factory=dict)
    # per program and group (nurtured/holdout): histogram counts over TTO_EDGES
    tto: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    _open: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)

    def add_transition(self, record: dict[str, Any]) -> None:
        """``record`` is a transition record whose ``at`` is epoch ms (an int)."""
        src = record["from_program"] or "(new)"
        dst = record["to_program"]
        if src != dst:
            key = (src, dst)
            self.flows[key] = self.flows.get(key, 0) + 1
        lead_id = record["lead_id"]
        if dst in STRUCTURED_PROGRAMS and src != dst:
            signals = record["signals"]
            group = "holdout" if signals.get("holdout") is True else "nurtured"
            self._open.setdefault(lead_id, []).append((dst, record["at"], group))
        if record["reason"] == OPPORTUNITY_REASON:
            entries = self._open.get(lead_id)
            if not entries:
                return
            at = record["at"]
            keep = []
            for program, entered, group in entries:
                if entered <= at:
                    self._bucket(program, group, (at - entered) / DAY_MS)
                else:
                    keep.append((program, entered, group))
            self._open[lead_id] = keep

    def _bucket(self, program: str, group: str, days: float) -> None:
        counts = self.tto.setdefault((program, group), [0] * len(TTO_EDGES))
        index = 0
        for i, edge in enumerate(TTO_EDGES):
            if days >= edge:
                index = i
        counts[index] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "flows": [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.flows.items())],
            "tto_edges_days": list(TTO_EDGES),
            "time_to_opportunity": {
                f"{p}|{g}": counts for (p, g), counts in sorted(self.tto.items())
            },
        }


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    events: int = 0
    dead_letters: int = 0
    after_until: int = 0
    late_events: int = 0
    timers_fired: int = 0
    transitions: int = 0
    actions: int = 0
    leads: int = 0
    pending_timers_at_end: int = 0
    first_event_at: str | None = None
    last_event_at: str | None = None
    until: str | None = None
    config_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
) -> ReplayStats:
    """Replay ``events_path`` and write transitions, actions, dead letters and reports to
    ``out_dir`` (created). Returns the run's counts; it never holds the whole file in memory."""
    from stream.offline.accounts import AccountReplay
    from stream.report.pipeline import PipelineReport

    out_dir.mkdir(parents=True, exist_ok=True)
    report = PipelineReport()
    flow = FlowStats()
    stats = ReplayStats(config_version=str(getattr(config, "version", None)))
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    first_at: int | None = None

    with (
        open(out_dir / "transitions.jsonl", "wb", buffering=1 << 20) as t_out,
        open(out_dir / "actions.jsonl", "wb", buffering=1 << 20) as a_out,
        open(out_dir / "dead_letter.jsonl", "wb") as d_out,
        open_events(events_path) as fh,
        AccountReplay(out_dir, config) as accounts,
    ):
        t_write, a_write = t_out.write, a_out.write
        add_transition, add_flow, add_action = (
            report.add_transition,
            flow.add_transition,
            report.add_action,
        )

        def sink(result: StepResult) -> None:
            # records are written with the contract's RFC 3339 ``at``; the report and the flow
            # stats accept epoch ms, which spares them parsing it back
            transitions, actions = result.transitions, result.actions
            if transitions:
                for tr in transitions:
                    record = tr.to_record()
                    t_write(dumps(record, option=newline))
                    record["at"] = tr.at
                    add_transition(record)
                    add_flow(record)
                stats.transitions += len(transitions)
            if actions:
                for action in actions:
                    record = action.to_record()
                    a_write(dumps(record, option=newline))
                    record["at"] = action.at
                    add_action(record)
                stats.actions += len(actions)

        runner = EventTimeRunner(config, sink)
        bar = _Progress(fh, os.path.getsize(events_path), progress)
        gc_threshold = gc.get_threshold()
        # The run allocates many short-lived containers per event and no reference cycles of
        # its own: move start-up objects (modules, config) out of the collector's reach and
        # collect the young generation less often. About 10% of the core loop's CPU time.
        # Restored (and unfrozen) when the run ends, so callers in the same process see the
        # collector as they left it.
        gc.freeze()
        gc.set_threshold(*REPLAY_GC_THRESHOLD)
        try:
            for number, raw in iter_lines(fh):
                stats.lines = number
                try:
                    event = parse_event(raw)
                except InvalidEvent as exc:
                    stats.dead_letters += 1
                    d_out.write(dumps(dead_letter_line(number, raw, exc)) + b"\n")
                    continue
                if until is not None and event.at > until:
                    stats.after_until += 1
                    continue
                if runner.clock is not None and event.at < runner.clock:
                    stats.late_events += 1
                if first_at is None or event.at < first_at:
                    first_at = event.at
                stats.events += 1
                runner.process(event)
                accounts.feed(event)
                if progress and stats.events % 20000 == 0:
                    bar.update(stats.events)
            horizon = runner.finish(until)
            post_sale = accounts.finish(horizon)
        finally:
            gc.set_threshold(*gc_threshold)
            gc.unfreeze()
            bar.close(stats.events)

    stats.timers_fired = runner.timers_fired
    stats.leads = len(runner.states)
    stats.pending_timers_at_end = runner.pending_timers
    stats.first_event_at = _ms_text(first_at)
    stats.last_event_at = _ms_text(runner.clock)
    stats.until = _ms_text(horizon)
    doc = {
        "replay": stats.to_dict(),
        "pipeline": report.to_dict(),
        "flow": flow.to_dict(),
        "post_sale": post_sale,
    }
    (out_dir / "report.json").write_bytes(
        dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    if html:
        from stream.report.html import render_html

        (out_dir / "report.html").write_text(render_html(doc), encoding="utf-8")
    return stats
