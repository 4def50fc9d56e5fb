"""A backlog read in event time: the worker is down while three weeks of simulated traffic of
2,500 leads is produced to the three input topics ONE TOPIC AFTER THE OTHER (a backfill, or
an outage); then it starts. Its transitions and actions equal ``nurture replay`` of the same
events (actions by ``action_id``).

What makes this a test of the event-time merge: read in fetch order, a lead's CRM events
(produced last) would come after its product events of days later, and the wall clock would
fire every checkpoint on the lead's first message. The input is checked to hold many such
cross-topic inversions, and the worker's merge to have never given up waiting
(``nurture_runtime_eventtime_idle_timeouts_total`` stays 0).

Event times start a year from now, so the wall clock never overtakes the partitions' stream
time (timers fire on event time only, as in replay). Every lead ends with an event at the same
time ``T_end`` (after all others), so every partition's stream time ends at replay's final
watermark. The simulator's late deliveries are off (a late event sees timers fired up to its
partition's watermark in the worker but up to the global one in replay). Events of one lead
with equal times on different topics are ordered CRM, product, email by the worker; the file
replay reads lists them in that order (replay's sort by time is stable).
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339
from stream.offline.simulate import SimEvent, generate
from tests.support.worker import WorkerProcess, consume_all, produce_raw

if TYPE_CHECKING:
    from stream.settings import Settings

LEADS = 2500
DAYS = 21
SEED = 21
ORDER = ("product", "email", "crm")  # the order the topics are produced in
TIE_ORDER = {"crm": 0, "product": 1, "email": 2}  # the worker's order for equal event times


def build_input(path: Path) -> list[SimEvent]:
    start = (int(time.time() * 1000) // DAY_MS + 365) * DAY_MS
    events = list(generate(LEADS, DAYS, SEED, start=start, late_share=0.0))
    t_end = max(e.deliver_at for e in events) + HOUR_MS
    for n, lead in enumerate(sorted({e.lead_id for e in events})):
        doc = {
            "event_id": f"flush-{n:07d}",
            "type": "email.opened",
            "lead_id": lead,
            "occurred_at": ms_to_rfc3339(t_end),
        }
        events.append(SimEvent(t_end, lead, "email", orjson.dumps(doc)))
    # replay sorts by event time, stably: give it equal times in the worker's topic order
    events.sort(key=lambda e: (e.deliver_at, TIE_ORDER[e.source]))
    with open(path, "wb") as fh:
        for e in events:
            fh.write(e.line + b"\n")
    return events


def cross_topic_inversions(events: list[SimEvent]) -> int:
    """Leads with an event on a topic produced later that happened before an event of theirs
    on a topic produced earlier (what fetch order would get wrong)."""
    first: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    for e in events:
        k = (e.lead_id, e.source)
        first[k] = min(first.get(k, e.deliver_at), e.deliver_at)
        last[k] = max(last.get(k, e.deliver_at), e.deliver_at)
    leads = {e.lead_id for e in events}
    n = 0
    for lead in leads:
        for i, early in enumerate(ORDER):
            later = ORDER[i + 1 :]
            if any(
                (lead, t) in first
                and (lead, early) in last
                and first[(lead, t)] < last[(lead, early)]
                for t in later
            ):
                n += 1
                break
    return n


def canonical(records: list[dict[str, Any]]) -> collections.Counter[bytes]:
    return collections.Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_a_backlog_produced_one_topic_after_the_other_equals_replay(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    from stream.core.config import load_config
    from stream.offline.replay import replay_file
    from stream.settings import Settings
    from stream.topics_admin import catalog_from_settings, ensure_topics

    events_path = tmp_path / "events.jsonl"
    events = build_input(events_path)
    stats = replay_file(events_path, tmp_path / "replay", load_config(None), html=False)
    want_t = read_jsonl(tmp_path / "replay" / "transitions.jsonl")
    want_a = read_jsonl(tmp_path / "replay" / "actions.jsonl")
    assert stats.transitions > 2000 and stats.actions > 2000 and stats.timers_fired > 1000
    inversions = cross_topic_inversions(events)
    assert inversions > 300, "the input must be one that fetch order gets wrong"

    # the default partition count (12), on topics of its own
    suffix = "-p12"
    kafka_settings = kafka_settings.model_copy(
        update={
            "topic_partitions": Settings.model_fields["topic_partitions"].default,
            "app_id": kafka_settings.app_id + suffix,
            **{
                name: getattr(kafka_settings, name) + suffix
                for name in Settings.model_fields
                if name.startswith("topic_") and name != "topic_partitions"
            },
        }
    )
    ensure_topics(kafka_settings.kafka_bootstrap_servers, catalog_from_settings(kafka_settings))
    topics = {
        "product": kafka_settings.topic_product_events,
        "email": kafka_settings.topic_email_events,
        "crm": kafka_settings.topic_crm_events,
    }
    bootstrap = kafka_settings.kafka_bootstrap_servers
    for source in ORDER:  # the worker is down: one whole topic, then the next
        produce_raw(
            bootstrap,
            [(topics[source], e.lead_id.encode(), e.line) for e in events if e.source == source],
        )
    print(
        f"\n{len(events)} messages ({stats.dead_letters} malformed) of {LEADS} leads over {DAYS} "
        f"days, {inversions} leads with cross-topic inversions; replay: {stats.transitions} "
        f"transitions, {stats.actions} actions, {stats.timers_fired} timers fired"
    )

    # the merge's wait for a topic with unread data is bounded; on a loaded CI machine a fetch
    # can take longer than the 1 s default, and this test is about the order, not the bound
    env = {"NURTURE_MAX_TASK_IDLE_MS": "20000"}
    with WorkerProcess.from_settings(kafka_settings, env=env) as worker:
        began = time.monotonic()
        worker.wait_ready()
        worker.wait_processed(len(events), timeout=120)
        took = time.monotonic() - began
        got_t = consume_all(
            bootstrap, kafka_settings.topic_transitions, until=lambda r: len(r) >= len(want_t)
        )
        got_a = consume_all(
            bootstrap, kafka_settings.topic_actions, until=lambda r: len(r) >= len(want_a)
        )
        gave_up = worker.metric_sum("nurture_runtime_eventtime_idle_timeouts_total")
        batches = worker.metric_sum("nurture_runtime_batches_total")
    print(
        f"worker read the backlog in {took:.1f} s, {batches:.0f} batches, "
        f"{kafka_settings.topic_partitions} partitions"
    )

    assert batches > 0
    assert gave_up == 0, "the merge must have waited for every topic with unread data"
    live_a = {r["value"]["action_id"]: r["value"] for r in got_a}
    want_by_id = {a["action_id"]: a for a in want_a}
    missing = sorted(set(want_by_id) - set(live_a))
    extra = sorted(set(live_a) - set(want_by_id))
    assert not missing and not extra, (
        f"{len(missing)} actions only in replay (e.g. {[want_by_id[i] for i in missing[:3]]}), "
        f"{len(extra)} only in the stream (e.g. {[live_a[i] for i in extra[:3]]})"
    )
    assert canonical(list(live_a.values())) == canonical(list(want_by_id.values()))
    live_t, replay_t = canonical([r["value"] for r in got_t]), canonical(want_t)
    assert set(live_t) == set(replay_t), (
        f"only in replay: {list(set(replay_t) - set(live_t))[:3]}; "
        f"only in stream: {list(set(live_t) - set(replay_t))[:3]}"
    )
