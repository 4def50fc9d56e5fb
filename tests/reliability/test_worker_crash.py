"""Crash recovery: the worker is SIGKILLed at random points while a few thousand leads' events
stream in and while their checkpoint timers fall due, and restarted each time (same RocksDB dir).

Shown: no transition lost, no timer lost, none fired twice (a second firing would change the
lead's transitions), and after dedup by action_id the committed actions equal the core's output
for the same input. Raw duplicates (at-least-once re-sends) are counted and printed; the
outbox re-send path is shown to have run (``nurture_runtime_outbox_resent_total`` of the
workers, read before each kill; one kill comes right after the worker reports progress, before
its commit). Outputs are read up to the topics' end offsets, so late extras count too.

Input design (what makes the comparison exact): each lead's events are all product events (one
topic, so Kafka keeps their order); they happened ~48 h ago, so their 48 h checkpoints fall due on
the wall clock in a window that opens after all input has been processed and committed (checked,
not assumed). The reference fires, per lead, its timers due up to the end of that window.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.support.leads import trial_leads
from tests.support.reference import by_lead, core_outputs, dedupe_actions, dedupe_transitions
from tests.support.worker import (
    WorkerProcess,
    consume_all,
    consume_to_end,
    input_lag,
    produce_events,
    wait_consumed,
)

if TYPE_CHECKING:
    from stream.settings import Settings

LEADS = 1500
SEED = 7
DUE_AFTER_S = 110.0  # first checkpoint falls due this long after the test starts
WINDOW_S = 20.0  # checkpoints spread over this window


RESENT = "nurture_runtime_outbox_resent_total"


def resent_by(worker: WorkerProcess) -> float:
    """Outputs this worker process re-sent from outboxes (0 if it does not answer yet)."""
    try:
        return worker.metric_sum(RESENT)
    except (OSError, RuntimeError, ValueError):
        return 0.0


def restart(worker: WorkerProcess, settings: Settings, resent: list[float]) -> WorkerProcess:
    resent.append(resent_by(worker))
    worker.kill()
    fresh = WorkerProcess.from_settings(settings, web_port=worker.web_port)
    return fresh.start()


def kill_after_progress(worker: WorkerProcess, produce: Callable[[], object]) -> None:
    """Produce, wait until the worker reports processing some of it, then SIGKILL it at once:
    its last batches' offsets are (almost always) not committed yet, so they are delivered
    again to the next worker, which re-sends their outputs from the outbox."""
    worker.wait_ready()
    start = worker.processed()
    produce()
    deadline = time.monotonic() + 60
    while worker.processed() <= start:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no progress in 60 s:\n{worker.log_tail()}")
        time.sleep(0.02)  # poll interval of a condition with a deadline
    worker.kill()


def test_sigkill_during_events_and_timers_loses_nothing(kafka_settings: Settings) -> None:
    rng = random.Random(SEED)
    t0 = time.time()
    first_due = int((t0 + DUE_AFTER_S) * 1000)
    events = trial_leads(LEADS, first_due, int(WINDOW_S * 1000), rng, prefix="crash")
    window_end = first_due + int(WINDOW_S * 1000)
    want_tr, want_ac = core_outputs(events, until=window_end)
    timer_reasons = {t["reason"] for t in want_tr if "checkpoint" in t["reason"]}
    assert timer_reasons, "the window must hold checkpoint firings"

    kills = 0
    resent: list[float] = []  # outbox re-sends reported by each worker before its kill
    worker = WorkerProcess.from_settings(kafka_settings).start()
    try:
        worker.wait_ready()
        # phase 1: events stream in; SIGKILL at random points (also during startup/recovery)
        chunks = 6
        size = len(events) // chunks + 1
        for c in range(chunks):
            chunk = events[c * size : (c + 1) * size]
            if c == 2:  # a kill between processing and its commit
                resent.append(resent_by(worker))
                kill_after_progress(
                    worker, lambda chunk=chunk: produce_events(kafka_settings, chunk)
                )
                worker = restart(worker, kafka_settings, resent)
                kills += 1
                continue
            produce_events(kafka_settings, chunk)
            if c in (1, 3, 4):
                time.sleep(rng.uniform(0.2, 2.5))  # a random kill point, not a synchronisation
                worker = restart(worker, kafka_settings, resent)
                kills += 1
        worker.wait_ready()
        wait_consumed(kafka_settings, timeout=max(5.0, DUE_AFTER_S - (time.time() - t0)))
        processed_at = time.time() - t0
        assert processed_at < DUE_AFTER_S, "input must be processed before timers fall due"

        # phase 2: timers fall due; kill inside the window, once with a down time over due times
        first_due_s = DUE_AFTER_S
        time.sleep(max(0.0, t0 + first_due_s + 3 - time.time()))  # wait for the window to open
        worker = restart(worker, kafka_settings, resent)
        kills += 1
        time.sleep(rng.uniform(3, 6))
        resent.append(resent_by(worker))
        worker.kill()  # down while checkpoints fall due
        kills += 1
        time.sleep(5)
        worker = WorkerProcess.from_settings(kafka_settings, web_port=worker.web_port).start()
        worker.wait_ready()

        want_ids = {a["action_id"] for a in want_ac}
        got_ac = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_actions,
            until=lambda r: (
                want_ids <= {x["value"]["action_id"] for x in r}
                and time.time() > t0 + DUE_AFTER_S + WINDOW_S + 2
            ),
            timeout=DUE_AFTER_S + WINDOW_S + 120 - (time.time() - t0),
        )
        wait_consumed(kafka_settings, timeout=60)
        got_tr = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_transitions,
            until=lambda r: len(r) >= len(want_tr),
            timeout=60,
            idle=3,
        )
        lag = input_lag(kafka_settings)
        resent.append(resent_by(worker))
    finally:
        log = worker.log_tail()
        worker.stop()
    # everything written, up to the end offsets after the last worker stopped (late extras too)
    got_ac = consume_to_end(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_actions)
    got_tr = consume_to_end(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_transitions
    )

    actions, dup_actions = dedupe_actions(r["value"] for r in got_ac)
    transitions, dup_transitions = dedupe_transitions(r["value"] for r in got_tr)
    print(
        f"\ncrash test: {LEADS} leads, {len(events)} events, {kills} SIGKILLs, "
        f"input processed+committed at {processed_at:.1f}s; "
        f"actions {len(got_ac)} raw / {len(actions)} unique ({dup_actions} duplicates); "
        f"transitions {len(got_tr)} raw / {len(transitions)} unique ({dup_transitions} dup); "
        f"outbox re-sends per worker {resent}"
    )
    assert lag == 0
    assert sum(resent) > 0, "a re-delivered batch must have re-sent its outputs from the outbox"
    missing = want_ids - set(actions)
    assert not missing, f"{len(missing)} actions lost, e.g. {sorted(missing)[:5]}\n{log}"
    assert actions == {a["action_id"]: a for a in want_ac}, "extra or different actions"
    assert by_lead(transitions) == by_lead(want_tr)
    fired = [t for t in transitions if t["reason"] in timer_reasons]
    assert len(fired) == len([t for t in want_tr if t["reason"] in timer_reasons])
