"""Post-sale report: what the post-sale maturity matrix names, per conversion cohort (month) and
ICP tier, with nurtured and holdout accounts kept apart, from the accounts' states at the
report's horizon (replay's ``until``, or the last event time).

Per row: accounts; activation % (first value reached) and median time-to-value (days);
weekly active users per seat; outcome attainment (mean distinct outcomes per account and the
share of the adoption features adopted); expansion ARR and attach rate (accounts whose ARR
grew); GRR, NRR and churn %; advocacy rate (accounts that completed a review, reference or case
study). GRR = (starting ARR - churned ARR - contraction) / starting ARR; NRR = ARR now of every
account (churned ones count 0) / starting ARR.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from statistics import median
from typing import Any

from stream.accounts.config import AccountRules
from stream.accounts.health import DAY, seats, weekly_active
from stream.accounts.model import AccountState
from stream.core.model import ms_to_rfc3339


@dataclass
class _Row:
    accounts: int = 0
    activated: int = 0
    ttv_days: list[float] = field(default_factory=list)
    wau_per_seat: float = 0.0
    outcomes: int = 0
    features_adopted: float = 0.0
    start_arr: float = 0.0
    arr_now: float = 0.0
    churned: int = 0
    churned_arr: float = 0.0
    contraction: float = 0.0
    expansion_arr: float = 0.0
    expanded: int = 0
    advocates: int = 0

    def add(self, s: AccountState, now: int, rules: AccountRules) -> None:
        assert s.converted_at is not None
        self.accounts += 1
        if s.first_value_at is not None:
            self.activated += 1
            self.ttv_days.append((s.first_value_at - s.converted_at) / DAY)
        self.wau_per_seat += weekly_active(s, now, rules) / seats(s)
        self.outcomes += len(s.outcomes)
        self.features_adopted += len(s.features) / len(rules.adoption.features)
        self.start_arr += s.start_arr
        if s.stage == "churned":
            self.churned += 1
            self.churned_arr += s.start_arr
        else:
            self.arr_now += s.arr
            self.contraction += max(0.0, s.start_arr - s.arr)
            if s.arr > s.start_arr:
                self.expanded += 1
                self.expansion_arr += s.arr - s.start_arr
        if s.advocacy_done:
            self.advocates += 1

    def merge(self, other: _Row) -> None:
        """Add another row's accounts (the median's values are kept apart until rendered)."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ttv_days.extend(other.ttv_days)

    def to_dict(self) -> dict[str, Any]:
        n = self.accounts
        base = self.start_arr

        def pct(x: float) -> float | None:
            return round(100.0 * x / n, 1) if n else None

        return {
            "accounts": n,
            "activation_pct": pct(self.activated),
            "time_to_value_days_median": (
                round(median(self.ttv_days), 1) if self.ttv_days else None
            ),
            "wau_per_seat": round(self.wau_per_seat / n, 3) if n else None,
            "outcomes_per_account": round(self.outcomes / n, 2) if n else None,
            "feature_adoption_pct": pct(self.features_adopted),
            "expansion_arr": round(self.expansion_arr, 2),
            "attach_rate_pct": pct(self.expanded),
            "start_arr": round(base, 2),
            "arr_now": round(self.arr_now, 2),
            "grr_pct": (
                round(100.0 * (base - self.churned_arr - self.contraction) / base, 1)
                if base
                else None
            ),
            "nrr_pct": round(100.0 * self.arr_now / base, 1) if base else None,
            "churn_pct": pct(self.churned),
            "advocacy_rate_pct": pct(self.advocates),
        }


_SUMMED = tuple(f.name for f in fields(_Row) if f.name != "ttv_days")


@dataclass
class PostSaleTotals:
    """The report's rows as they accumulate; totals over disjoint accounts add up
    (:meth:`merge`), so a replay bucket of accounts hands on these, not its states."""

    rows: dict[tuple[str, str, str], _Row] = field(default_factory=dict)
    totals: dict[str, _Row] = field(default_factory=dict)

    def add(self, s: AccountState, now: int | None, rules: AccountRules) -> None:
        if s.converted_at is None:
            return
        at = now if now is not None else (s.watermark or s.converted_at)
        group = "holdout" if s.holdout else "nurtured"
        cohort = ms_to_rfc3339(s.converted_at)[:7]
        self.rows.setdefault((cohort, s.icp_tier, group), _Row()).add(s, at, rules)
        self.totals.setdefault(group, _Row()).add(s, at, rules)

    def merge(self, other: PostSaleTotals) -> None:
        for key, row in other.rows.items():
            self.rows.setdefault(key, _Row()).merge(row)
        for group, row in other.totals.items():
            self.totals.setdefault(group, _Row()).merge(row)

    def to_dict(self, now: int | None) -> dict[str, Any]:
        rows, totals = self.rows, self.totals
        return {
            "horizon": None if now is None else ms_to_rfc3339(now),
            "rows": [
                {"cohort": c, "icp_tier": t, "group": g, **rows[(c, t, g)].to_dict()}
                for c, t, g in sorted(rows)
            ],
            "totals": {g: totals[g].to_dict() for g in sorted(totals)},
        }


def postsale_report(
    states: Iterable[AccountState], now: int | None, rules: AccountRules
) -> dict[str, Any]:
    """Rows per (cohort month, ICP tier, group) for converted accounts, plus totals per group."""
    totals = PostSaleTotals()
    for s in states:
        totals.add(s, now, rules)
    return totals.to_dict(now)


_COLUMNS = (
    ("accounts", "accounts"),
    ("activation_pct", "activation %"),
    ("time_to_value_days_median", "TTV days"),
    ("wau_per_seat", "WAU/seat"),
    ("outcomes_per_account", "outcomes"),
    ("feature_adoption_pct", "features %"),
    ("expansion_arr", "expansion ARR"),
    ("attach_rate_pct", "attach %"),
    ("grr_pct", "GRR %"),
    ("nrr_pct", "NRR %"),
    ("churn_pct", "churn %"),
    ("advocacy_rate_pct", "advocacy %"),
)


def postsale_html(report: dict[str, Any] | None) -> str:
    """A static table section for report.html (empty when there are no accounts)."""
    if not report or not report.get("rows"):
        return ""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _COLUMNS)
    lines = []
    for row in report["rows"]:
        keys = (row["cohort"], row["icp_tier"], row["group"])
        cells = "".join(f"<td>{html.escape(str(k))}</td>" for k in keys)
        cells += "".join(f"<td>{'-' if row[key] is None else row[key]}</td>" for key, _ in _COLUMNS)
        lines.append(f'<tr class="postsale-row">{cells}</tr>')
    return (
        '<section id="post-sale"><h2>After the sale: accounts</h2>'
        '<p class="note">Per conversion cohort (month) and ICP tier, nurtured and holdout apart, '
        "at the report horizon.</p>"
        '<table style="border-collapse:collapse;font-size:12.5px"><thead><tr>'
        f"<th>cohort</th><th>tier</th><th>group</th>{head}</tr></thead><tbody>"
        + "".join(lines)
        + "</tbody></table></section>"
    )
