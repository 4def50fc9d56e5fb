"""Expansion at account level: the lead rules (DESIGN.md ``expansion_nurture``) on the account's
own limits and usage. 80% of a plan limit or a milestone opens the play with a usage summary and
a projection to the limit; an upgrade ask, the upgrade CTA or the hard limit hands the account
to CSM/AE with a task, and the play closes. A plan upgrade closes it too."""

from __future__ import annotations

from typing import Any

from stream.accounts.health import DAY
from stream.accounts.plays import _by_role
from stream.accounts.work import Work


def limit_of(w: Work, metric: str) -> float | None:
    for m, v in w.s.limits:
        if m == metric:
            return v
    return None


def record_sample(w: Work, metric: str, value: float) -> None:
    """Keep the metric's recent samples (bounded by ``expansion.max_samples_per_metric``)."""
    rules = w.cfg.expansion
    horizon = w.now - int(rules.projection_window_days * DAY)
    kept = dict(w.s.usage)
    samples = [p for p in kept.get(metric, ()) if p[0] >= horizon]
    samples.append((w.now, value))
    kept[metric] = tuple(sorted(samples)[-rules.max_samples_per_metric :])
    w.s.usage = tuple(sorted(kept.items()))


def projection(w: Work, metric: str, limit: float | None) -> dict[str, Any]:
    samples = dict(w.s.usage).get(metric, ())
    out: dict[str, Any] = {"metric": metric, "limit": limit}
    if not samples:
        return out
    (a0, v0), (a1, v1) = samples[0], samples[-1]
    out["value"] = v1
    out["window_days"] = w.cfg.expansion.projection_window_days
    out["added_in_window"] = v1 - v0
    days_to_limit: float | None = None
    if limit:
        out["pct_of_limit"] = round(100.0 * v1 / limit, 1)
        span = (a1 - a0) / DAY
        if span > 0 and v0 < v1 < limit:
            days_to_limit = round((limit - v1) / ((v1 - v0) / span), 1)
    out["days_to_limit"] = days_to_limit
    return out


def handoff(w: Work, reason: str, context: dict[str, Any]) -> None:
    w.task("expansion_nurture", w.rules.expansion.handoff_task, reason, context)
    w.exit_play("expansion_nurture", reason)


def _open(w: Work, reason: str, template: str, context: dict[str, Any]) -> None:
    w.enter_play("expansion_nurture", reason, metric=context.get("metric"))
    admin = _by_role(w, "admin", "executive")
    w.send(
        None if admin is None else admin.lead_id,
        "email",
        "expansion_nurture",
        template,
        reason,
        context,
    )


def on_usage(w: Work, metric: str, value: float, limit: float | None) -> None:
    rules = w.cfg.expansion
    record_sample(w, metric, value)
    limit = limit or limit_of(w, metric)
    if metric in rules.threshold_metrics and limit and value >= limit:
        handoff(w, "expansion.hard_limit", projection(w, metric, limit))
        return
    if metric in rules.threshold_metrics and limit:
        key = f"{metric}:{limit:g}"
        if value >= rules.usage_threshold * limit and key not in w.s.expansion_fired:
            w.s.expansion_fired = (*w.s.expansion_fired, key)[-16:]
            context = {**projection(w, metric, limit), "threshold": rules.usage_threshold}
            _open(w, "expansion.usage_threshold", rules.templates.usage_summary, context)
            return
    mark = rules.milestones.get(metric)
    if mark is not None and value >= mark:
        key = f"{metric}:milestone:{mark:g}"
        if key not in w.s.expansion_fired:
            w.s.expansion_fired = (*w.s.expansion_fired, key)[-16:]
            context = {**projection(w, metric, limit), "milestone": mark}
            _open(w, "expansion.milestone", rules.templates.milestone, context)


def on_upgrade_ask(w: Work, etype: str) -> None:
    if etype == "upgrade_cta.clicked" and not w.play_open("expansion_nurture"):
        return
    reason = (
        "expansion.upgrade_requested" if etype == "expansion.requested" else "expansion.upgrade_cta"
    )
    usage = {m: projection(w, m, limit_of(w, m)) for m, _ in w.s.usage}
    handoff(w, reason, {"trigger": etype, "usage": usage})
