"""Durable timers on a real broker: a timer due while the worker is down fires once after the
restart; a checkpoint already in the past when its cause arrives fires at once; and how far
behind due timers fire under load (p50/p99, printed).

Firing lag is measured from the published actions: a checkpoint action's ``at`` is the timer's
due time (event time) and its Kafka timestamp is the producer's wall clock when it was sent.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stream.core.model import HOUR_MS, ms_to_rfc3339, rfc3339_to_ms
from tests.support.leads import percentile, trial_leads
from tests.support.reference import core_outputs, dedupe_actions
from tests.support.worker import WorkerProcess, consume_all, produce_events

if TYPE_CHECKING:
    from stream.settings import Settings

CHECKPOINT = "trial.checkpoint_48h"
LEAD_S = 40  # the input is processed before the first checkpoint falls due (asserted)


def checkpoint_transitions(records: list[dict[str, Any]], lead: str) -> list[dict[str, Any]]:
    return [
        r["value"]
        for r in records
        if r["value"]["lead_id"] == lead and r["value"]["reason"] == CHECKPOINT
    ]


def test_timer_due_while_down_fires_once_after_restart(kafka_settings: Settings) -> None:
    now = int(time.time() * 1000)
    due = now + 15_000
    down_lead, past_lead = "down-1", "past-1"
    events = [
        {
            "event_id": "d-0",
            "type": "trial.started",
            "lead_id": down_lead,
            "occurred_at": ms_to_rfc3339(due - 48 * HOUR_MS),
        },
        {
            "event_id": "d-1",
            "type": "session.started",
            "lead_id": down_lead,
            "occurred_at": ms_to_rfc3339(due - 47 * HOUR_MS),
        },
        {  # its 48 h checkpoint is an hour in the past already: fires at once
            "event_id": "p-0",
            "type": "trial.started",
            "lead_id": past_lead,
            "occurred_at": ms_to_rfc3339(now - 49 * HOUR_MS),
        },
    ]
    bootstrap = kafka_settings.kafka_bootstrap_servers
    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        sent_at = time.time()
        produce_events(kafka_settings, events)
        worker.wait_processed(len(events))
        tr = consume_all(
            bootstrap,
            kafka_settings.topic_transitions,
            until=lambda r: bool(checkpoint_transitions(r, past_lead)),
            timeout=30,
        )
        fired = checkpoint_transitions(tr, past_lead)
        assert len(fired) == 1, "a checkpoint already past when scheduled fires at once"
        stamp = next(r["timestamp"] for r in tr if r["value"] is fired[0]) / 1000
        assert stamp - sent_at < 10
        assert not checkpoint_transitions(tr, down_lead), "not due yet"
        status, view = worker.get(f"/leads/{down_lead}")
        assert status == 200
        assert any(t["due_ms"] == due for t in view["pending_timers"])
        worker.stop()  # graceful; the timer falls due while no worker runs
        assert worker.proc is not None and worker.proc.returncode == 0, worker.log_tail()

    while time.time() * 1000 < due + 3000:
        time.sleep(0.2)  # wait (wall clock) until the timer is overdue; nothing runs meanwhile
    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        tr = consume_all(
            bootstrap,
            kafka_settings.topic_transitions,
            until=lambda r: bool(checkpoint_transitions(r, down_lead)),
            timeout=60,
        )
        assert len(checkpoint_transitions(tr, down_lead)) == 1
        # more ticks pass; a sentinel event proves the worker moved on, then nothing fired twice
        produce_events(kafka_settings, [dict(events[0], event_id="s-0", lead_id="sentinel")])
        worker.wait_processed(1)
        status, view = worker.get(f"/leads/{down_lead}")
        assert all(t["due_ms"] != due for t in view["pending_timers"])
        assert view["last_transitions"][-1]["reason"] == CHECKPOINT
    tr = consume_all(bootstrap, kafka_settings.topic_transitions, idle=2)
    assert len(checkpoint_transitions(tr, down_lead)) == 1
    assert len(checkpoint_transitions(tr, past_lead)) == 1


def test_timer_firing_lag_under_load(kafka_settings: Settings) -> None:
    """1,000 checkpoints due over 15 s while ~3,000 other events stream in; report the lag."""
    rng = random.Random(3)
    t0 = time.time()
    first_due = int((t0 + LEAD_S) * 1000)
    window = 15_000
    timed = trial_leads(1000, first_due, window, rng, prefix="lag")
    # live load: events of the last hours (event time behind the wall clock, as live traffic
    # is), their own checkpoints due in two days
    far = trial_leads(1000, int(t0 * 1000) + 43 * HOUR_MS, 1000, rng, prefix="load")
    _, want_ac = core_outputs(timed, until=first_due + window)
    want_ids = {a["action_id"] for a in want_ac}
    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        produce_events(kafka_settings, timed)
        worker.wait_processed(len(timed), timeout=LEAD_S - 5)
        assert time.time() < t0 + LEAD_S, "input must be processed before the timers fall due"
        # background load while the checkpoints fall due
        chunk = len(far) // 10 + 1
        for c in range(10):
            while time.time() < t0 + LEAD_S + c * 1.5:
                time.sleep(0.05)  # pace the load over the due window (a rate, not a sync)
            produce_events(kafka_settings, far[c * chunk : (c + 1) * chunk])
        got = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_actions,
            until=lambda r: want_ids <= {x["value"]["action_id"] for x in r},
            timeout=120,
        )
    lags = [
        r["timestamp"] - rfc3339_to_ms(r["value"]["at"])
        for r in got
        if r["value"]["reason"] == CHECKPOINT
    ]
    actions, dups = dedupe_actions(r["value"] for r in got if r["value"]["action_id"] in want_ids)
    assert actions == {a["action_id"]: a for a in want_ac}
    assert dups == 0
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    print(
        f"\ntimer firing lag under load ({len(lags)} checkpoint actions, "
        f"{len(far)} concurrent events): p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(lags):.0f} ms [{datetime.now():%H:%M:%S}]"
    )
    assert p99 < 5000


def _lead_events(lead: str, start: int, sessions: int) -> list[dict[str, Any]]:
    """A session every 2 days from ``start`` + 1 h (``sessions`` of them), then, last in arrival
    order (late), ``trial.started`` at ``start``. Every timer of the lead is scheduled by its last
    message, so wall-clock ticks cannot fire one between the lead's events: the worker's output
    is deterministic and equals the core's for the same arrival order."""
    steps = [("session.started", start + HOUR_MS + k * 48 * HOUR_MS) for k in range(sessions)]
    steps.append(("trial.started", start))
    return [
        {
            "event_id": f"{lead}-{i}",
            "type": etype,
            "lead_id": lead,
            "occurred_at": ms_to_rfc3339(at),
            "properties": {},
        }
        for i, (etype, at) in enumerate(steps)
    ]


