"""A wiped RocksDB dir is rebuilt from the changelog and processing continues correctly.

Phase 1 processes half of the input (leads with checkpoints due later on the wall clock, and
future-dated journeys); the worker stops and its data dir is deleted; a fresh worker recovers the
table from the changelog (ready only after that), rebuilds its due index from the recovered
table (the checkpoints still fire) and processes phase 2. Outputs equal the core's.
"""

from __future__ import annotations

import random
import shutil
import time
from typing import TYPE_CHECKING, Any

from tests.support.leads import trial_leads
from tests.support.reference import by_lead, core_outputs, dedupe_actions, dedupe_transitions
from tests.support.worker import (
    WorkerProcess,
    consume_all,
    consume_to_end,
    produce_events,
    wait_consumed,
)

if TYPE_CHECKING:
    from stream.settings import Settings

LEADS = 600
DUE_AFTER_S = 70.0
WINDOW_S = 10.0


def split_per_lead(events: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """First half of each lead's events, then the rest (each lead's order kept)."""
    count: dict[str, int] = {}
    for e in events:
        count[e["lead_id"]] = count.get(e["lead_id"], 0) + 1
    seen: dict[str, int] = {}
    first, second = [], []
    for e in events:
        k = seen.get(e["lead_id"], 0)
        seen[e["lead_id"]] = k + 1
        (first if k < (count[e["lead_id"]] + 1) // 2 else second).append(e)
    return first, second


def test_wiped_rocksdb_is_rebuilt_from_the_changelog(kafka_settings: Settings) -> None:
    rng = random.Random(5)
    t0 = time.time()
    first_due = int((t0 + DUE_AFTER_S) * 1000)
    events = trial_leads(LEADS, first_due, int(WINDOW_S * 1000), rng, prefix="wipe")
    until = first_due + int(WINDOW_S * 1000)
    want_tr, want_ac = core_outputs(events, until=until)
    phase1, phase2 = split_per_lead(events)

    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        produce_events(kafka_settings, phase1)
        worker.wait_processed(len(phase1), timeout=60)
        status, before = worker.get("/leads/wipe-00001")
        assert status == 200
        worker.stop()
    shutil.rmtree(kafka_settings.data_dir)
    assert not kafka_settings.data_dir.exists()

    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready(timeout=120)  # ready only after the table is recovered
        status, after = worker.get("/leads/wipe-00001")
        assert status == 200 and after["state"] == before["state"]
        assert after["pending_timers"] == before["pending_timers"]
        produce_events(kafka_settings, phase2)
        worker.wait_processed(len(phase2), timeout=60)
        assert time.time() < t0 + DUE_AFTER_S, "phase 2 must be processed before timers fall due"
        want_ids = {a["action_id"] for a in want_ac}
        got_ac = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_actions,
            until=lambda r: want_ids <= {x["value"]["action_id"] for x in r},
            timeout=DUE_AFTER_S + WINDOW_S + 60 - (time.time() - t0),
        )
        wait_consumed(kafka_settings, timeout=30)
    # past the expected ids: everything up to the end offsets (late extras would show)
    assert want_ids <= {x["value"]["action_id"] for x in got_ac}
    got_ac = consume_to_end(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_actions)
    got_tr = consume_to_end(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_transitions
    )
    actions, dups = dedupe_actions(r["value"] for r in got_ac)
    transitions, _ = dedupe_transitions(r["value"] for r in got_tr)
    assert dups == 0
    assert actions == {a["action_id"]: a for a in want_ac}
    assert by_lead(transitions) == by_lead(want_tr)
