"""The health score, explainable by construction, and the risk flags that stand apart from it.

Each component has a value in [0, 1], a weight (its points at value 1) and the raw inputs it was
computed from; ``points = round(value * weight, 2)`` and the score is the sum of the points, so
anyone reading a transition can recompute it. Everything is a function of the state at ``now``
(event time): a daily timer calling it again is how silence lowers usage.
"""

from __future__ import annotations

from functools import lru_cache

from stream.accounts.config import AccountRules
from stream.accounts.model import AccountState, Component, Health, User

DAY = 86_400_000
FLAG_ORDER = ("payment_failed", "usage_drop", "urgent_tickets", "detractor")


def day_of(ms: int) -> int:
    return ms // DAY


def usage_trend(state: AccountState, now: int, rules: AccountRules) -> tuple[int, int]:
    """Sessions in the last ``trend_window_days`` and in the window before it (one pass)."""
    window = rules.health.usage.trend_window_days
    today = day_of(now)
    split, first = today - window, today - 2 * window
    last = prev = 0
    for day, n in state.session_days:
        if day > split:
            if day <= today:
                last += n
        elif day > first:
            prev += n
    return last, prev


def weekly_active(state: AccountState, now: int, rules: AccountRules) -> int:
    horizon = now - int(rules.health.usage.active_window_days * DAY)
    return sum(
        1 for u in state.users if u.last_active_at is not None and u.last_active_at > horizon
    )


def seats(state: AccountState) -> float:
    """The plan's seat limit; without one, the users the account has (at least 1)."""
    for metric, limit in state.limits:
        if metric == "seats" and limit > 0:
            return limit
    return float(max(1, len(state.users)))


def latest_answer(user: User) -> float | None:
    """A user's latest NPS or CSAT answer, normalised to [0, 1]."""
    nps = (user.nps_at, user.nps / 10) if user.nps is not None and user.nps_at is not None else None
    csat = (
        (user.csat_at, (user.csat - 1) / 4)
        if user.csat is not None and user.csat_at is not None
        else None
    )
    if nps is None and csat is None:
        return None
    if nps is None or (csat is not None and csat[0] > nps[0]):
        return csat[1] if csat is not None else None
    return nps[1]


def open_urgent(state: AccountState) -> int:
    return sum(1 for t in state.tickets if t.resolved_at is None and t.severity == "urgent")


def _trend_value(state: AccountState, now: int, rules: AccountRules, last: int, prev: int) -> float:
    """last / prev (capped at 1). Without a baseline: neutral (1) while the account is younger
    than the window or has any recent use; 0 for an account silent through both windows."""
    if prev > 0:
        return min(1.0, last / prev)
    young = state.converted_at is None or now - state.converted_at < (
        rules.health.usage.trend_window_days * DAY
    )
    return 1.0 if last > 0 or young else 0.0


def _component(name: str, value: float, weight: float, inputs: dict[str, object]) -> Component:
    value = min(1.0, max(0.0, value))
    return Component(name, round(value, 4), weight, round(value * weight, 2), inputs)


def components(
    state: AccountState, now: int, rules: AccountRules, trend: tuple[int, int] | None = None
) -> tuple[Component, ...]:
    h = rules.health
    w = h.weights
    wau = weekly_active(state, now, rules)
    seat_count = seats(state)
    ratio = wau / seat_count
    wau_value = min(1.0, ratio / h.usage.wau_target_ratio)
    last, prev = trend if trend is not None else usage_trend(state, now, rules)
    trend_value = _trend_value(state, now, rules, last, prev)
    usage_value = h.usage.wau_share * wau_value + (1 - h.usage.wau_share) * trend_value
    usage = _component(
        "usage",
        usage_value,
        w.usage,
        {
            "weekly_active_users": wau,
            "seats": seat_count,
            "wau_per_seat": round(ratio, 4),
            "sessions_30d": last,
            "sessions_prev_30d": prev,
        },
    )
    horizon = now - int(h.support.window_days * DAY)
    recent = sum(1 for t in state.tickets if t.opened_at > horizon)
    urgent = open_urgent(state)
    opened = sum(1 for t in state.tickets if t.resolved_at is None)
    support = _component(
        "support",
        1 - h.support.per_ticket_penalty * recent - h.support.per_open_urgent_penalty * urgent,
        w.support,
        {"tickets_30d": recent, "open_tickets": opened, "open_urgent": urgent},
    )
    answers = [a for a in (latest_answer(u) for u in state.users) if a is not None]
    mean = sum(answers) / len(answers) if answers else None
    sentiment = _component(
        "sentiment",
        h.sentiment.neutral if mean is None else mean,
        w.sentiment,
        {"responses": len(answers), "mean_answer": None if mean is None else round(mean, 4)},
    )
    billing_value = float(getattr(h.billing, state.billing_status, 0.0))
    billing = _component("billing", billing_value, w.billing, {"status": state.billing_status})
    return usage, support, sentiment, billing


def band_of(score: float, rules: AccountRules) -> str:
    bands = rules.health.bands
    if score <= bands.red_max:
        return "red"
    if score <= bands.yellow_max:
        return "yellow"
    return "green"


@lru_cache(maxsize=4096)
def drop_p_value(last: int, prev: int) -> float:
    """How likely a drop this large is from chance alone: session counts of two equal windows
    as Poisson with one rate, ``last`` given ``last + prev`` is Binomial(n, 1/2); the one-sided
    p-value P(X <= last) (scipy's binomial CDF ufunc). 55 sessions after 71 (-23%) is 0.09:
    noise in a small account; 20 after 40 is 0.003."""
    from scipy.special import bdtr

    return float(bdtr(last, last + prev, 0.5))


def risk_flags(
    state: AccountState, now: int, rules: AccountRules, trend: tuple[int, int] | None = None
) -> tuple[str, ...]:
    f = rules.flags
    raised: set[str] = set()
    if state.billing_status in f.payment_failed_statuses:
        raised.add("payment_failed")
    last, prev = trend if trend is not None else usage_trend(state, now, rules)
    if prev >= f.usage_drop_min_baseline_sessions:
        if "usage_drop" in state.flags:  # hysteresis: clears once the drop is under clear_pct
            if last < prev * (1 - f.usage_drop_clear_pct / 100):
                raised.add("usage_drop")
        elif (
            last < prev * (1 - f.usage_drop_pct / 100)
            and drop_p_value(last, prev) <= f.usage_drop_max_p_value
        ):
            raised.add("usage_drop")
    if open_urgent(state) >= f.urgent_tickets_min:
        raised.add("urgent_tickets")
    if any(
        u.role in f.detractor_roles and u.nps is not None and u.nps <= f.detractor_max_nps
        for u in state.users
    ):
        raised.add("detractor")
    return tuple(x for x in FLAG_ORDER if x in raised)


def health(state: AccountState, now: int, rules: AccountRules, version: str) -> Health:
    trend = usage_trend(state, now, rules)
    parts = components(state, now, rules, trend)
    score = round(sum(c.points for c in parts), 2)
    flags = risk_flags(state, now, rules, trend)
    return Health(score, band_of(score, rules), flags, parts, version)
