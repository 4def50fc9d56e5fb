"""Expansion at account level: the lead rules (DESIGN.md ``expansion_nurture``;
:func:`stream.core.programs.expansion.usage_trigger` and ``project``, shared) on the account's
own limits and usage. 80% of a plan limit or a milestone opens the play with a usage summary and
a projection to the limit; an upgrade ask, the upgrade CTA or the hard limit hands the account
to CSM/AE with a task, and the play closes. A plan upgrade closes it too."""

from __future__ import annotations

from typing import Any

from stream.accounts.health import DAY
from stream.accounts.plays import _by_role
from stream.accounts.work import Work
from stream.core.programs.expansion import project, upgrade_reason, usage_trigger


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
    return project(metric, samples, limit, w.cfg.expansion.projection_window_days)


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
    record_sample(w, metric, value)
    limit = limit or limit_of(w, metric)
    trigger = usage_trigger(w.cfg.expansion, metric, value, limit, w.s.expansion_fired)
    if trigger is None:
        return
    context = {**projection(w, metric, limit), **trigger.extra}
    if trigger.key is None or trigger.template is None:
        handoff(w, trigger.reason, context)
        return
    w.s.expansion_fired = (*w.s.expansion_fired, trigger.key)[-16:]
    _open(w, trigger.reason, trigger.template, context)


def on_upgrade_ask(w: Work, etype: str) -> None:
    if etype == "upgrade_cta.clicked" and not w.play_open("expansion_nurture"):
        return
    usage = {m: projection(w, m, limit_of(w, m)) for m, _ in w.s.usage}
    handoff(w, upgrade_reason(etype), {"trigger": etype, "usage": usage})