def test_7d_14d_checkpoints_and_reengagement_cadence_fire_through_the_broker(
    kafka_settings: Settings,
) -> None:
    """Event times in the past, so every timer is due at once (fast). Engaged trial leads (their
    sessions first, trial.started late) pass the 48h, 7d and 14d checkpoints; silent ones enter
    re-engagement at 48h, get the cadence's emails 2 and 3 four days apart, and go inactive
    four days after the third. The worker's transitions and actions equal the core's, and
    nothing more arrives after a sentinel."""
    now = int(time.time() * 1000)
    day = 24 * HOUR_MS
    engaged = [f"eng-{i}" for i in range(3)]
    silent = [f"sil-{i}" for i in range(3)]
    events: list[dict[str, Any]] = []
    for i, lead in enumerate(engaged):
        events += _lead_events(lead, now - 16 * day - i * HOUR_MS, sessions=8)
    for i, lead in enumerate(silent):
        events += _lead_events(lead, now - 20 * day - i * HOUR_MS, sessions=0)
    # produced in event time, as a source publishing history does: the worker fires timers on
    # its partition's stream time, so an event behind it (late) would see later timers fired
    events.sort(key=lambda e: rfc3339_to_ms(e["occurred_at"]))
    want_tr, want_ac = core_outputs(events, until=now)
    reasons = {lead: [t["reason"] for t in want_tr if t["lead_id"] == lead] for lead in engaged}
    for lead in engaged:  # the scenario exercises what it claims (the oracle agrees)
        assert {"trial.checkpoint_7d", "trial.checkpoint_14d"} <= set(reasons[lead])
    for lead in silent:
        got = [t["reason"] for t in want_tr if t["lead_id"] == lead]
        assert got.count("reengage.cadence") == 2 and got[-1] == "reengage.no_response"

    bootstrap = kafka_settings.kafka_bootstrap_servers
    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        produce_events(kafka_settings, events)
        worker.wait_processed(len(events))
        consume_all(
            bootstrap,
            kafka_settings.topic_transitions,
            until=lambda r: len(r) >= len(want_tr),
            timeout=60,
        )
        # a sentinel processed after them: any late extra would be published by now
        produce_events(kafka_settings, [dict(events[0], event_id="s-0", lead_id="sentinel")])
        worker.wait_processed(len(events) + 1)
    transitions = [
        r["value"]
        for r in consume_all(bootstrap, kafka_settings.topic_transitions, idle=2)
        if r["value"]["lead_id"] != "sentinel"
    ]
    actions = [
        r["value"]
        for r in consume_all(bootstrap, kafka_settings.topic_actions, idle=2)
        if r["value"]["lead_id"] != "sentinel"
    ]
    for lead in engaged + silent:
        got = [t for t in transitions if t["lead_id"] == lead]
        assert got == [t for t in want_tr if t["lead_id"] == lead], lead
    deduped, dups = dedupe_actions(actions)
    assert deduped == {a["action_id"]: a for a in want_ac}
    assert dups == 0  # no kill in this test: a duplicate would be a bug
