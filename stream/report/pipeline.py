"""Pipeline contribution report: a pure accumulator over contract transition and action records.

Feed it the dicts of ``Transition.to_record()`` / ``Action.to_record()`` (live from the worker,
or from a replay), then call :meth:`PipelineReport.to_dict`. No I/O, no clock.

Definitions (what every figure means)
-------------------------------------
*Entry*: a transition whose ``to_program`` is a structured program (``mql_nurture``,
``trial_nurture``, ``re_engagement``, ``expansion_nurture``) and whose ``from_program`` differs
from it (a state change inside a program, such as a trial checkpoint, is not an entry; a
re-entry after leaving is a new entry). Its *cohort* is the ISO week of its ``at``
(``2026-W47``), its *ICP tier* is ``signals["icp_tier"]`` (``unknown`` if absent) and its
*group* is ``holdout`` when ``signals["holdout"]`` is true, else ``nurtured``.

*Opportunity*: a transition with ``reason == "crm.opportunity_created"`` (a sales-accepted
opportunity, from the CRM's ``opportunity.created``).

*Attribution (chosen rule: every preceding entry)*: an opportunity is attributed to **each**
entry of the same lead with ``entry.at <= opportunity.at``. Each entry converts at most once:
its opportunity is the lead's first opportunity at or after the entry, and its
time-to-opportunity is ``opportunity.at - entry.at``. So a lead that went ``trial_nurture`` ->
``re_engagement`` -> opportunity counts as converted in both programs; figures are therefore
never summed across programs (the report never blends programs, cohorts or tiers).

*Contribution rate*: converted entries / entries, per program x cohort x tier x group.
*Time-to-opportunity*: median and p90 in days over the converted entries, percentiles by linear
interpolation between closest ranks (numpy's default; the median of an even count is the mean
of the middle two). *Lift* (per program x cohort x tier): nurtured minus holdout contribution
rate (``rate_points``), the relative lift ``nurtured / holdout - 1`` (``None`` when the holdout
rate is 0), and ``median_days_saved`` = holdout median minus nurtured median. ``interval``:
the 95% intervals of the rate difference and the relative lift with both sample sizes, or
``status: not_enough_data`` below the rules' ``report.min_group_entries``; each group's median
time-to-opportunity has a bootstrap ``median_interval`` (see :mod:`stream.report.stats`).

*Nurture path attribution*: for each email template (actions ``type == "send"``,
``channel == "email"``), per program of the send and per ICP tier of the lead's latest entry
into that program before the send: *receivers* are the leads sent the template (first send
counts, window starts there), *non-receivers* are the nurtured (non-holdout) leads who entered
that program and were never sent the template (window starts at their first entry into it).
A lead converts when it has an opportunity inside ``[start, start + window_days]``
(90 days by default). Windows still open at the end of the data are counted as they stand.
Each row carries ``interval`` (:func:`stream.report.stats.compare_rates`, receivers against
non-receivers); who receives a template depends on what the lead did, so a significant
difference there is an association, not the randomised effect the holdout comparison measures.

*Repeated records*: the worker delivers at least once, so a record may arrive twice. An entry
with the same program and ``at`` as one the lead already has, and an opportunity at the same
``at``, are counted once; a template counts its first send anyway.

Live series: built with ``metrics=PipelineMetrics(...)`` the report also increments the
``nurture_pipeline_*`` counters and histogram as entries, conversions and sends arrive (an
entry's transitions arrive in order per Kafka partition; a send credited by an opportunity is
checked both when the send and when the opportunity arrives, so the action and transition
topics may be read at different speeds). :meth:`to_dict` recomputes from the stored facts and
does not depend on arrival order. :meth:`restore_metrics` re-creates the series from stored
facts (a restarted report consumer).

Where the facts live (``store``): a plain dict by default (replay, backtest, files); the report
consumer (:mod:`stream.report.consumer`) keeps them in RocksDB (:mod:`stream.report.store`), so
its memory does not grow with the leads. A dict costs about 0.4-0.5 kB per lead that entered a
program or was sent an email; ``to_dict`` takes about 1 s per 100k such leads on this machine
class (longer from RocksDB: each lead is decoded).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.core.model import DAY_MS, rfc3339_to_ms
from stream.report.facts import DictStore, Entry, LeadFacts, LeadStore
from stream.report.stats import StatsSettings, compare_rates, median_interval

if TYPE_CHECKING:
    from stream.metrics import PipelineMetrics

STRUCTURED_PROGRAMS: frozenset[str] = frozenset(
    {"mql_nurture", "trial_nurture", "re_engagement", "expansion_nurture"}
)
OPPORTUNITY_REASON = "crm.opportunity_created"
DEFAULT_WINDOW_DAYS = 90
GROUPS: tuple[str, str] = ("nurtured", "holdout")
_ROUND = 6


def iso_week(ms: int) -> str:
    """ISO week of an epoch-ms instant in UTC, as ``YYYY-Www``."""
    return _iso_week_of_day(ms // DAY_MS)


@lru_cache(maxsize=4096)
def _iso_week_of_day(day: int) -> str:
    # cached per UTC day: one shared string per cohort instead of one per entry
    year, week, _ = datetime.fromtimestamp(day * 86_400, tz=UTC).isocalendar()
    return f"{year}-W{week:02d}"


def quantile(values: list[float], q: float) -> float:
    """numpy's default (``linear``) quantile: interpolation between closest ranks; ``values``
    non-empty."""
    return float(np.quantile(values, q))


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, _ROUND)


def _at(record: Mapping[str, Any]) -> int:
    at = record["at"]
    return at if isinstance(at, int) else rfc3339_to_ms(str(at))


@dataclass(slots=True)
class _Cell:
    entries: int = 0
    days: list[float] = field(default_factory=list)

    def summary(self, stats: StatsSettings) -> dict[str, Any]:
        conv = len(self.days)
        return {
            "entries": self.entries,
            "opportunities": conv,
            "contribution_rate": _r(conv / self.entries) if self.entries else None,
            "time_to_opportunity_days": {
                "median": _r(quantile(self.days, 0.5)) if self.days else None,
                "p90": _r(quantile(self.days, 0.9)) if self.days else None,
                # sorted: the interval does not depend on the order the leads were read in
                "median_interval": median_interval(sorted(self.days), stats),
            },
        }


class PipelineReport:
    """Accumulates transition and action records; :meth:`to_dict` renders the report."""

    def __init__(
        self,
        *,
        window_days: int = DEFAULT_WINDOW_DAYS,
        metrics: PipelineMetrics | None = None,
        store: LeadStore | None = None,
        stats: StatsSettings | None = None,
    ) -> None:
        self.window_days = window_days
        self.stats = stats or StatsSettings()
        self.metrics = metrics
        self._leads: LeadStore = store if store is not None else DictStore()
        self.transitions_seen = 0
        self.actions_seen = 0

    # --- feeding ----------------------------------------------------------------------------
    def _lead(self, lead_id: str) -> LeadFacts:
        lead = self._leads.get(lead_id)
        if lead is None:
            lead = LeadFacts()
        return lead

    def add_transition(self, record: Mapping[str, Any]) -> None:
        self.transitions_seen += 1
        to_program = record["to_program"]
        if to_program in STRUCTURED_PROGRAMS and record.get("from_program") != to_program:
            signals = record.get("signals") or {}
            at = _at(record)
            lead_id = record["lead_id"]
            lead = self._lead(lead_id)
            if not any(e.at == at and e.program == to_program for e in lead.entries):
                entry = Entry(
                    program=sys.intern(to_program),
                    at=at,
                    cohort=iso_week(at),
                    tier=sys.intern(str(signals.get("icp_tier") or "unknown")),
                    group="holdout" if signals.get("holdout") is True else "nurtured",
                )
                lead.entries.append(entry)
                self._leads.put(lead_id, lead)
                if self.metrics is not None:
                    m = self.metrics
                    m.pipeline_entry(entry.program, entry.cohort, entry.tier, entry.group)
        if record.get("reason") == OPPORTUNITY_REASON:
            at = _at(record)
            lead_id = record["lead_id"]
            lead = self._lead(lead_id)
            if lead.opportunities is None:
                lead.opportunities = []
            if at not in lead.opportunities:
                lead.opportunities.append(at)
                if self.metrics is not None:
                    self._live_opportunity(lead, at)
                self._leads.put(lead_id, lead)

    def add_action(self, record: Mapping[str, Any]) -> None:
        self.actions_seen += 1
        template = record.get("template")
        if record.get("type") != "send" or record.get("channel") != "email" or not template:
            return
        program, name = sys.intern(str(record["program"])), sys.intern(str(template))
        lead_id = record["lead_id"]
        lead = self._lead(lead_id)
        at = _at(record)
        first = lead.sent(program, name)
        if lead.record_send(program, name, at) and self.metrics is not None:
            self.metrics.pipeline_template_sent(program, name)
        if first is None or at < first:
            if self.metrics is not None and lead.opportunities:
                # the opportunity was read before this send (the topics are read separately)
                for opp in sorted(lead.opportunities):
                    self._credit_send(lead, program, name, at, opp)
            self._leads.put(lead_id, lead)

    def add_transitions(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.add_transition(record)

    def add_actions(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.add_action(record)

    def _live_opportunity(self, lead: LeadFacts, at: int) -> None:
        assert self.metrics is not None
        for e in lead.entries:
            if not e.converted and e.at <= at:
                e.converted = True
                seconds = (at - e.at) / 1000
                self.metrics.pipeline_opportunity(e.program, e.cohort, e.tier, e.group, seconds)
        for program, template, sent in lead.sends or ():
            self._credit_send(lead, program, template, sent, at)

    def _credit_send(
        self, lead: LeadFacts, program: str, template: str, sent: int, opp: int
    ) -> None:
        """Count a template opportunity once per lead and template, when ``opp`` falls in the
        window of the template's first send."""
        assert self.metrics is not None
        key = (program, template)
        if sent <= opp <= sent + self.window_days * DAY_MS:
            if lead.credited_sends is None:
                lead.credited_sends = set()
            elif key in lead.credited_sends:
                return
            lead.credited_sends.add(key)
            self.metrics.pipeline_template_opportunity(*key)

    def restore_metrics(self) -> int:
        """Re-create the live ``nurture_pipeline_*`` series from the stored facts (a restarted
        report consumer): the same increments the live path made. Returns the leads read."""
        m = self.metrics
        assert m is not None
        n = 0
        for lead in self._leads.values():
            n += 1
            for e in lead.entries:
                m.pipeline_entry(e.program, e.cohort, e.tier, e.group)
            opps = lead.opps()
            for e in lead.entries:
                if e.converted:
                    first = next((o for o in opps if o >= e.at), e.at)
                    m.pipeline_opportunity(
                        e.program, e.cohort, e.tier, e.group, (first - e.at) / 1000
                    )
            for program, template, _sent in lead.sends or ():
                m.pipeline_template_sent(program, template)
            for program, template in sorted(lead.credited_sends or ()):
                m.pipeline_template_opportunity(program, template)
        return n

    # --- rendering --------------------------------------------------------------------------
    def totals(self) -> PipelineTotals:
        """The report's counts over every lead: what :meth:`to_dict` renders. Totals of reports
        over disjoint leads add up (:meth:`PipelineTotals.merge`), so a replay bucket hands on
        these (kilobytes) instead of its per-lead facts."""
        totals = PipelineTotals(
            transitions_seen=self.transitions_seen, actions_seen=self.actions_seen
        )
        window = self.window_days * DAY_MS
        for lead in self._leads.values():
            totals.add_lead(lead, window)
        return totals

    def to_dict(self) -> dict[str, Any]:
        """The report (see :meth:`PipelineTotals.to_dict`)."""
        return self.totals().to_dict(self.window_days, self.stats)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


