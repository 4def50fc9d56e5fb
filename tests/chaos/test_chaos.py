"""``make chaos``: the whole chain under faults, at scale, against the replay oracle (on demand).

Input: ``NURTURE_CHAOS_LEADS`` (default 30,000: ~200k events) simulated leads over 30 days,
with the simulator's duplicate and malformed deliveries, dated a year ahead (the wall clock
never overtakes the partitions' stream time, so timers fire on event time only, during the
run), plus one trailing ``email.opened`` per lead at ``T_end`` that fires every timer left.

Feeding: the events are cut into ``PHASES`` slices of event time. Each slice is produced while
no worker runs (an outage), the three input topics ONE AFTER THE OTHER (product, email, CRM):
a lead's CRM events land on the broker after its later product and email events, so fetch
order is not event time (the cross-topic inversions are counted) and the worker's event-time
merge must put them back in order. Then worker A starts and is SIGKILLed at random points of
its progress through the slice (``KILLS`` in all, each restarted at once); in one slice a
second worker B joins and is SIGKILLed mid-slice (not a graceful leave); in another the broker
is restarted on the same data directory mid-slice. The slice is done once the group has
committed every input; then A is SIGKILLed idle (the next outage).

Why slices with the workers down, and why the simulator's late deliveries are put back in
event time within their topic: an event that reaches the worker after its partition's stream
time has passed it is stepped with the timers fired up to that stream time, which depends on
the partition (not the whole input, as in replay) and resets at a restart. Its outputs then
depend on timing, not on the input alone (an offline model of the worker over this input with
late events left late: 20 of 57.5k sends differ from replay at 30k leads). With every slice
on the broker before a worker reads it, each partition is read in event time whatever the
kills, so the oracle is exact: ``nurture replay`` (:func:`stream.offline.replay.replay_file`,
event-time order) of exactly the produced events.

The chain: worker -> nurture.actions -> ``nurture sender`` (email sends, lead and account ones;
SMTP to an aiosmtpd server kept by this process; ``email.sent`` goes to a side topic so the
worker's input stays the oracle's).

After: the SMTP server's received mail (nothing deduplicated) must equal the oracle's sends:
none lost, none twice, none extra. Raw duplicate actions on the topic are counted per kill.
"""

from __future__ import annotations

import collections
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.config import load_config
from stream.core.model import DAY_MS, HOUR_MS, rfc3339_to_ms
from stream.kafka_local import LocalKafka
from stream.offline.replay import replay_file
from stream.offline.simulate import SimEvent, generate
from stream.settings import Settings
from stream.topics_admin import catalog_from_settings, ensure_topics
from tests.support.backlog import flush_events
from tests.support.rules import quiet_hours_off_file
from tests.support.sender import SenderProcess, SmtpSink, wait_group_caught_up
from tests.support.worker import (
    WorkerProcess,
    consume_all,
    input_lag,
    produce_raw,
)
from topics.catalog import TopicSpec

pytestmark = pytest.mark.chaos

LEADS = int(os.environ.get("NURTURE_CHAOS_LEADS", "30000"))
KILLS = int(os.environ.get("NURTURE_CHAOS_KILLS", "20"))
SEED = int(os.environ.get("NURTURE_CHAOS_SEED", "7"))
DAYS = 30
TOPIC_ORDER = ("product", "email", "crm")  # the order each slice's topics are produced in
TIE_ORDER = {"crm": 0, "product": 1, "email": 2}  # the worker's order for equal event times
IDLE_METRIC = "nurture_runtime_eventtime_idle_timeouts_total"


def event_time(e: SimEvent) -> int:
    try:
        return rfc3339_to_ms(orjson.loads(e.line)["occurred_at"])
    except (ValueError, KeyError, TypeError):
        return e.deliver_at  # malformed: dead-lettered wherever it goes


