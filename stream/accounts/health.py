"""The health score, explainable by construction, and the risk flags that stand apart from it.

Each component has a value in [0, 1], a weight (its points at value 1) and the raw inputs it was
computed from; ``points = round(value * weight, 2)`` and the score is the sum of the points, so
anyone reading a transition can recompute it. Everything is a function of the state at ``now``
(event time): a daily timer calling it again is how silence lowers usage.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter

import msgspec

from stream.accounts.config import AccountRules
from stream.accounts.model import AccountState, Component, Health, User

DAY = 86_400_000
FLAG_ORDER = ("payment_failed", "usage_drop", "urgent_tickets", "detractor")


def day_of(ms: int) -> int:
    return ms // DAY


entry_day = itemgetter(0)  # of a (day, sessions) entry of ``session_days``


def usage_trend(state: AccountState, now: int, rules: AccountRules) -> tuple[int, int]:
    """Sessions in the last ``trend_window_days`` and in the window before it (one pass: for
    the at most 2 x window days kept, a loop is cheaper than bisecting)."""
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


def _trend_value(young: bool, last: int, prev: int) -> float:
    """last / prev (capped at 1). Without a baseline: neutral (1) while the account is younger
    than the window or has any recent use; 0 for an account silent through both windows."""
    if prev > 0:
        return min(1.0, last / prev)
    return 1.0 if last > 0 or young else 0.0


class HealthInputs(msgspec.Struct, frozen=True, gc=False):
    """Everything the score reads from the state at ``now``: one pass over users, tickets and
    session days. The score, band and flags are arithmetic on these; the explainable
    :class:`Health` (components with their inputs) is built from them only when an output
    carries it (:func:`explain`)."""

    weekly_active: int
    seats: float
    sessions_last: int
    sessions_prev: int
    young: bool  # younger than the trend window (no baseline yet is neutral)
    tickets_recent: int
    tickets_open: int
    urgent_open: int
    responses: int
    mean_answer: float | None
    billing_status: str
    detractor: bool  # a user of a detractor role answered NPS at or below detractor_max_nps


class Assessment(msgspec.Struct, frozen=True, gc=False):
    """Score, band and flags of the state at ``now``, with the inputs they came from."""

    inputs: HealthInputs
    values: tuple[float, float, float, float]  # usage, support, sentiment, billing in [0, 1]
    score: float
    band: str
    flags: tuple[str, ...]


def measure(state: AccountState, now: int, rules: AccountRules) -> HealthInputs:
    usage = rules.health.usage
    last, prev = usage_trend(state, now, rules)
    young = state.converted_at is None or now - state.converted_at < (usage.trend_window_days * DAY)
    horizon = now - int(rules.health.support.window_days * DAY)
    recent = opened = urgent = 0
    for t in state.tickets:
        if t.opened_at > horizon:
            recent += 1
        if t.resolved_at is None:
            opened += 1
            if t.severity == "urgent":
                urgent += 1
    f = rules.flags
    active_since = now - int(usage.active_window_days * DAY)
    wau = 0
    answers: list[float] = []
    detractor = False
    for u in state.users:  # one pass: weekly active, answers, detractors
        if u.last_active_at is not None and u.last_active_at > active_since:
            wau += 1
        if u.nps is None and u.csat is None:
            continue  # no answer (the usual user)
        answer = latest_answer(u)
        if answer is not None:
            answers.append(answer)
        if u.nps is not None and u.nps <= f.detractor_max_nps and u.role in f.detractor_roles:
            detractor = True
    return HealthInputs(
        weekly_active=wau,
        seats=seats(state),
        sessions_last=last,
        sessions_prev=prev,
        young=young,
        tickets_recent=recent,
        tickets_open=opened,
        urgent_open=urgent,
        responses=len(answers),
        mean_answer=sum(answers) / len(answers) if answers else None,
        billing_status=state.billing_status,
        detractor=detractor,
    )


def _clamp(value: float) -> float:
    """``min(1.0, max(0.0, value))`` (NaN gives 0.0 as there) by comparisons, without the
    two builtin calls: four clamps per health evaluation, on every account step."""
    if value >= 1.0:
        return 1.0
    return value if value > 0.0 else 0.0


def _values(m: HealthInputs, rules: AccountRules) -> tuple[float, float, float, float]:
    """The four component values (usage, support, sentiment, billing), each in [0, 1]."""
    h = rules.health
    wau_value = min(1.0, m.weekly_active / m.seats / h.usage.wau_target_ratio)
    trend_value = _trend_value(m.young, m.sessions_last, m.sessions_prev)
    usage = h.usage.wau_share * wau_value + (1 - h.usage.wau_share) * trend_value
    support = (
        1
        - h.support.per_ticket_penalty * m.tickets_recent
        - h.support.per_open_urgent_penalty * m.urgent_open
    )
    sentiment = h.sentiment.neutral if m.mean_answer is None else m.mean_answer
    billing = float(getattr(h.billing, m.billing_status, 0.0))
    return _clamp(usage), _clamp(support), _clamp(sentiment), _clamp(billing)


def _weights(rules: AccountRules) -> tuple[float, float, float, float]:
    w = rules.health.weights
    return w.usage, w.support, w.sentiment, w.billing


def _explained(
    m: HealthInputs, values: tuple[float, ...], rules: AccountRules
) -> tuple[Component, ...]:
    usage, support, sentiment, billing = values
    wu, ws, wn, wb = _weights(rules)
    return (
        _component(
            "usage",
            usage,
            wu,
            {
                "weekly_active_users": m.weekly_active,
                "seats": m.seats,
                "wau_per_seat": round(m.weekly_active / m.seats, 4),
                "sessions_30d": m.sessions_last,
                "sessions_prev_30d": m.sessions_prev,
            },
        ),
        _component(
            "support",
            support,
            ws,
            {
                "tickets_30d": m.tickets_recent,
                "open_tickets": m.tickets_open,
                "open_urgent": m.urgent_open,
            },
        ),
        _component(
            "sentiment",
            sentiment,
            wn,
            {
                "responses": m.responses,
                "mean_answer": None if m.mean_answer is None else round(m.mean_answer, 4),
            },
        ),
        _component("billing", billing, wb, {"status": m.billing_status}),
    )


def _component(name: str, value: float, weight: float, inputs: dict[str, object]) -> Component:
    return Component(name, round(value, 4), weight, round(value * weight, 2), inputs)


def components(state: AccountState, now: int, rules: AccountRules) -> tuple[Component, ...]:
    m = measure(state, now, rules)
    return _explained(m, _values(m, rules), rules)


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
    state: AccountState, now: int, rules: AccountRules, m: HealthInputs | None = None
) -> tuple[str, ...]:
    f = rules.flags
    m = m if m is not None else measure(state, now, rules)
    raised: list[str] = []  # in FLAG_ORDER
    if state.billing_status in f.payment_failed_statuses:
        raised.append("payment_failed")
    last, prev = m.sessions_last, m.sessions_prev
    if prev >= f.usage_drop_min_baseline_sessions:
        if "usage_drop" in state.flags:  # hysteresis: clears once the drop is under clear_pct
            if last < prev * (1 - f.usage_drop_clear_pct / 100):
                raised.append("usage_drop")
        elif (
            last < prev * (1 - f.usage_drop_pct / 100)
            and drop_p_value(last, prev) <= f.usage_drop_max_p_value
        ):
            raised.append("usage_drop")
    if m.urgent_open >= f.urgent_tickets_min:
        raised.append("urgent_tickets")
    if m.detractor:
        raised.append("detractor")
    return tuple(raised)


@lru_cache(maxsize=65_536)
def _score(values: tuple[float, ...], weights: tuple[float, ...]) -> float:
    """The sum of the components' points (each rounded, as :class:`Component` shows them);
    cached: rounding to 2 digits is the dearest arithmetic and most values repeat."""
    return round(sum([round(v * w, 2) for v, w in zip(values, weights, strict=True)]), 2)


def assess(state: AccountState, now: int, rules: AccountRules) -> Assessment:
    """Score, band and flags at ``now`` (cheap: no explanation built)."""
    m = measure(state, now, rules)
    values = _values(m, rules)
    score = _score(values, _weights(rules))
    return Assessment(m, values, score, band_of(score, rules), risk_flags(state, now, rules, m))


def explain(a: Assessment, rules: AccountRules, version: str) -> Health:
    """The explainable health of an assessment: each component's value, weight, points, inputs."""
    return Health(a.score, a.band, a.flags, _explained(a.inputs, a.values, rules), version)


def health(state: AccountState, now: int, rules: AccountRules, version: str) -> Health:
    return explain(assess(state, now, rules), rules, version)
