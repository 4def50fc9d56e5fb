"""Backtest: the same events under two rule configurations, side by side.

One streaming pass over the file: each line is parsed once and fed to two
:class:`stream.offline.replay.EventTimeRunner` instances (same time model as replay). For each
config we keep a :class:`stream.report.PipelineReport` and, per lead, its *path*: the sequence of
``(to_program, to_state, reason)`` of its transitions. The result compares

* pipeline contribution per program and ICP tier (summed over cohorts; nurtured and holdout),
  with B against A: the rate difference and relative lift with 95% intervals and sample sizes
  (``not_enough_data`` below the rules' minimum; see :mod:`stream.report.stats`),
* entries per program,
* the leads whose path differs, with a deterministic sample showing the first divergence: the
  transition each config produced there (rule and signals) so a reader can see *why*.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.offline.order import Counts, all_events, iter_lines, read_events, scan
from stream.offline.runner import EventTimeRunner, open_events, replay_collector
from stream.report.html import contribution_rows
from stream.report.stats import StatsSettings, compare_rates
from topics.parse import InvalidEvent

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.core.engine import StepResult
    from stream.core.model import Event

Step = tuple[str, str | None, str, bytes]  # to_program, to_state, reason, signals (JSON)


@dataclass(slots=True)
class _Side:
    label: str
    paths: dict[str, list[Step]] = field(default_factory=dict)
    report: Any = None
    transitions: int = 0
    actions: int = 0

    def sink(self, result: StepResult) -> None:
        for tr in result.transitions:
            record = tr.to_record()
            self.report.add_transition(record)
            self.paths.setdefault(tr.lead_id, []).append(
                (tr.to_program, tr.to_state, tr.reason, orjson.dumps(record["signals"]))
            )
        for action in result.actions:
            self.report.add_action(action.to_record())
        self.transitions += len(result.transitions)
        self.actions += len(result.actions)


def _entries(pipeline: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in contribution_rows(pipeline):
        out[row["program"]] = out.get(row["program"], 0) + row["entries"]
    return out


def compare_contribution(
    a: dict[str, Any], b: dict[str, Any], stats: StatsSettings | None = None
) -> list[dict[str, Any]]:
    """Rows per program x tier x group with both configs' entries, opportunities and rates,
    and B against A (:func:`stream.report.stats.compare_rates`, B treated, A control): the
    rate difference and relative lift with their intervals, or ``not_enough_data``."""
    stats = stats or StatsSettings()
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for side, pipeline in (("a", a), ("b", b)):
        for row in contribution_rows(pipeline):
            key = (row["program"], row["tier"], row["group"])
            out = rows.setdefault(key, {"program": key[0], "tier": key[1], "group": key[2]})
            out[f"{side}_entries"] = row["entries"]
            out[f"{side}_opportunities"] = row["opportunities"]
            out[f"{side}_rate"] = row["rate"]
    result = []
    for key in sorted(rows):
        row = rows[key]
        for side in ("a", "b"):
            row.setdefault(f"{side}_entries", 0)
            row.setdefault(f"{side}_opportunities", 0)
            row.setdefault(f"{side}_rate", None)
        ra, rb = row["a_rate"], row["b_rate"]
        row["rate_delta"] = round(rb - ra, 4) if ra is not None and rb is not None else None
        if row["a_entries"] or row["b_entries"]:
            row["b_vs_a"] = compare_rates(
                (row["b_opportunities"], row["b_entries"]),
                (row["a_opportunities"], row["a_entries"]),
                stats,
            )
            result.append(row)
    return result


def _first_divergence(pa: list[Step], pb: list[Step]) -> int:
    for i, (x, y) in enumerate(zip(pa, pb, strict=False)):
        if x[:3] != y[:3]:
            return i
    return min(len(pa), len(pb))


def _describe(path: list[Step], i: int) -> dict[str, Any] | None:
    if i >= len(path):
        return None
    program, state, reason, signals = path[i]
    return {
        "to_program": program,
        "to_state": state,
        "reason": reason,
        "signals": orjson.loads(signals),
    }


def _same_path(pa: list[Step], pb: list[Step]) -> bool:
    return len(pa) == len(pb) and all(x[:3] == y[:3] for x, y in zip(pa, pb, strict=True))


def _events(
    fh: Any, tmp: Path, until: int | None, order: str, counts: dict[str, int]
) -> Iterator[Event]:
    """The file's valid events up to ``until``, in replay's ``order``; counts as it goes."""

    def dead(number: int, raw: bytes, exc: InvalidEvent) -> None:
        counts["dead_letters"] += 1

    if order == "time":
        found = scan(iter_lines(fh), tmp, dead, until=until)
        counts["events"] = found.events
        yield from all_events(found)
        return
    seen = Counts()
    for _, event in read_events(iter_lines(fh), dead, seen, until):
        counts["events"] = seen.events
        yield event


def backtest_file(
    events_path: Path,
    config_a: RulesConfig,
    config_b: RulesConfig,
    *,
    labels: tuple[str, str] = ("A", "B"),
    until: int | None = None,
    sample: int = 10,
    order: str = "time",
) -> dict[str, Any]:
    """Run both configs over the file in one pass; returns the comparison document. ``order``
    is replay's (:func:`stream.offline.replay.replay_file`): event time by default."""
    from stream.report.pipeline import PipelineReport

    sides = (_Side(labels[0]), _Side(labels[1]))
    runners = []
    for side, config in zip(sides, (config_a, config_b), strict=True):
        side.report = PipelineReport()
        runners.append(EventTimeRunner(config, side.sink))
    counts = {"events": 0, "dead_letters": 0}
    with replay_collector():
        with open_events(events_path) as fh, tempfile.TemporaryDirectory(prefix="bt-") as tmp:
            for event in _events(fh, Path(tmp), until, order, counts):
                for runner in runners:
                    runner.process(event)
        for runner in runners:
            runner.finish(until)
    events, dead = counts["events"], counts["dead_letters"]
    a, b = sides
    leads = sorted(set(a.paths) | set(b.paths))
    differing = [
        lead for lead in leads if not _same_path(a.paths.get(lead, []), b.paths.get(lead, []))
    ]
    picked = sorted(differing, key=lambda lead: (zlib.crc32(lead.encode()), lead))[:sample]
    samples = []
    for lead in sorted(picked):
        pa, pb = a.paths.get(lead, []), b.paths.get(lead, [])
        i = _first_divergence(pa, pb)
        samples.append(
            {
                "lead_id": lead,
                "diverges_at_transition": i,
                "common_prefix": [f"{p}/{s}" for p, s, _, _ in pa[:i]],
                a.label: _describe(pa, i),
                b.label: _describe(pb, i),
                f"{a.label}_path": [f"{p}/{s} ({r})" for p, s, r, _ in pa],
                f"{b.label}_path": [f"{p}/{s} ({r})" for p, s, r, _ in pb],
            }
        )
    pipe_a, pipe_b = a.report.to_dict(), b.report.to_dict()
    return {
        "labels": list(labels),
        "events": events,
        "dead_letters": dead,
        "leads": len(leads),
        "transitions": {a.label: a.transitions, b.label: b.transitions},
        "actions": {a.label: a.actions, b.label: b.actions},
        "entries": {a.label: _entries(pipe_a), b.label: _entries(pipe_b)},
        "contribution": compare_contribution(pipe_a, pipe_b, StatsSettings.from_rules(config_a)),
        "differing_leads": len(differing),
        "sample": samples,
    }