def build_input(path: Path) -> tuple[list[SimEvent], int]:
    """The run's events in event time (ties in the worker's topic order), written to ``path``
    for the oracle; returns them and how many the simulator delivered late."""
    start = (int(time.time() * 1000) // DAY_MS + 365) * DAY_MS
    events = list(generate(LEADS, DAYS, SEED, start=start))
    at = {id(e): event_time(e) for e in events}
    late = sum(1 for e in events if e.deliver_at > at[id(e)])
    t_end = max(e.deliver_at for e in events) + HOUR_MS
    for flush in flush_events({e.lead_id for e in events}, t_end):
        at[id(flush)] = t_end
        events.append(flush)
    events.sort(key=lambda e: (at[id(e)], TIE_ORDER[e.source]))
    with open(path, "wb") as fh:
        for e in events:
            fh.write(e.line + b"\n")
    return events, late


def slices(events: list[SimEvent], n: int) -> list[list[SimEvent]]:
    size = -(-len(events) // n)
    return [events[i : i + size] for i in range(0, len(events), size)]


def cross_topic_inversions(part: list[SimEvent]) -> int:
    """Leads of a slice with an event on a topic produced later that happened before one of
    theirs on a topic produced earlier (what fetch order would get wrong)."""
    first: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], int] = {}
    for i, e in enumerate(part):  # the slice is in event time: the index orders it
        first.setdefault((e.lead_id, e.source), i)
        last[(e.lead_id, e.source)] = i
    n = 0
    for lead in {e.lead_id for e in part}:
        for k, early in enumerate(TOPIC_ORDER):
            if (lead, early) in last and any(
                (lead, t) in first and first[(lead, t)] < last[(lead, early)]
                for t in TOPIC_ORDER[k + 1 :]
            ):
                n += 1
                break
    return n


def oracle_sends(replay_dir: Path) -> set[str]:
    """The sends the sender delivers (channel email), lead and account ones, from replay."""
    out: set[str] = set()
    for name in ("actions.jsonl", "account_actions.jsonl"):
        path = replay_dir / name
        if path.exists():
            for line in path.read_bytes().splitlines():
                a = orjson.loads(line)
                if a["type"] == "send" and a.get("channel") == "email":
                    out.add(a["action_id"])
    return out


def settled(settings: Settings, worker: WorkerProcess, stall: float = 900.0) -> None:
    """Wait until the worker group committed every input, across a broker restart. A lag that
    does not move for ``stall`` seconds (longer than the merge's 600 s wait bound) is a stalled
    worker: fail with the lag and the worker's log instead of waiting on."""
    from aiokafka.errors import KafkaError

    last, since = -1, time.monotonic()
    while True:
        try:
            lag = input_lag(settings)
        except KafkaError:
            lag = last  # the broker is restarting: ask again
        if lag == 0:
            return
        if lag != last:
            last, since = lag, time.monotonic()
        elif time.monotonic() - since > stall:
            raise AssertionError(
                f"stalled: input lag {lag} unchanged for {stall:.0f} s\n{worker.log_tail()}"
            )
        time.sleep(2.0)  # poll interval of a condition with a deadline


