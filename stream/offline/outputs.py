"""What a replay writes and counts: the output records and the flow statistics of the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import DAY_MS

if TYPE_CHECKING:
    from stream.core.engine import StepResult
    from stream.report.pipeline import PipelineReport

STRUCTURED_PROGRAMS = ("mql_nurture", "trial_nurture", "re_engagement", "expansion_nurture")
OPPORTUNITY_REASON = "crm.opportunity_created"
#: time-to-opportunity histogram bucket edges, in days (last bucket is open-ended)
TTO_EDGES: tuple[int, ...] = (0, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90)


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

    def drop_open_entries(self) -> None:
        """Forget the entries still waiting for an opportunity (about 0.13 kB per lead): for
        a finished run whose counts are all that is left to report."""
        self._open.clear()

    def merge(self, other: FlowStats) -> None:
        """Add the counts of a run over other leads (another bucket) to these."""
        for key, n in other.flows.items():
            self.flows[key] = self.flows.get(key, 0) + n
        for key, counts in other.tto.items():
            mine = self.tto.setdefault(key, [0] * len(TTO_EDGES))
            for i, n in enumerate(counts):
                mine[i] += n
        self._open.update(other._open)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flows": [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.flows.items())],
            "tto_edges_days": list(TTO_EDGES),
            "time_to_opportunity": {
                f"{p}|{g}": counts for (p, g), counts in sorted(self.tto.items())
            },
        }


class Recorder:
    """The sink of a replay run: writes every transition and action record (JSON Lines) and
    feeds the pipeline report and the flow statistics.

    With ``keyed``, each line starts with a 16-digit sort key, the running maximum of the run's
    step times (so it never decreases within the run); :func:`stream.offline.shards.merge_keyed`
    merges the runs of several buckets by it and strips it.
    """

    def __init__(
        self,
        write_transition: Callable[[bytes], Any],
        write_action: Callable[[bytes], Any],
        report: PipelineReport,
        flow: FlowStats,
        *,
        keyed: bool = False,
    ) -> None:
        self._t_write = write_transition
        self._a_write = write_action
        self.report = report
        self.flow = flow
        self.keyed = keyed
        self.key = 0
        self.transitions = 0
        self.actions = 0

    def __call__(self, result: StepResult) -> None:
        # records are written with the contract's RFC 3339 ``at``; the report and the flow
        # stats accept epoch ms, which spares them parsing it back
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        transitions, actions = result.transitions, result.actions
        prefix = b""
        if self.keyed and (transitions or actions):
            first = transitions[0].at if transitions else actions[0].at
            if first > self.key:
                self.key = first
            prefix = b"%016d" % self.key
        if transitions:
            add_transition, add_flow, write = (
                self.report.add_transition,
                self.flow.add_transition,
                self._t_write,
            )
            for tr in transitions:
                record = tr.to_record()
                write(prefix + dumps(record, option=newline))
                record["at"] = tr.at
                add_transition(record)
                add_flow(record)
            self.transitions += len(transitions)
        if actions:
            add_action, write = self.report.add_action, self._a_write
            for action in actions:
                record = action.to_record()
                write(prefix + dumps(record, option=newline))
                record["at"] = action.at
                add_action(record)
            self.actions += len(actions)
