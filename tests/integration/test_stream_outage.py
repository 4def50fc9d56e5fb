"""Outages in the middle of a live run: three weeks of simulated traffic of 2,000 leads, read
live by a worker, then as a backlog after it went down, twice (once stopped gracefully, once
SIGKILLed). The transitions and actions of the three worker processes together equal
``nurture replay`` of the same events (actions by ``action_id``).

Timeline (days of the simulation; one RocksDB folder and one consumer group throughout):

1. days 0-5 live: worker A runs; the events are produced in event-time order, in phases
   (:func:`tests.support.backlog.produce_live`), each once A has handled the previous one;
2. A is stopped gracefully (SIGTERM); days 5-14 are produced one input topic after the other;
3. worker B starts, reads that backlog, then days 14-15.5 live (in phases);
4. B is SIGKILLed as soon as the last live phase is on the broker, while it reads it (what it
   has not committed, C reads again); days 15.5-21 and the flush events are produced one topic
   after the other;
5. worker C starts and reads the backlog; the group's lag reaches 0.

Shown: each backlog holds cross-topic inversions (leads whose events fetch order would get
wrong), B and C handled their backlogs (their own ``/metrics``), no worker's event-time merge
gave up waiting (``nurture_runtime_eventtime_idle_timeouts_total == 0``), and the outputs equal
replay's. Why the live part cannot depend on timing (the phases of live production), and why
the equality is exact (event times a year ahead, the ``T_end`` flush, no late deliveries):
:mod:`tests.support.backlog`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from stream.core.model import DAY_MS
from stream.offline.simulate import SimEvent
from tests.support.backlog import (
    assert_equal_to_replay,
    build_input,
    canonical,
    cross_topic_inversions,
    on_own_topics,
    produce_live,
    produce_topic_after_topic,
    replay,
)
from tests.support.worker import WorkerProcess, consume_all, wait_consumed

if TYPE_CHECKING:
    from stream.settings import Settings

LEADS = 2000
DAYS = 21
SEED = 17
GAVE_UP = "nurture_runtime_eventtime_idle_timeouts_total"
# the merge's wait for a topic with unread data is bounded; on a loaded CI machine a fetch can
# take longer than the 1 s default, and this test is about the order, not the bound
ENV = {"NURTURE_MAX_TASK_IDLE_MS": "20000"}


def days(events: list[SimEvent], start: int, first: float, end: float | None) -> list[SimEvent]:
    """The events delivered in days ``[first, end)`` of the simulation (``end`` None: to the
    end); the list stays in event-time order."""
    lo = start + int(first * DAY_MS)
    hi = None if end is None else start + int(end * DAY_MS)
    return [e for e in events if e.deliver_at >= lo and (hi is None or e.deliver_at < hi)]


def live(
    settings: Settings,
    worker: WorkerProcess,
    events: list[SimEvent],
    handled: int,
    *,
    wait_last: bool = True,
) -> tuple[int, int]:
    """Produce ``events`` live (:func:`tests.support.backlog.produce_live`: phase by phase,
    each once ``worker`` has handled everything before it; ``handled``: what it handled
    earlier). ``wait_last=False``: return as soon as the last phase is on the broker (the
    worker is then still reading it). Returns (messages produced in all, phases)."""
    total = len(events)

    def barrier(n: int) -> None:
        if n < total or wait_last:
            worker.wait_processed(handled + n, timeout=120, poll=0.02)

    sent, phases = produce_live(settings, events, barrier)
    return handled + sent, phases


def test_outages_in_a_live_run_equal_replay(kafka_settings: Settings, tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    events, start = build_input(events_path, LEADS, DAYS, SEED)
    stats, want_t, want_a = replay(events_path, tmp_path / "replay")
    assert stats.transitions > 2000 and stats.actions > 2000 and stats.timers_fired > 1000

    live_1 = days(events, start, 0, 5)
    backlog_1 = days(events, start, 5, 14)
    live_2 = days(events, start, 14, 15.5)
    backlog_2 = days(events, start, 15.5, None)  # with the flush events at T_end
    parts = [live_1, backlog_1, live_2, backlog_2]
    assert sum(len(p) for p in parts) == len(events) and all(parts)
    inversions = cross_topic_inversions(backlog_1), cross_topic_inversions(backlog_2)
    assert min(inversions) > 50, "each backlog must be one that fetch order gets wrong"

    settings = on_own_topics(kafka_settings, "-outage")  # the default partition count (12)
    gave_up: list[float] = []

    with WorkerProcess.from_settings(settings, env=ENV) as a:
        a.wait_ready()
        handled_a, phases_1 = live(settings, a, live_1, 0)
        gave_up.append(a.metric_sum(GAVE_UP))
        assert a.stop() == 0, a.log_tail()  # graceful: SIGTERM, exits 0

    produce_topic_after_topic(settings, backlog_1)
    b = WorkerProcess.from_settings(settings, env=ENV).start()
    try:
        b.wait_ready()
        b.wait_processed(len(backlog_1), timeout=120)
        backlog_1_handled = b.processed()
        produced_b, phases_2 = live(settings, b, live_2, backlog_1_handled, wait_last=False)
        gave_up.append(b.metric_sum(GAVE_UP))
    finally:
        b.kill()  # a crash: no shutdown, no final commit

    produce_topic_after_topic(settings, backlog_2)
    with WorkerProcess.from_settings(settings, env=ENV) as c:
        began = time.monotonic()
        c.wait_ready()
        c.wait_processed(len(backlog_2), timeout=120)
        wait_consumed(settings, timeout=120)
        took = time.monotonic() - began
        handled_c = c.processed()
        gave_up.append(c.metric_sum(GAVE_UP))
        skipped = c.metric_sum("nurture_runtime_redelivered_skipped_total")
        resent = c.metric_sum("nurture_runtime_outbox_resent_total")

    bootstrap = settings.kafka_bootstrap_servers
    want_ids = {x["action_id"] for x in want_a}
    got_a = consume_all(
        bootstrap,
        settings.topic_actions,
        until=lambda r: len({x["value"]["action_id"] for x in r}) >= len(want_ids),
    )
    distinct_t = len(canonical(want_t))
    got_t = consume_all(
        bootstrap,
        settings.topic_transitions,
        until=lambda r: len(canonical(x["value"] for x in r)) >= distinct_t,
    )
    print(
        f"\n{len(events)} messages of {LEADS} leads over {DAYS} days, {settings.topic_partitions} "
        f"partitions; replay: {stats.transitions} transitions, {stats.actions} actions, "
        f"{stats.timers_fired} timers fired\n"
        f"A live: {handled_a} messages in {phases_1} phases, stopped\n"
        f"B: backlog of {len(backlog_1)} ({inversions[0]} leads with cross-topic inversions), "
        f"then {produced_b - backlog_1_handled} live in {phases_2} phases, "
        f"killed\n"
        f"C: backlog of {len(backlog_2)} ({inversions[1]} leads with inversions), handled "
        f"{handled_c} in {took:.1f} s ({skipped:.0f} redelivered skipped, {resent:.0f} outbox "
        f"re-sends); merge gave up {gave_up}"
    )

    assert handled_a == len(live_1)
    assert backlog_1_handled >= len(backlog_1) > 0, "B read the first backlog"
    assert handled_c >= len(backlog_2) > 0, "C read the second backlog"
    assert gave_up == [0, 0, 0], "the merge must have waited for every topic with unread data"
    assert_equal_to_replay([r["value"] for r in got_t], [r["value"] for r in got_a], want_t, want_a)