class Faults:
    """Worker A (restarted after each kill), the second worker B, the broker; what was done."""

    def __init__(self, kafka: LocalKafka, settings: Settings, root: Path) -> None:
        self.kafka, self.settings, self.root = kafka, settings, root
        self.rng = random.Random(SEED)
        env = {"NURTURE_MAX_TASK_IDLE_MS": "600000"}  # the merge waits; it must never give up
        self.a = WorkerProcess.from_settings(settings, data_dir=root / "worker-a", env=env)
        self.b = WorkerProcess.from_settings(settings, data_dir=root / "worker-b", env=env)
        self.kills = 0  # SIGKILLs of A while it had input of the slice left
        self.outages = 0  # SIGKILLs of A between slices (idle)
        self.second_killed = False
        self.broker_restarted = False
        self.idle_timeouts = 0.0
        self.log: list[str] = []

    @staticmethod
    def _metric(worker: WorkerProcess, name: str, deadline: float) -> float:
        """A metric of a busy worker: its /metrics may miss the 5 s read timeout on a loaded
        machine, so ask again until ``deadline`` (monotonic)."""
        while True:
            try:
                return worker.metric_sum(name)
            except OSError:  # URLError, timeouts, a refused connection while it starts
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # poll interval of a condition with a deadline

    def _idle_timeouts(self, worker: WorkerProcess) -> None:
        self.idle_timeouts += self._metric(worker, IDLE_METRIC, time.monotonic() + 300)

    def _at_progress(self, worker: WorkerProcess, share: float = 1.0) -> int | None:
        """Wait until ``worker`` handled a random part of the group's input lag (``share``: the
        part of the partitions it holds); returns that count, or None if nothing is left."""
        lag = input_lag(self.settings)
        if lag < 20:
            return None
        target = self.rng.randint(1, max(1, int(lag * share * 0.6)))
        deadline = time.monotonic() + 1800
        while True:
            handled = self._metric(worker, "nurture_events_in_total", deadline) + self._metric(
                worker, "nurture_dead_letters_total", deadline
            )
            if handled >= target:
                return target
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker handled {handled} of {target}:\n{worker.log_tail()}")
            time.sleep(0.1)  # poll interval of a condition with a deadline

    def kill_a(self) -> bool:
        self.a.wait_ready(timeout=600)
        target = self._at_progress(self.a)
        if target is None:
            return False  # the slice is done: no mid-slice kill left to make
        self._idle_timeouts(self.a)
        self.a.kill()
        self.kills += 1
        self.log.append(f"kill {self.kills} of A after {target}+ inputs")
        self.a.start()
        return True

    def kill_b(self) -> None:
        self.b.start()
        self.b.wait_ready(timeout=600)
        target = self._at_progress(self.b, share=0.5)
        self._idle_timeouts(self.b)
        self.b.kill()
        self.second_killed = True
        self.log.append(f"SIGKILL of worker B (of two) after {target}+ inputs")

    def restart_broker(self) -> None:
        self.a.wait_ready(timeout=600)
        self._at_progress(self.a)
        began = time.monotonic()
        self.kafka.restart()
        self.broker_restarted = True
        self.log.append(f"broker restarted in {time.monotonic() - began:.1f} s")

    def outage(self) -> None:
        if self.a.running():
            self._idle_timeouts(self.a)
            self.a.kill()
            self.outages += 1


