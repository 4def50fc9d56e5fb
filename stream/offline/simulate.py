"""Synthetic nurture traffic from personas with the playbook's shapes. Deterministic per seed.

``nurture simulate --leads N --days D --seed S --out FILE`` writes contract events as JSON Lines;
``--kafka BOOTSTRAP --rate R`` produces them to the input topics instead (see
:mod:`stream.commands.simulate`).

The lead personas, their shares and shapes, and the nurture effect on their opportunities are
in :mod:`stream.offline.personas`.

``--customers N`` adds N customer accounts with the post-sale personas of
:mod:`stream.offline.customers` (healthy advocate, silent after go-live, payment failure, urgent
ticket burst, seats growing, renews, cancels).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import DAY_MS, ms_to_rfc3339, rfc3339_to_ms
from stream.offline.personas import MIN_MS, Lead, NurtureEffect, pick_persona
from topics.events import source_of

if TYPE_CHECKING:
    pass

DEFAULT_START = "2026-09-01T00:00:00Z"
DUPLICATE_SHARE = 0.01
LATE_SHARE = 0.005
MALFORMED_SHARE = 0.002


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One line to deliver: ``deliver_at`` orders the file; ``source`` picks the input topic."""

    deliver_at: int
    lead_id: str
    source: str  # crm | product | email
    line: bytes


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
    lead = Lead(rng, index, created, effect)
    _, build = pick_persona(rng)
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
    return pick_persona(rng)[0]


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
