"""Inputs and checks shared by the tests that compare the worker with ``nurture replay`` in
event time (tests/integration/test_stream_replay_equivalence.py, test_stream_outage.py).

The input (:func:`build_input`) is simulated traffic whose event times start a year from now,
so the wall clock never overtakes a partition's stream time (timers fire on event time only,
as in replay). Every lead ends with an event at the same time ``T_end`` (after all others), so
every partition's stream time ends at replay's final watermark. The simulator's late deliveries
are off (a late event sees timers fired up to its partition's watermark in the worker but up to
the global one in replay). Events of one lead with equal times on different topics are ordered
CRM, product, email by the worker; the file replay reads lists them in that order (replay's
sort by time is stable).

Two ways to hand the input to the worker:

* :func:`produce_topic_after_topic`: a backlog, one whole topic after the other (what fetch
  order gets wrong: :func:`cross_topic_inversions` counts the leads it would hurt);
* :func:`produce_live`: live traffic in event-time order while a worker runs. Kafka orders
  messages only within one topic-partition, so the worker's event-time merge can take an event
  while an earlier one of its partition on another topic is still in the producer (not yet on
  the broker, so not "unread"): that event would be late, and the outcome would depend on
  timing. The records are therefore cut into phases (:func:`live_phases`): phase ``j`` holds,
  for every partition, its ``j``-th run of consecutive same-topic events in event-time order,
  and a phase is produced only once the worker has handled every record of the previous one.
  Within a phase a partition's events are on one topic, where Kafka keeps their order; across
  phases the worker has handled the earlier ones. No interleaving of fetches can reorder them.
  (Waiting only for the previous phase's acks would leave a window: a broker thread reading a
  fetch response, preempted between two partitions for longer than a produce round trip, can
  return a record of the new phase with a stale high watermark of the old phase's topic.)
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339
from stream.offline.simulate import SimEvent, generate
from tests.support.reference import dedupe_actions
from tests.support.worker import produce_raw, run

if TYPE_CHECKING:
    from stream.offline.replay import ReplayStats
    from stream.settings import Settings

TOPIC_ORDER = ("product", "email", "crm")  # the order a backlog's topics are produced in
TIE_ORDER = {"crm": 0, "product": 1, "email": 2}  # the worker's order for equal event times


def build_input(path: Path, leads: int, days: int, seed: int) -> tuple[list[SimEvent], int]:
    """Simulated events of ``leads`` leads over ``days`` days starting a year from now, plus
    one flush event per lead at ``T_end``, sorted by (event time, the worker's topic order);
    written to ``path`` for replay. Returns (events, start of the first day in ms)."""
    start = (int(time.time() * 1000) // DAY_MS + 365) * DAY_MS
    events = list(generate(leads, days, seed, start=start, late_share=0.0))
    t_end = max(e.deliver_at for e in events) + HOUR_MS
    events += flush_events({e.lead_id for e in events}, t_end)
    # replay sorts by event time, stably: give it equal times in the worker's topic order
    events.sort(key=lambda e: (e.deliver_at, TIE_ORDER[e.source]))
    with open(path, "wb") as fh:
        for e in events:
            fh.write(e.line + b"\n")
    return events, start


def flush_events(leads: Iterable[str], t_end: int) -> list[SimEvent]:
    """One ``email.opened`` per lead at ``T_end`` (after every other event), in lead order:
    every partition's stream time then reaches the final watermark, so the worker fires every
    timer due up to ``T_end``, as replay does."""
    return [
        SimEvent(
            t_end,
            lead,
            "email",
            orjson.dumps(
                {
                    "event_id": f"flush-{n:07d}",
                    "type": "email.opened",
                    "lead_id": lead,
                    "occurred_at": ms_to_rfc3339(t_end),
                }
            ),
        )
        for n, lead in enumerate(sorted(leads))
    ]


def cross_topic_inversions(events: Iterable[SimEvent], order: Sequence[str] = TOPIC_ORDER) -> int:
    """Leads with an event on a topic produced later that happened before an event of theirs
    on a topic produced earlier (what fetch order would get wrong)."""
    first: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    leads: set[str] = set()
    for e in events:
        k = (e.lead_id, e.source)
        first[k] = min(first.get(k, e.deliver_at), e.deliver_at)
        last[k] = max(last.get(k, e.deliver_at), e.deliver_at)
        leads.add(e.lead_id)
    n = 0
    for lead in leads:
        for i, early in enumerate(order):
            later = order[i + 1 :]
            if any(
                (lead, t) in first
                and (lead, early) in last
                and first[(lead, t)] < last[(lead, early)]
                for t in later
            ):
                n += 1
                break
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def replay(events_path: Path, out_dir: Path) -> tuple[ReplayStats, list[Any], list[Any]]:
    """``nurture replay`` of ``events_path`` with the default rules, written to ``out_dir``:
    (its counts, its transitions, its actions)."""
    from stream.core.config import load_config
    from stream.offline.replay import replay_file

    stats = replay_file(events_path, out_dir, load_config(None), html=False)
    return stats, read_jsonl(out_dir / "transitions.jsonl"), read_jsonl(out_dir / "actions.jsonl")


def canonical(records: Iterable[dict[str, Any]]) -> collections.Counter[bytes]:
    return collections.Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def on_own_topics(settings: Settings, suffix: str) -> Settings:
    """``settings`` with the default partition count (12) on topics and an app id of its own
    (``suffix`` appended to each name), the topics created."""
    from stream.settings import Settings
    from stream.topics_admin import catalog_from_settings, ensure_topics

    fields = Settings.model_fields
    out = settings.model_copy(
        update={
            "topic_partitions": fields["topic_partitions"].default,
            "app_id": settings.app_id + suffix,
            **{
                name: getattr(settings, name) + suffix
                for name in fields
                if name.startswith("topic_") and name != "topic_partitions"
            },
        }
    )
    ensure_topics(out.kafka_bootstrap_servers, catalog_from_settings(out))
    return out


def _topics(settings: Settings) -> dict[str, str]:
    return {
        "product": settings.topic_product_events,
        "email": settings.topic_email_events,
        "crm": settings.topic_crm_events,
    }


def produce_topic_after_topic(
    settings: Settings, events: Sequence[SimEvent], order: Sequence[str] = TOPIC_ORDER
) -> int:
    """Produce ``events`` as a backlog: all of one input topic, then the next (``order``)."""
    topics = _topics(settings)
    n = 0
    for source in order:
        n += produce_raw(
            settings.kafka_bootstrap_servers,
            [(topics[source], e.lead_id.encode(), e.line) for e in events if e.source == source],
        )
    return n


def live_phases(events: Sequence[SimEvent], partitions: int) -> list[list[SimEvent]]:
    """``events`` (in event-time order) cut into phases: phase ``j`` holds every partition's
    ``j``-th run of consecutive same-topic events (the partition of a lead is the producer's
    default partitioner's, as for every record the tests produce)."""
    from aiokafka.partitioner import DefaultPartitioner

    choose = DefaultPartitioner()
    numbers = list(range(partitions))
    partition_of: dict[str, int] = {}
    runs: dict[int, list[list[SimEvent]]] = collections.defaultdict(list)
    for e in events:
        p = partition_of.get(e.lead_id)
        if p is None:
            p = partition_of[e.lead_id] = choose(e.lead_id.encode(), numbers, numbers)
        mine = runs[p]
        if not mine or mine[-1][-1].source != e.source:
            mine.append([])
        mine[-1].append(e)
    depth = max((len(r) for r in runs.values()), default=0)
    return [[e for r in runs.values() if j < len(r) for e in r[j]] for j in range(depth)]


async def _produce_phases(
    bootstrap: str,
    phases: list[list[tuple[str, bytes, bytes]]],
    barrier: Callable[[int], None],
) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    n = 0
    try:
        for phase in phases:
            sent = [await producer.send(topic, value, key=key) for topic, key, value in phase]
            await asyncio.gather(*sent)
            n += len(sent)
            await asyncio.to_thread(barrier, n)
    finally:
        await producer.stop()
    return n


def produce_live(
    settings: Settings, events: Sequence[SimEvent], handled: Callable[[int], None]
) -> tuple[int, int]:
    """Produce ``events`` (in event-time order) as live traffic, phase after phase (see the
    module docstring); after each phase ``handled(n)`` must return once the worker has handled
    the ``n`` records produced so far (and raise if it does not). Returns (records produced,
    phases)."""
    topics = _topics(settings)
    phases = [
        [(topics[e.source], e.lead_id.encode(), e.line) for e in phase]
        for phase in live_phases(events, settings.topic_partitions)
    ]
    produced = run(_produce_phases(settings.kafka_bootstrap_servers, phases, handled))
    return int(produced), len(phases)


def assert_equal_to_replay(
    got_transitions: Iterable[dict[str, Any]],
    got_actions: Iterable[dict[str, Any]],
    want_transitions: list[dict[str, Any]],
    want_actions: list[dict[str, Any]],
) -> None:
    """The worker's outputs (record values) equal replay's: actions by ``action_id`` (each id
    once, the same action), transitions as a set (a redelivered batch re-sends identical
    transitions)."""
    live_a, _ = dedupe_actions(got_actions)
    want_by_id = {a["action_id"]: a for a in want_actions}
    missing = sorted(set(want_by_id) - set(live_a))
    extra = sorted(set(live_a) - set(want_by_id))
    assert not missing and not extra, (
        f"{len(missing)} actions only in replay (e.g. {[want_by_id[i] for i in missing[:3]]}), "
        f"{len(extra)} only in the stream (e.g. {[live_a[i] for i in extra[:3]]})"
    )
    assert canonical(live_a.values()) == canonical(want_by_id.values())
    live_t, replay_t = canonical(got_transitions), canonical(want_transitions)
    assert set(live_t) == set(replay_t), (
        f"{len(set(replay_t) - set(live_t))} transitions only in replay, e.g. "
        f"{list(set(replay_t) - set(live_t))[:3]}; {len(set(live_t) - set(replay_t))} only in "
        f"the stream, e.g. {list(set(live_t) - set(replay_t))[:3]}"
    )
