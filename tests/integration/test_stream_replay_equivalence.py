"""Stream and replay agree: the same simulated input through the Kafka worker and through replay
gives the same transitions and the same actions (by action_id).

Assumptions, made explicit (they are what makes the comparison exact rather than approximate):

* **Event time in the future.** The simulated period starts a year from now. The worker's clock
  for an event is ``max(wall clock, event.at)`` (stream/runtime/processor.py), so with future
  times it is the event's own time: a lead's timer fires right before the lead's first event at
  or after its due time, and the wall-clock ticks fire nothing. Replay fires the same timers at the
  same place in the lead's own sequence (its global heap only decides the order *across* leads,
  which cannot change a lead's outputs).
* **Trailing timers.** Replay fires every timer due up to the latest event time; the worker fires
  a lead's timers only on that lead's events. So the input ends with one ``email.opened`` per lead
  at ``T_end`` (after every other event): both sides fire all timers due up to ``T_end``, then
  step the same event. Those flush events are in the file replay reads too.
* **Order across input topics.** Kafka orders a lead's messages within one topic only, and a
  lead's events go to three topics by type. The input is therefore produced in rounds in which no
  lead has messages on two different topics; each round is produced only after the worker has
  processed every earlier message (its ``nurture_events_in_total`` + ``nurture_dead_letters_total``
  reached the count; a condition, polled). Within a round Kafka's per-partition order holds.
* **No late events.** The simulator's late deliveries are turned off (duplicates, a few seconds
  to minutes behind, and malformed lines stay). A late event sees timers fired up to the *global*
  watermark in replay, but in future-dated mode the worker's clock for it is its own
  ``occurred_at``, so the two would legitimately differ (seed 21: 223 late events change 3 of
  9,172 transitions, in 2 leads). Live in real time the worker's clock is the wall clock, which
  is the global watermark, i.e. what replay does. The test first checks, without Kafka, that a
  model of the worker's per-lead clock gives exactly replay's outputs on this input, then
  compares the worker.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339
from stream.offline.simulate import SimEvent, generate
from tests.support.worker import WorkerProcess, consume_all, produce_rounds

if TYPE_CHECKING:
    from stream.settings import Settings

LEADS = 2500
DAYS = 30
SEED = 21


def as_records(
    settings: Settings, events: list[SimEvent]
) -> list[tuple[str, bytes | None, bytes | None]]:
    """Simulated events as ``(input topic of their source, lead_id key, original line)``."""
    topics = {
        "product": settings.topic_product_events,
        "email": settings.topic_email_events,
        "crm": settings.topic_crm_events,
    }
    return [(topics[e.source], e.lead_id.encode(), e.line) for e in events]


def build_input(path: Path) -> list[SimEvent]:
    start = (int(time.time() * 1000) // DAY_MS + 365) * DAY_MS
    events = list(generate(LEADS, DAYS, SEED, start=start, late_share=0.0))
    last = max(e.deliver_at for e in events)
    t_end = last + HOUR_MS
    leads = sorted({e.lead_id for e in events})
    for n, lead in enumerate(leads):
        doc = {
            "event_id": f"flush-{n:07d}",
            "type": "email.opened",
            "lead_id": lead,
            "occurred_at": ms_to_rfc3339(t_end),
        }
        events.append(SimEvent(t_end, lead, "email", orjson.dumps(doc)))
    with open(path, "wb") as fh:
        for e in events:
            fh.write(e.line + b"\n")
    return events


def rounds(events: list[SimEvent]) -> list[list[SimEvent]]:
    """Cut the sequence so that no lead has messages on two topics inside one round."""
    out: list[list[SimEvent]] = [[]]
    seen: dict[str, str] = {}
    for e in events:
        topic = seen.get(e.lead_id)
        if topic is not None and topic != e.source:
            out.append([])
            seen = {}
        seen[e.lead_id] = e.source
        out[-1].append(e)
    return out


def per_lead_clock_outputs(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The worker's time model in future-dated mode, without Kafka: for each event, fire the
    lead's own pending timers due at or before ``event.at`` (due order, chains included), step
    the event, then fire what the step scheduled at or before ``event.at``."""
    from stream.core.config import load_config
    from stream.core.engine import step
    from stream.core.model import TimerFired
    from stream.offline.replay import iter_lines, open_events
    from topics.parse import InvalidEvent, parse_event

    config = load_config(None)
    states: dict[str, Any] = {}
    pending: dict[str, list[Any]] = {}
    transitions: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []

    def apply(lead: str, inp: Any) -> None:
        result = step(states.get(lead), inp, config)
        states[lead] = result.state
        pending[lead] = list(result.timers)
        transitions.extend(t.to_record() for t in result.transitions)
        actions.extend(a.to_record() for a in result.actions)

    def fire(lead: str, clock: int) -> None:
        for _ in range(1000):
            due = [t for t in pending.get(lead, []) if t.due <= clock]
            if not due:
                return
            first = min(due)
            apply(lead, TimerFired(lead, first.timer_id, first.due))

    with open_events(path) as fh:
        for _, raw in iter_lines(fh):
            try:
                event = parse_event(raw)
            except InvalidEvent:
                continue
            fire(event.lead_id, event.at)
            apply(event.lead_id, event)
            fire(event.lead_id, event.at)
    return transitions, actions