def test_chaos_delivers_each_oracle_send_exactly_once(tmp_path_factory: Any) -> None:
    root = tmp_path_factory.mktemp("chaos")
    t0 = time.monotonic()
    events, late = build_input(root / "events.jsonl")
    phases = max(4, -(-KILLS // 2) + 2)  # two kills of A per slice, B and the broker apart
    parts = slices(events, phases)
    inversions = sum(cross_topic_inversions(p) for p in parts)
    # quiet hours off (oracle and worker): the events are dated a year ahead, so a held send
    # would wait a year in the sender
    rules = quiet_hours_off_file(root)
    stats = replay_file(root / "events.jsonl", root / "replay", load_config(rules), html=False)
    oracle = oracle_sends(root / "replay")
    print(
        f"\n{len(events)} events of {LEADS} leads ({late} delivered late by the simulator, "
        f"{stats.dead_letters} malformed), {phases} slices, {inversions} lead-slices with "
        f"cross-topic inversions; replay: {stats.actions} actions, {len(oracle)} sends, "
        f"{stats.timers_fired} timers fired"
    )
    assert inversions > 0 and stats.timers_fired > 0 and oracle

    run = uuid.uuid4().hex[:6]
    with LocalKafka(data_dir=root / "kafka", heap="768m") as kafka:
        settings = Settings(
            app_id=f"chaos-{run}",
            kafka_bootstrap_servers=kafka.bootstrap,
            data_dir=root / "data",
            rules_file=rules,
        )
        side = f"chaos-email-sent-{run}"
        ensure_topics(
            kafka.bootstrap,
            [
                *catalog_from_settings(settings),
                TopicSpec(side, "lead_id", "sender", "test", "test", 4, {}),
            ],
        )
        topics = {
            "product": settings.topic_product_events,
            "email": settings.topic_email_events,
            "crm": settings.topic_crm_events,
        }
        b_phase, broker_phase = phases // 2, (3 * phases) // 4
        with SmtpSink() as smtp:
            sender = SenderProcess.from_settings(
                settings,
                data_dir=root / "sender",
                env={
                    "NURTURE_SENDER_TRANSPORT": "smtp",
                    "NURTURE_SENDER_SMTP_HOST": "127.0.0.1",
                    "NURTURE_SENDER_SMTP_PORT": str(smtp.port),
                    "NURTURE_TOPIC_EMAIL_EVENTS": side,
                },
            )
            faults = Faults(kafka, settings, root)
            try:
                sender.start()
                sender.wait_ready()
                for k, part in enumerate(parts):
                    for source in TOPIC_ORDER:  # no worker runs: one topic after the other
                        produce_raw(
                            kafka.bootstrap,
                            [
                                (topics[e.source], e.lead_id.encode(), e.line)
                                for e in part
                                if e.source == source
                            ],
                        )
                    faults.a.start()
                    if k == b_phase:
                        faults.kill_b()
                    elif k == broker_phase:
                        faults.restart_broker()
                    while faults.kills < min(KILLS, 2 * (k + 1)) and faults.kill_a():
                        pass
                    settled(settings, faults.a)
                    faults.a.wait_ready(timeout=600)
                    faults.outage()
                    print(f"slice {k + 1}/{phases} done at {time.monotonic() - t0:.0f} s")
                wait_group_caught_up(
                    kafka.bootstrap, f"{settings.app_id}-sender", settings.topic_actions, 3600
                )
                smtp.wait_for(len(oracle), timeout=600)
            finally:
                faults.a.stop()
                faults.b.stop()
                sender.stop()
            received = smtp.counts()
        raw = consume_all(kafka.bootstrap, settings.topic_actions, idle=5, timeout=600)
    wall = time.monotonic() - t0
    with open(root / "actions-topic.jsonl", "wb") as fh:  # kept for a diagnosis
        for r in raw:
            fh.write(orjson.dumps(r["value"]) + b"\n")

    ids = [r["value"]["action_id"] for r in raw]
    raw_dups = len(ids) - len(set(ids))
    lost = oracle - set(received)
    extra = set(received) - oracle
    twice = {k: n for k, n in received.items() if n > 1}
    kills = faults.kills + 1  # and worker B
    print(
        f"events {len(events)}, SIGKILLs of A mid-slice {faults.kills} (+{faults.outages} idle "
        f"between slices, +1 of B of two workers, +1 broker restart), oracle sends "
        f"{len(oracle)}, mails received {sum(received.values())}, lost {len(lost)}, delivered "
        f"twice {len(twice)}, extra {len(extra)}, raw duplicate actions {raw_dups} "
        f"({raw_dups / kills:.0f} per mid-slice kill), merge give-ups {faults.idle_timeouts:.0f}, "
        f"wall {wall:.0f} s; {'; '.join(faults.log)}"
    )
    counts = collections.Counter(r["value"]["type"] for r in raw)
    print(f"actions on the topic by type: {dict(counts)}")
    assert faults.kills == KILLS and faults.second_killed and faults.broker_restarted
    assert faults.idle_timeouts == 0, "the merge gave up waiting: the order is not event time"
    assert not lost and not twice and not extra, (
        f"lost {sorted(lost)[:5]}, twice {list(twice.items())[:5]}, extra {sorted(extra)[:5]}"
    )
