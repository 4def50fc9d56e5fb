"""Synthetic nurture traffic from personas with the playbook's shapes. Deterministic per seed.

``nurture simulate --leads N --days D --seed S --out FILE`` writes contract events as JSON Lines;
``--kafka BOOTSTRAP --rate R`` produces them to the input topics instead (see
:mod:`stream.commands.simulate`).

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

``--customers N`` adds N customer accounts with the post-sale personas of
:mod:`stream.offline.customers` (healthy advocate, silent after go-live, payment failure, urgent
ticket burst, seats growing, renews, cancels).

Opportunity chances above are for holdout leads; the programs' nurture effect raises them for
nurtured leads (:class:`NurtureEffect`, default +15% relative in mql, trial and re-engagement
nurture; ``nurture simulate --effect PROGRAM=LIFT``), and an email template's effect (none by
default; ``--effect TEMPLATE=LIFT``) raises them for the leads the rules sent it.

Across personas: 3% of leads unsubscribe and 2% hard-bounce at a random point; 1% of events are
delivered twice (same event_id, seconds to minutes later); 0.5% arrive 1-12 h late (their
``occurred_at`` is earlier than the events around them in the file, on purpose); 0.2% of lines are
malformed (invalid JSON, a missing ``lead_id``, properties of the wrong shape) and must be
dead-lettered. Measured (5,000 leads, 30 days, seed 1; later events of leads created late in
the window fall outside it): 6.8 lines per lead (100,000 leads give ~680,000 lines); sessions 30%
of events, lead.created 15%, feature use 12%, page views 8%; 8% of leads reach a sales-accepted
opportunity, 9% of trials convert to paid inside the window, 0.1% of lines are malformed.

Time: lead creation times are spread uniformly over the first ``0.8 * days``; events beyond
``start + days`` are dropped. The file is ordered by delivery time (``occurred_at`` plus the late
delay), ties by lead and sequence, so it is "roughly by event time". In Kafka mode
(:func:`stream.commands.simulate`) ``start`` is the wall clock at launch and every simulated
offset is divided by ``time_scale``: an event's ``occurred_at`` is the wall time at which it is
due to be sent (``start + offset / time_scale``), so event time tracks wall time, compressed.
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.ids import in_holdout
from stream.core.model import DAY_MS, HOUR_MS, Event, ms_to_rfc3339, rfc3339_to_ms
from topics.events import source_of

if TYPE_CHECKING:
    from stream.core.config import RulesConfig
    from stream.core.engine import StepResult

DEFAULT_START = "2026-09-01T00:00:00Z"
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
DUPLICATE_SHARE = 0.01
_at = itemgetter(0)
LATE_SHARE = 0.005
MALFORMED_SHARE = 0.002


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One line to deliver: ``deliver_at`` orders the file; ``source`` picks the input topic."""

    deliver_at: int
    lead_id: str
    source: str  # crm | product | email
    line: bytes


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


class _Lead:
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


def _trial_early(x: _Lead) -> None:
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


def _trial_late(x: _Lead) -> None:
    x.profile(x.fit(0.5))
    x.emit(x.hours(0.05, 2), "trial.started")
    x.sessions(x.rng.randint(1, 3), 2, 46)
    x.emit(x.days(3, 10), "activation.completed")
    x.features(x.rng.randint(1, 3), 4, 13)
    if x.chance(0.15):
        x.emit(x.days(12, 20), "subscription.converted", plan="starter", seats_limit=10.0)
    x.opportunity(0.15, "trial_nurture", 8, 25)


def _trial_never(x: _Lead) -> None:
    x.profile(x.fit(0.4))
    x.emit(x.hours(0.05, 2), "trial.started")
    x.sessions(x.rng.randint(1, 3), 2, 46)
    if x.chance(0.5):
        x.sessions(x.rng.randint(1, 2), 72, 300)
    x.opportunity(0.03, "trial_nurture", 10, 30)


def _silent_signup(x: _Lead) -> None:
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


def _researcher(x: _Lead) -> None:
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