def canonical(records: list[dict[str, Any]]) -> collections.Counter[bytes]:
    return collections.Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_worker_and_replay_give_the_same_transitions_and_actions(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    from stream.core.config import load_config
    from stream.offline.replay import replay_file

    events_path = tmp_path / "events.jsonl"
    events = build_input(events_path)
    stats = replay_file(events_path, tmp_path / "replay", load_config(None), html=False)
    want_t = read_jsonl(tmp_path / "replay" / "transitions.jsonl")
    want_a = read_jsonl(tmp_path / "replay" / "actions.jsonl")
    assert stats.transitions > 2000 and stats.actions > 2000  # a few thousand leads' worth
    # precondition: on this input the worker's per-lead clock and replay's global watermark
    # agree (late events could make them differ; see the module docstring)
    model_t, model_a = per_lead_clock_outputs(events_path)
    assert canonical(model_t) == canonical(want_t)
    assert canonical(model_a) == canonical(want_a)
    batches = rounds(events)
    print(
        f"\n{len(events)} messages ({stats.dead_letters} malformed, {stats.late_events} late) "
        f"in {len(batches)} rounds; replay: {stats.transitions} transitions, "
        f"{stats.actions} actions, {stats.timers_fired} timers fired"
    )

    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        began = time.monotonic()
        produce_rounds(kafka_settings, worker, (as_records(kafka_settings, b) for b in batches))
        print(f"worker processed all messages in {time.monotonic() - began:.1f} s")
        bootstrap = kafka_settings.kafka_bootstrap_servers
        got_t = consume_all(
            bootstrap,
            kafka_settings.topic_transitions,
            until=lambda r: len(r) >= len(want_t),
            timeout=120,
        )
        got_a = consume_all(
            bootstrap,
            kafka_settings.topic_actions,
            until=lambda r: len(r) >= len(want_a),
            timeout=120,
        )

    live_t = [r["value"] for r in got_t]
    live_a = [r["value"] for r in got_a]
    by_id_live = {a["action_id"]: a for a in live_a}
    by_id_replay = {a["action_id"]: a for a in want_a}
    missing = sorted(set(by_id_replay) - set(by_id_live))
    extra = sorted(set(by_id_live) - set(by_id_replay))
    assert not missing and not extra, (
        f"{len(missing)} actions only in replay (e.g. {[by_id_replay[i] for i in missing[:3]]}), "
        f"{len(extra)} only in the stream (e.g. {[by_id_live[i] for i in extra[:3]]})"
    )
    assert canonical(list(by_id_live.values())) == canonical(list(by_id_replay.values()))
    live_set, replay_set = canonical(live_t), canonical(want_t)
    assert set(live_set) == set(replay_set), (
        f"only in replay: {list(set(replay_set) - set(live_set))[:3]}; "
        f"only in stream: {list(set(live_set) - set(replay_set))[:3]}"
    )
    dupes = sum(n - 1 for n in live_set.values() if n > 1)
    print(
        f"equal: {len(replay_set)} transitions, {len(by_id_replay)} actions; "
        f"stream duplicates (at-least-once redelivery): {dupes}"
    )
