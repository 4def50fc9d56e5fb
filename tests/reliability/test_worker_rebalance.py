"""Two workers: a second worker joins, then leaves, while events and timers flow.

Partitions (with their table partitions and due indexes) move to the second worker and back.
After dedup by action_id, the committed actions equal the core's output; transitions too.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

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

LEADS = 1200
DUE_AFTER_S = 75.0
WINDOW_S = 40.0


def test_second_worker_joins_then_leaves(kafka_settings: Settings) -> None:
    rng = random.Random(9)
    t0 = time.time()
    first_due = int((t0 + DUE_AFTER_S) * 1000)
    events = trial_leads(LEADS, first_due, int(WINDOW_S * 1000), rng, prefix="two")
    want_tr, want_ac = core_outputs(events, until=first_due + int(WINDOW_S * 1000))
    chunks = 4
    size = len(events) // chunks + 1
    batches = [events[c * size : (c + 1) * size] for c in range(chunks)]

    one = WorkerProcess.from_settings(kafka_settings).start()
    two = WorkerProcess.from_settings(kafka_settings, data_dir=kafka_settings.data_dir / "two")
    try:
        one.wait_ready()
        produce_events(kafka_settings, batches[0])
        two.start()  # joins while the first batch is being processed
        produce_events(kafka_settings, batches[1])
        two.wait_ready()
        produce_events(kafka_settings, batches[2])
        produce_events(kafka_settings, batches[3])
        wait_consumed(kafka_settings, timeout=max(5.0, DUE_AFTER_S - (time.time() - t0)))
        assert time.time() < t0 + DUE_AFTER_S, "input must be processed before timers fall due"
        # timers start falling due with both workers up; the second leaves in the middle
        while time.time() < t0 + DUE_AFTER_S + WINDOW_S / 3:
            time.sleep(0.2)  # wall clock: let part of the window pass with two workers
        assert two.stop() == 0, two.log_tail()
        want_ids = {a["action_id"] for a in want_ac}
        got_ac = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_actions,
            until=lambda r: want_ids <= {x["value"]["action_id"] for x in r},
            timeout=DUE_AFTER_S + WINDOW_S + 90 - (time.time() - t0),
        )
        wait_consumed(kafka_settings, timeout=60)
    finally:
        two.stop()
        one.stop()
    # past the expected ids: everything up to the end offsets (late extras would show)
    assert want_ids <= {x["value"]["action_id"] for x in got_ac}
    got_ac = consume_to_end(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_actions)
    got_tr = consume_to_end(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_transitions
    )
    actions, dup_a = dedupe_actions(r["value"] for r in got_ac)
    transitions, dup_t = dedupe_transitions(r["value"] for r in got_tr)
    print(f"\ntwo workers: {len(events)} events; duplicates: {dup_a} actions, {dup_t} transitions")
    assert actions == {a["action_id"]: a for a in want_ac}
    assert by_lead(transitions) == by_lead(want_tr)