def _quiet_mql(x: _Lead) -> None:
    x.profile("high")
    for _ in range(x.rng.randint(1, 3)):
        x.emit(x.days(0, 6), "content.downloaded", content="whitepaper")
    if x.chance(0.2):
        x.emit(x.days(35, 50), "email.replied", intent="positive")
        x.emit(x.days(50, 52), "session.started")


def _out_of_icp(x: _Lead) -> None:
    x.profile("out")
    for _ in range(x.rng.randint(0, 3)):
        x.emit(x.days(0, 20), "page.viewed", page=x.rng.choice(("pricing", "blog", "docs")))
    if x.chance(0.3):
        x.emit(x.hours(0.1, 5), "trial.started")
        x.sessions(x.rng.randint(0, 3), 1, 100)


def _customer_growth(x: _Lead) -> None:
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


def _sales_touched(x: _Lead) -> None:
    x.profile("high")
    x.emit(x.hours(1, 24), "sales.contacted")
    for _ in range(x.rng.randint(1, 3)):
        x.emit(x.days(1, 10), "page.viewed", page="pricing")
    if x.chance(0.3):
        x.emit(x.days(5, 20), "opportunity.created")


PERSONAS: tuple[tuple[str, float, Callable[[_Lead], None]], ...] = (
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


def _pick_persona(r: random.Random) -> tuple[str, Callable[[_Lead], None]]:
    roll = r.random()
    for name, share, build in PERSONAS:
        roll -= share
        if roll < 0:
            return name, build
    return PERSONAS[-1][0], PERSONAS[-1][2]


_MALFORMED: tuple[Callable[[dict[str, Any]], bytes], ...] = (
    lambda d: orjson.dumps(d)[:-7],  # truncated JSON
    lambda d: orjson.dumps({k: v for k, v in d.items() if k != "lead_id"}),
    lambda d: orjson.dumps({**d, "type": "page.viewed", "properties": {"page": 7}}),
    lambda d: orjson.dumps({**d, "occurred_at": "yesterday"}),
)


def lead_events(
    seed: int,
    index: int,
    created: int,
    end: int,
    late_share: float = LATE_SHARE,
    effect: NurtureEffect | None = None,
) -> Iterator[SimEvent]:
    """Every line one lead contributes (in its own order), deterministic in (seed, index)."""
    rng = random.Random(f"{seed}:{index}")
    lead = _Lead(rng, index, created, effect)
    _, build = _pick_persona(rng)
    build(lead)
    if lead.chance(0.03):
        lead.emit(lead.days(0.5, 25), "email.unsubscribed")
    elif lead.chance(0.02):
        lead.emit(lead.days(0.2, 10), "email.bounced", hard=True)
    lead.events.sort(key=lambda e: e[0])
    for seq, (at, event_type, props) in enumerate(lead.events):
        if at >= end:
            break
        doc: dict[str, Any] = {
            "event_id": f"e-{index:07d}-{seq:03d}",
            "type": event_type,
            "lead_id": lead.lead_id,
            "account_id": lead.account_id,
            "occurred_at": ms_to_rfc3339(at),
            "properties": props,
        }
        source = source_of(event_type)
        roll = rng.random()
        if roll < MALFORMED_SHARE:
            line = rng.choice(_MALFORMED)(doc)
            yield SimEvent(at, lead.lead_id, source, line)
            continue
        line = orjson.dumps(doc)
        deliver = at
        if roll < MALFORMED_SHARE + LATE_SHARE:
            late_by = lead.hours(1, 12)  # drawn even when unused: same stream for every share
            if roll < MALFORMED_SHARE + late_share:
                deliver = at + late_by
        yield SimEvent(deliver, lead.lead_id, source, line)
        if rng.random() < DUPLICATE_SHARE:
            yield SimEvent(deliver + rng.randint(1_000, 600_000), lead.lead_id, source, line)


def persona_of(seed: int, index: int) -> str:
    """The persona a lead was drawn from (for tests and documentation)."""
    rng = random.Random(f"{seed}:{index}")
    return _pick_persona(rng)[0]


def generate(
    leads: int,
    days: float,
    seed: int,
    *,
    start: int | None = None,
    time_scale: float = 1.0,
    late_share: float = LATE_SHARE,
    customers: int = 0,
    effect: NurtureEffect | None = None,
) -> Iterator[SimEvent]:
    """All events of the simulation in delivery order, streamed through per-day bucket files
    (memory stays bounded by one day of events). With ``time_scale`` > 1 every offset from
    ``start`` is divided by it (Kafka mode). ``late_share`` (at most the default) sets the share
    of events delivered late; with 0 the file is in event-time order except for duplicates.
    ``effect``: the nurture effect (default :data:`DEFAULT_LIFT`)."""
    start_ms = rfc3339_to_ms(DEFAULT_START) if start is None else start
    span = int(days * DAY_MS)
    bucket_ms = max(MIN_MS, int(DAY_MS / time_scale))
    with tempfile.TemporaryDirectory(prefix="nurture-sim-") as tmp:
        files: dict[int, Any] = {}
        try:
            lines = _lead_lines(seed, leads, start_ms, span, time_scale, late_share, effect)
            customer_lines = _customer_lines(seed, customers, leads, start_ms, span, time_scale)
            for index, ev in itertools.chain(lines, customer_lines):
                bucket = (ev.deliver_at - start_ms) // bucket_ms
                fh = files.get(bucket)
                if fh is None:
                    fh = files[bucket] = open(os.path.join(tmp, f"{bucket:06d}"), "wb")  # noqa: SIM115
                fh.write(
                    b"%015d%08d%s %s\t%s\n"
                    % (ev.deliver_at, index, ev.source.encode(), ev.lead_id.encode(), ev.line)
                )
        finally:
            for fh in files.values():
                fh.close()
        for bucket in sorted(files):
            path = Path(tmp, f"{bucket:06d}")
            rows = path.read_bytes().splitlines()
            path.unlink()
            rows.sort(key=lambda row: row[:23])  # stable: a lead's own order is kept
            for row in rows:
                head, _, line = row.partition(b"\t")
                source, _, lead_id = head[23:].partition(b" ")
                yield SimEvent(int(head[:15]), lead_id.decode(), source.decode(), line)


def _lead_lines(
    seed: int,
    leads: int,
    start_ms: int,
    span: int,
    time_scale: float,
    late_share: float,
    effect: NurtureEffect | None,
) -> Iterator[tuple[int, SimEvent]]:
    """Every lead's lines with its index, delivery times scaled (Kafka mode)."""
    spread = random.Random(f"{seed}:spread")
    for index in range(leads):
        created = start_ms + int(spread.random() * 0.8 * span)
        for ev in lead_events(seed, index, created, start_ms + span, late_share, effect):
            deliver = start_ms + int((ev.deliver_at - start_ms) / time_scale)
            line = ev.line
            if time_scale != 1.0:
                line = _rescale(line, start_ms, time_scale)
            yield index, SimEvent(deliver, ev.lead_id, ev.source, line)


def _customer_lines(
    seed: int, customers: int, leads: int, start_ms: int, span: int, time_scale: float
) -> Iterator[tuple[int, SimEvent]]:
    """Customer accounts (stream.offline.customers), numbered after the leads."""
    from stream.offline.customers import customer_events

    for i in range(customers):
        for at, lead_id, source, line in customer_events(seed, i, start_ms, start_ms + span):
            deliver = start_ms + int((at - start_ms) / time_scale)
            if time_scale != 1.0:
                line = _rescale(line, start_ms, time_scale)
            yield leads + i, SimEvent(deliver, lead_id, source, line)


def _rescale(line: bytes, start_ms: int, time_scale: float) -> bytes:
    """Compress a line's ``occurred_at`` toward ``start_ms`` (malformed lines pass through)."""
    try:
        doc = orjson.loads(line)
        at = rfc3339_to_ms(doc["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return line
    doc["occurred_at"] = ms_to_rfc3339(start_ms + int((at - start_ms) / time_scale))
    return orjson.dumps(doc)


def write_file(path: Path, events: Iterator[SimEvent]) -> int:
    """Write lines to ``path`` (gzip when it ends in .gz). Returns the number of lines."""
    import gzip

    count = 0
    opener: Any = gzip.open if path.suffix == ".gz" else open
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wb") as fh:
        for ev in events:
            fh.write(ev.line + b"\n")
            count += 1
    return count