Rows = dict[str, dict[str, dict[str, list[int]]]]  # program -> template|tier -> ... -> counts


@dataclass(slots=True)
class PipelineTotals:
    """The per-lead facts of a :class:`PipelineReport` reduced to counts: entries and
    times-to-opportunity per (program, cohort, tier, group) cell, and the template rows."""

    transitions_seen: int = 0
    actions_seen: int = 0
    cells: dict[tuple[str, str, str, str], _Cell] = field(default_factory=dict)
    # receivers: program -> template -> tier -> [leads, converted]
    receivers: Rows = field(default_factory=dict)
    # nurtured entrants of a program by first-entry tier: program -> tier -> [leads, converted]
    entrants: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # entrants who did receive the template: program -> template -> tier -> [leads, converted]
    received: Rows = field(default_factory=dict)

    def add_lead(self, lead: LeadFacts, window: int) -> None:
        opps = lead.opps()
        for e in lead.entries:
            cell = self.cells.get((e.program, e.cohort, e.tier, e.group))
            if cell is None:
                cell = self.cells[(e.program, e.cohort, e.tier, e.group)] = _Cell()
            cell.entries += 1
            first = next((o for o in opps if o >= e.at), None)
            if first is not None:
                cell.days.append((first - e.at) / DAY_MS)

        def converted(start: int) -> bool:
            return any(start <= o <= start + window for o in opps)

        by_program: dict[str, list[Entry]] = {}
        for e in sorted(lead.entries, key=_entry_key):
            by_program.setdefault(e.program, []).append(e)
        first_conv: dict[str, bool] = {}
        for program, entries in by_program.items():
            first_entry = entries[0]
            if first_entry.group == "nurtured":
                first_conv[program] = converted(first_entry.at)
                row = self.entrants.setdefault(program, {}).setdefault(first_entry.tier, [0, 0])
                row[0] += 1
                row[1] += first_conv[program]
        for program, template, sent in lead.sends or ():
            entries = by_program.get(program, [])
            before = [e for e in entries if e.at <= sent]
            tier = (before[-1] if before else entries[0]).tier if entries else "unknown"
            row = _row(self.receivers, program, template, tier)
            row[0] += 1
            row[1] += converted(sent)
            if program in first_conv:
                row = _row(self.received, program, template, entries[0].tier)
                row[0] += 1
                row[1] += first_conv[program]

    def merge(self, other: PipelineTotals) -> None:
        """Add the totals of a report over other leads (another replay bucket)."""
        self.transitions_seen += other.transitions_seen
        self.actions_seen += other.actions_seen
        for key, cell in other.cells.items():
            mine = self.cells.setdefault(key, _Cell())
            mine.entries += cell.entries
            mine.days.extend(cell.days)
        for program, tiers in other.entrants.items():
            for tier, (n, conv) in tiers.items():
                row = self.entrants.setdefault(program, {}).setdefault(tier, [0, 0])
                row[0] += n
                row[1] += conv
        for mine_rows, their_rows in (
            (self.receivers, other.receivers),
            (self.received, other.received),
        ):
            for program, templates in their_rows.items():
                for template, tiers in templates.items():
                    for tier, (n, conv, *_) in tiers.items():
                        row = _row(mine_rows, program, template, tier)
                        row[0] += n
                        row[1] += conv

    def to_dict(self, window_days: int, stats: StatsSettings) -> dict[str, Any]:
        """The report: JSON-serialisable, deterministic key order (programs, cohorts, tiers and
        templates sorted; group fields in a fixed order), floats rounded to 6 decimals, so the
        same records in any order give byte-identical ``json.dumps``."""
        return {
            "attribution": "every_preceding_entry",
            "opportunity_reason": OPPORTUNITY_REASON,
            "programs": self._programs(stats),
            "records": {"actions": self.actions_seen, "transitions": self.transitions_seen},
            "templates": self._templates(stats),
            "window_days": window_days,
        }

    def _programs(self, stats: StatsSettings) -> dict[str, Any]:
        cells = self.cells
        keys = sorted({(p, c, t) for p, c, t, _ in cells})
        out: dict[str, Any] = {}
        for program, cohort, tier in keys:
            groups = {
                g: cells.get((program, cohort, tier, g), _Cell()).summary(stats) for g in GROUPS
            }
            n, h = groups["nurtured"], groups["holdout"]
            lift: dict[str, Any] = {"rate_points": None, "relative": None}
            if n["contribution_rate"] is not None and h["contribution_rate"] is not None:
                lift["rate_points"] = _r(n["contribution_rate"] - h["contribution_rate"])
                if h["contribution_rate"] > 0:
                    lift["relative"] = _r(n["contribution_rate"] / h["contribution_rate"] - 1)
            nm = n["time_to_opportunity_days"]["median"]
            hm = h["time_to_opportunity_days"]["median"]
            lift["median_days_saved"] = _r(hm - nm) if nm is not None and hm is not None else None
            lift["interval"] = compare_rates(
                (n["opportunities"], n["entries"]), (h["opportunities"], h["entries"]), stats
            )
            program_out = out.setdefault(program, {})
            program_out.setdefault(cohort, {})[tier] = {**groups, "lift": lift}
        return out

    def _templates(self, stats: StatsSettings) -> dict[str, Any]:
        counts: Rows = {}
        for program, templates in self.receivers.items():
            for template, tiers in templates.items():
                for tier, got_row in tiers.items():
                    _row(counts, program, template, tier)[:2] = got_row[:2]
                got = self.received.get(program, {}).get(template, {})
                for tier, (n, conv) in self.entrants.get(program, {}).items():
                    n_got, conv_got = got.get(tier, [0, 0])[:2]
                    if n - n_got > 0:
                        _row(counts, program, template, tier)[2:] = [n - n_got, conv - conv_got]
        out: dict[str, Any] = {}
        for program in sorted(counts):
            for template in sorted(counts[program]):
                for tier in sorted(counts[program][template]):
                    rec, rec_conv, oth, oth_conv = counts[program][template][tier]
                    rate = _r(rec_conv / rec) if rec else None
                    other_rate = _r(oth_conv / oth) if oth else None
                    diff = (
                        _r(rate - other_rate)
                        if rate is not None and other_rate is not None
                        else None
                    )
                    out.setdefault(program, {}).setdefault(template, {})[tier] = {
                        "receivers": rec,
                        "receivers_converted": rec_conv,
                        "receivers_rate": rate,
                        "non_receivers": oth,
                        "non_receivers_converted": oth_conv,
                        "non_receivers_rate": other_rate,
                        "rate_points": diff,
                        # receivers against non-receivers: not a randomised comparison (who
                        # is sent a template depends on what the lead did), unlike the
                        # programs' nurtured against holdout
                        "interval": compare_rates((rec_conv, rec), (oth_conv, oth), stats),
                    }
        return out


def _entry_key(e: Entry) -> tuple[int, str]:
    return (e.at, e.program)


def _row(counts: Rows, program: str, template: str, tier: str) -> list[int]:
    return counts.setdefault(program, {}).setdefault(template, {}).setdefault(tier, [0, 0, 0, 0])


def read_records(path: str) -> list[dict[str, Any]]:
    """Read records from a JSON Lines file (one object a line) or a JSON array file."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = json.loads(stripped)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of records")
        return [dict(r) for r in data]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def build_report(
    transitions: Iterable[Mapping[str, Any]],
    actions: Iterable[Mapping[str, Any]],
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> PipelineReport:
    report = PipelineReport(window_days=window_days)
    report.add_transitions(transitions)
    report.add_actions(actions)
    return report
