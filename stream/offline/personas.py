"""The simulator's lead personas (:mod:`stream.offline.simulate`): who they are, what share of
the leads each is, the events each makes, and what nurture does to their opportunities.

Personas (share of leads) and what they do, offsets from the lead's creation:

=================  =====  ==========================================================================
persona            share  shape
=================  =====  ==========================================================================
trial_early        16%    ICP high/medium; trial at once; 2-6 sessions and activation in the first
                          6-40 h; 3-5 features over 10 days; 45% visit pricing after activation,
                          25% click the upgrade CTA, 30% convert to paid (day 7-14); 35% get a
                          sales-accepted opportunity (day 4-20)
trial_late         11%    trial; 1-3 sessions in 48 h, activation on day 3-10; 1-3 features;
                          15% convert; 15% opportunity
trial_never        11%    trial; 1-3 sessions in 48 h, maybe 1-2 later; never activates; 3% opp.
silent_signup      10%    trial, then nothing; 20% come back on day 3-12 (email click or reply,
                          session, 25% of those book a walkthrough); 4% opportunity
researcher         18%    ICP mostly high; downloads, case-study / comparison views and email
                          clicks over ~3 weeks; 55% make 2+ pricing / ROI / demo-reply signals
                          inside a week (SQL); 40% of those get an opportunity
quiet_mql           8%    ICP high; a burst of content in week 1, then silence (re-engagement after
                          30 days when ``days`` allows); 20% reply on day 35-50
out_of_icp         10%    < 10 employees or an excluded industry; some page views, 30% a trial
customer_growth    10%    paid at signup (seats_limit 10-50); weekly seats / API usage growing
                          toward the limit; records / integrations milestones; 35% click the
                          tier-upgrade CTA or request expansion; 15% cross the hard limit
sales_touched       6%    ICP high; sales.contacted early, then pricing visits; 30% opportunity
=================  =====  ==========================================================================

Opportunity chances above are for holdout leads; the programs' nurture effect raises them for
nurtured leads (:class:`NurtureEffect`, default +15% relative in mql, trial and re-engagement
nurture; ``nurture simulate --effect PROGRAM=LIFT``), and an email template's effect (none by
default; ``--effect TEMPLATE=LIFT``) raises them for the leads the rules sent it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from stream.core.ids import in_holdout
from stream.core.model import DAY_MS, HOUR_MS, Event

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.core.engine import StepResult

MIN_MS = 60_000
TARGET_INDUSTRIES = ("software", "saas", "fintech", "ecommerce", "healthcare tech")
OTHER_INDUSTRIES = ("manufacturing", "logistics", "media", "retail")
EXCLUDED_INDUSTRIES = ("consumer", "education", "government", "non-profit")
FEATURES = ("dashboards", "alerts", "api", "integrations", "reports", "sso", "workflows")
#: default nurture effect (see :class:`NurtureEffect`): a modest lift in every program
DEFAULT_LIFT: Mapping[str, float] = {
    "mql_nurture": 0.15,
    "trial_nurture": 0.15,
    "re_engagement": 0.15,
}
_at = itemgetter(0)


@dataclass(frozen=True, slots=True)
class NurtureEffect:
    """What nurture does to a lead's chance of a sales-accepted opportunity: a relative lift
    (0.15 = 15% more likely)

    * per program (``lift``), for the leads the program nurtures, none for its holdout (the
      core's own :func:`stream.core.ids.in_holdout` at ``holdout_pct``, so the report sees the
      effect as nurtured against holdout). Persona to program: trial personas ->
      ``trial_nurture``, silent signups -> ``re_engagement``, researchers -> ``mql_nurture``;
    * per email template (``templates``), for a lead the rules sent it before its opportunity
      could occur. This closes the loop: the lead's events so far go through the core
      (``rules``, default the shipped rules file) with its timers up to the earliest
      opportunity time, and the email sends it decides are the templates the lead received.
      Only runs when ``templates`` is set (it costs a core run per lead).

    The draws are the same either way, so only the outcomes move."""

    lift: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LIFT))
    holdout_pct: float = 5.0
    templates: Mapping[str, float] = field(default_factory=dict)
    rules: RulesConfig | None = None

    def chance(self, p: float, lead_id: str, program: str, received: Iterable[str] = ()) -> float:
        factor = 1.0
        lift = self.lift.get(program, 0.0)
        if lift and not in_holdout(lead_id, program, self.holdout_pct):
            factor = 1 + lift
        for template in received:
            factor *= 1 + self.templates.get(template, 0.0)
        return p if factor == 1.0 else min(1.0, max(0.0, p * factor))


@lru_cache(maxsize=1)
def _shipped_rules() -> RulesConfig:
    from stream.core.config import load_config

    return load_config(None)


class Lead:
    """Builds one lead's events; ``emit`` offsets are ms after the lead's creation."""

    def __init__(
        self,
        rng: random.Random,
        index: int,
        created: int,
        effect: NurtureEffect | None = None,
    ) -> None:
        self.rng = rng
        self.effect = effect or NurtureEffect()
        self.lead_id = f"L-{index:07d}"
        self.account_id = f"A-{index // 3:07d}"
        self.created = created
        self.seq = 0
        self.events: list[tuple[int, str, dict[str, Any]]] = []

    def emit(self, offset: int, event_type: str, **props: Any) -> None:
        self.events.append((self.created + max(0, int(offset)), event_type, props))

    def hours(self, lo: float, hi: float) -> int:
        return int(self.rng.uniform(lo, hi) * HOUR_MS)

    def days(self, lo: float, hi: float) -> int:
        return int(self.rng.uniform(lo, hi) * DAY_MS)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def opportunity(self, p: float, program: str, lo_d: float, hi_d: float, start: int = 0) -> None:
        """An opportunity with chance ``p``, raised by the program's nurture effect when the
        program nurtures this lead and by the effect of the templates it was sent (same draws
        either way, so only the outcome moves)."""
        received = self.received(start + int(lo_d * DAY_MS)) if self.effect.templates else ()
        if self.chance(self.effect.chance(p, self.lead_id, program, received)):
            self.emit(start + self.days(lo_d, hi_d), "opportunity.created")

    def received(self, until: int) -> set[str]:
        """The email templates the rules send this lead for its events so far, with its
        timers fired up to ``until`` (ms after creation)."""
        from stream.offline.runner import EventTimeRunner

        sent: set[str] = set()

        def sink(result: StepResult) -> None:
            for action in result.actions:
                if action.type == "send" and action.channel == "email" and action.template:
                    sent.add(action.template)

        runner = EventTimeRunner(self.effect.rules or _shipped_rules(), sink)
        horizon = self.created + until
        for seq, (at, event_type, props) in enumerate(sorted(self.events, key=_at)):
            if at > horizon:
                break
            event = Event(f"sim-{seq}", event_type, self.lead_id, at, self.account_id, props)
            runner.process(event)
        runner.finish(horizon)
        return sent

    def profile(self, tier: str) -> None:
        r = self.rng
        if tier == "high":
            size, industry = r.randint(50, 5000), r.choice(TARGET_INDUSTRIES)
        elif tier == "medium":
            size, industry = r.choice(
                [
                    (r.randint(10, 49), r.choice(TARGET_INDUSTRIES)),
                    (r.randint(50, 900), "media"),
                    (r.randint(60, 4000), r.choice(OTHER_INDUSTRIES)),
                ]
            )
        else:
            size, industry = r.choice(
                [(r.randint(1, 9), r.choice(TARGET_INDUSTRIES)), (r.randint(10, 3000), "x")]
            )
            if industry == "x":
                industry = r.choice(EXCLUDED_INDUSTRIES)
        self.emit(
            0,
            "lead.created",
            company_size=size,
            industry=industry,
            country=r.choice(("US", "GB", "DE", "FR", "NL", "CA")),
            source=r.choice(("organic", "paid_search", "referral", "webinar", "outbound")),
            title=r.choice(("engineer", "head of ops", "vp engineering", "cto", "analyst")),
        )

    def sessions(self, n: int, lo_h: float, hi_h: float) -> None:
        for _ in range(n):
            self.emit(self.hours(lo_h, hi_h), "session.started")

    def features(self, n: int, lo_d: float, hi_d: float) -> None:
        for feature in self.rng.sample(FEATURES, n):
            at = self.days(lo_d, hi_d)
            self.emit(at - MIN_MS, "session.started")
            self.emit(at, "feature.used", feature=feature)

    def fit(self, p_high: float) -> str:
        return "high" if self.chance(p_high) else "medium"


def _trial_early(x: Lead) -> None:
    x.profile(x.fit(0.7))
    x.emit(x.hours(0.05, 2), "trial.started")
    x.sessions(x.rng.randint(2, 6), 2, 40)
    activated = x.hours(6, 40)
    x.emit(activated, "activation.completed")
    x.features(x.rng.randint(3, 5), 1, 10)
    if x.chance(0.45):
        x.emit(activated + x.days(0.5, 6), "page.viewed", page="pricing")
    if x.chance(0.25):
        x.emit(activated + x.days(1, 9), "upgrade_cta.clicked", tier="team")
    if x.chance(0.30):
        x.emit(x.days(7, 14), "subscription.converted", plan="team", seats_limit=20.0)
    x.opportunity(0.35, "trial_nurture", 4, 20)


def _trial_late(x: Lead) -> None:
    x.profile(x.fit(0.5))
    x.emit(x.hours(0.05, 2), "trial.started")
    x.sessions(x.rng.randint(1, 3), 2, 46)
    x.emit(x.days(3, 10), "activation.completed")
    x.features(x.rng.randint(1, 3), 4, 13)
    if x.chance(0.15):
        x.emit(x.days(12, 20), "subscription.converted", plan="starter", seats_limit=10.0)
    x.opportunity(0.15, "trial_nurture", 8, 25)


def _trial_never(x: Lead) -> None:
    x.profile(x.fit(0.4))
    x.emit(x.hours(0.05, 2), "trial.started")
    x.sessions(x.rng.randint(1, 3), 2, 46)
    if x.chance(0.5):
        x.sessions(x.rng.randint(1, 2), 72, 300)
    x.opportunity(0.03, "trial_nurture", 10, 30)


def _silent_signup(x: Lead) -> None:
    x.profile(x.fit(0.5))
    x.emit(x.hours(0.05, 1), "trial.started")
    if x.chance(0.2):
        back = x.days(3, 12)
        x.emit(back - x.hours(1, 3), "email.opened")
        if x.chance(0.5):
            x.emit(back - MIN_MS, "email.clicked")
        else:
            x.emit(back - MIN_MS, "email.replied", intent=x.rng.choice(("positive", "other")))
        x.emit(back, "session.started")
        if x.chance(0.25):
            x.emit(back + x.hours(1, 30), "walkthrough.booked")
    x.opportunity(0.04, "re_engagement", 14, 30)


def _researcher(x: Lead) -> None:
    x.profile(x.fit(0.8))
    for _ in range(x.rng.randint(2, 5)):
        at = x.days(0, 21)
        kind = x.rng.random()
        if kind < 0.4:
            content = x.rng.choice(("whitepaper", "case_study", "comparison"))
            x.emit(at, "content.downloaded", content=content)
        elif kind < 0.7:
            x.emit(at, "page.viewed", page=x.rng.choice(("case_study", "comparison", "blog")))
        else:
            x.emit(at - x.hours(1, 20), "email.opened")
            x.emit(at, "email.clicked")
    if x.chance(0.55):
        week = x.days(3, 21)
        for _ in range(x.rng.randint(2, 3)):
            signal = x.rng.random()
            at = week + x.days(0, 6)
            if signal < 0.6:
                x.emit(at, "page.viewed", page="pricing")
            elif signal < 0.85:
                x.emit(at, "roi_calculator.completed")
            else:
                x.emit(at, "email.replied", intent="demo_request")
        x.opportunity(0.4, "mql_nurture", 7, 20, start=week)


def _quiet_mql(x: Lead) -> None:
    x.profile("high")
    for _ in range(x.rng.randint(1, 3)):
        x.emit(x.days(0, 6), "content.downloaded", content="whitepaper")
    if x.chance(0.2):
        x.emit(x.days(35, 50), "email.replied", intent="positive")
        x.emit(x.days(50, 52), "session.started")


def _out_of_icp(x: Lead) -> None:
    x.profile("out")
    for _ in range(x.rng.randint(0, 3)):
        x.emit(x.days(0, 20), "page.viewed", page=x.rng.choice(("pricing", "blog", "docs")))
    if x.chance(0.3):
        x.emit(x.hours(0.1, 5), "trial.started")
        x.sessions(x.rng.randint(0, 3), 1, 100)


def _customer_growth(x: Lead) -> None:
    x.profile(x.fit(0.6))
    limit = float(x.rng.choice((10, 20, 25, 50)))
    x.emit(x.hours(0.1, 2), "subscription.converted", plan="team", seats_limit=limit)
    seats = max(1.0, round(limit * x.rng.uniform(0.3, 0.6)))
    growth = x.rng.uniform(0.5, 2.5)
    crosses = x.chance(0.15)
    records = 0.0
    for week in range(1, 9):
        seats = min(
            seats + round(growth * x.rng.uniform(0.5, 1.5)), limit * (1.1 if crosses else 1)
        )
        at = week * 7 * DAY_MS + x.hours(0, 48)
        x.emit(at, "usage.reported", metric="seats", value=float(seats), limit=limit)
        records += x.rng.randint(50, 400)
        x.emit(at + MIN_MS, "usage.reported", metric="records", value=records)
    if x.chance(0.35):
        at = x.days(20, 50)
        if x.chance(0.5):
            x.emit(at, "upgrade_cta.clicked", tier="business")
        else:
            x.emit(at, "expansion.requested")
    if x.chance(0.2):
        x.emit(x.days(10, 40), "usage.reported", metric="integrations", value=3.0)


def _sales_touched(x: Lead) -> None:
    x.profile("high")
    x.emit(x.hours(1, 24), "sales.contacted")
    for _ in range(x.rng.randint(1, 3)):
        x.emit(x.days(1, 10), "page.viewed", page="pricing")
    if x.chance(0.3):
        x.emit(x.days(5, 20), "opportunity.created")


PERSONAS: tuple[tuple[str, float, Callable[[Lead], None]], ...] = (
    ("trial_early", 0.16, _trial_early),
    ("trial_late", 0.11, _trial_late),
    ("trial_never", 0.11, _trial_never),
    ("silent_signup", 0.10, _silent_signup),
    ("researcher", 0.18, _researcher),
    ("quiet_mql", 0.08, _quiet_mql),
    ("out_of_icp", 0.10, _out_of_icp),
    ("customer_growth", 0.10, _customer_growth),
    ("sales_touched", 0.06, _sales_touched),
)


def pick_persona(r: random.Random) -> tuple[str, Callable[[Lead], None]]:
    roll = r.random()
    for name, share, build in PERSONAS:
        roll -= share
        if roll < 0:
            return name, build
    return PERSONAS[-1][0], PERSONAS[-1][2]
