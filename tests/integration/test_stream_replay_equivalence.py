"""A backlog read in event time: the worker is down while three weeks of simulated traffic of
2,500 leads is produced to the three input topics ONE TOPIC AFTER THE OTHER (a backfill, or
an outage); then it starts. Its transitions and actions equal ``nurture replay`` of the same
events (actions by ``action_id``).

What makes this a test of the event-time merge: read in fetch order, a lead's CRM events
(produced last) would come after its product events of days later, and the wall clock would
fire every checkpoint on the lead's first message. The input is checked to hold many such
cross-topic inversions, and the worker's merge to have never given up waiting
(``nurture_runtime_eventtime_idle_timeouts_total`` stays 0).

What makes the equality exact (event times a year ahead, a flush event per lead at ``T_end``,
no late deliveries, ties in the worker's topic order): :mod:`tests.support.backlog`. The same
with an outage in the middle of a live run: test_stream_outage.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.backlog import (
    assert_equal_to_replay,
    build_input,
    cross_topic_inversions,
    on_own_topics,
    produce_topic_after_topic,
    replay,
)
from tests.support.worker import WorkerProcess, consume_all

if TYPE_CHECKING:
    from stream.settings import Settings

LEADS = 2500
DAYS = 21
SEED = 21


def test_a_backlog_produced_one_topic_after_the_other_equals_replay(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    events_path = tmp_path / "events.jsonl"
    events, _ = build_input(events_path, LEADS, DAYS, SEED)
    stats, want_t, want_a = replay(events_path, tmp_path / "replay")
    assert stats.transitions > 2000 and stats.actions > 2000 and stats.timers_fired > 1000
    inversions = cross_topic_inversions(events)
    assert inversions > 300, "the input must be one that fetch order gets wrong"

    # the default partition count (12), on topics of its own
    kafka_settings = on_own_topics(kafka_settings, "-p12")
    bootstrap = kafka_settings.kafka_bootstrap_servers
    produce_topic_after_topic(kafka_settings, events)  # the worker is down
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
    assert_equal_to_replay([r["value"] for r in got_t], [r["value"] for r in got_a], want_t, want_a)
