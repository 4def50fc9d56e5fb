"""``make chaos``: the whole chain under faults, at scale, against the oracle (on demand only).

Input: ``NURTURE_CHAOS_LEADS`` (default 30,000: ~200k events) simulated leads over 30 days with
the simulator's late and duplicate deliveries, over the three input topics, dated a year ahead
(see tests/integration/test_stream_replay_equivalence.py for why: the worker's clock for an
event is then the event's own time, so timers fall due on the lead's events during the run and
the outputs do not depend on wall-clock timing), plus one trailing ``email.opened`` per lead
that fires every timer left. Leads are fed in rounds: round k holds each lead's k-th run of
same-topic messages, so Kafka keeps each lead's order although its events use three topics;
inside a round the leads interleave across topics. A round starts once the worker group has
committed every earlier input.

Faults while it runs: ``NURTURE_CHAOS_KILLS`` (default 20) SIGKILLs of the worker at random
moments (restarted each time), a second worker started and then SIGKILLed (not a graceful
leave), and a broker restart on the same data directory.

The chain: worker -> nurture.actions -> ``nurture sender`` (SMTP to an aiosmtpd server kept by
this process, ``email.sent`` to a side topic so the worker's input stays the oracle's input).

After: the SMTP server's received mail (nothing deduplicated) must equal the oracle's sends:
none lost, none twice, none extra. The oracle is the core run per lead in arrival order
(``per_lead_clock_outputs``, the worker's time model); replay's (global-watermark) sends are
printed beside it (late events may legitimately differ between the two). Raw duplicate actions
on the topic are counted and printed per kill.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.config import load_config
from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339
from stream.kafka_local import LocalKafka
from stream.offline.replay import replay_file
from stream.offline.simulate import SimEvent, generate
from stream.settings import Settings
from stream.topics_admin import catalog_from_settings, ensure_topics
from tests.integration.test_stream_replay_equivalence import per_lead_clock_outputs
from tests.support.sender import SenderProcess, SmtpSink, wait_group_caught_up
from tests.support.worker import WorkerProcess, consume_all, produce_raw, wait_consumed
from topics.catalog import TopicSpec

pytestmark = pytest.mark.chaos

LEADS = int(os.environ.get("NURTURE_CHAOS_LEADS", "30000"))
KILLS = int(os.environ.get("NURTURE_CHAOS_KILLS", "20"))
SEED = int(os.environ.get("NURTURE_CHAOS_SEED", "7"))
DAYS = 30
CHUNK = 2000


def build_input(path: Path) -> list[SimEvent]:
    start = (int(time.time() * 1000) // DAY_MS + 365) * DAY_MS
    events = list(generate(LEADS, DAYS, SEED, start=start))
    t_end = max(e.deliver_at for e in events) + HOUR_MS
    for n, lead in enumerate(sorted({e.lead_id for e in events})):
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


def lead_rounds(events: list[SimEvent]) -> list[list[SimEvent]]:
    """Round k: every lead's k-th run of consecutive same-topic messages (arrival order kept
    within each lead, leads interleaved as they arrived)."""
    runs: dict[str, int] = {}
    last: dict[str, str] = {}
    out: list[list[SimEvent]] = []
    for e in events:
        if last.get(e.lead_id) != e.source:
            runs[e.lead_id] = runs.get(e.lead_id, -1) + 1
            last[e.lead_id] = e.source
        k = runs[e.lead_id]
        while len(out) <= k:
            out.append([])
        out[k].append(e)
    return out


def settled(settings: Settings, timeout: float = 3600.0) -> None:
    """Wait until the worker group committed every input, across a broker restart."""
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_consumed(settings, timeout=max(1.0, deadline - time.monotonic()))
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # the broker is restarting: ask again


class Chaos(threading.Thread):
    """Kills worker A at random moments (and restarts it); one step kills a second worker B
    instead, one restarts the broker."""

    def __init__(self, kafka: LocalKafka, settings: Settings, root: Path) -> None:
        super().__init__(daemon=True, name="chaos")
        self.kafka, self.settings, self.root = kafka, settings, root
        self.rng = random.Random(SEED)
        self.worker = WorkerProcess.from_settings(settings, data_dir=root / "worker-a")
        self.kills = 0
        self.second_killed = False
        self.broker_restarted = False
        self.done = threading.Event()
        self.broker_lock = threading.Lock()  # no producing while the broker restarts
        self.error: BaseException | None = None
        self.log: list[str] = []

    def run(self) -> None:
        try:
            step = 0
            while self.kills < KILLS and not self.done.is_set():
                self.worker.wait_ready(timeout=300)
                time.sleep(self.rng.uniform(1.0, 6.0))  # a random point of its processing
                if step == KILLS // 2 and not self.second_killed:
                    other = WorkerProcess.from_settings(self.settings, data_dir=self.root / "wb")
                    other.start()
                    other.wait_ready(timeout=300)
                    time.sleep(self.rng.uniform(3.0, 8.0))
                    other.kill()
                    self.second_killed = True
                    self.log.append(f"{time.strftime('%X')} SIGKILL of worker B (of two)")
                elif step == (3 * KILLS) // 4 and not self.broker_restarted:
                    began = time.monotonic()
                    with self.broker_lock:
                        self.kafka.restart()
                    self.broker_restarted = True
                    self.log.append(f"broker restarted in {time.monotonic() - began:.1f} s")
                else:
                    self.worker.kill()
                    self.kills += 1
                    self.worker.start()
                step += 1
        except BaseException as exc:
            self.error = exc


def test_chaos_delivers_each_oracle_send_exactly_once(tmp_path_factory: Any) -> None:
    root = tmp_path_factory.mktemp("chaos")
    t0 = time.monotonic()
    events = build_input(root / "events.jsonl")
    batches = lead_rounds(events)
    _model_t, model_a = per_lead_clock_outputs(root / "events.jsonl")
    oracle = {a["action_id"] for a in model_a if a["type"] == "send"}
    stats = replay_file(root / "events.jsonl", root / "replay", load_config(None), html=False)
    replayed = {
        a["action_id"]
        for a in map(orjson.loads, (root / "replay" / "actions.jsonl").read_bytes().splitlines())
        if a["type"] == "send"
    }
    print(
        f"\n{len(events)} events ({stats.late_events} late), {len(batches)} rounds, "
        f"{len(oracle)} oracle sends; replay (global watermark) differs on "
        f"{len(oracle ^ replayed)} sends"
    )

    run = uuid.uuid4().hex[:6]
    with LocalKafka(data_dir=root / "kafka", heap="768m") as kafka:
        settings = Settings(
            app_id=f"chaos-{run}",
            kafka_bootstrap_servers=kafka.bootstrap,
            data_dir=root / "data",
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
            chaos = Chaos(kafka, settings, root)
            try:
                sender.start()
                chaos.worker.start()
                chaos.worker.wait_ready(timeout=300)
                sender.wait_ready()
                chaos.start()
                # pace production so that the kills fall while input is being processed
                rate = max(300.0, len(events) / max(1, KILLS * 15))
                for batch in batches:
                    for i in range(0, len(batch), CHUNK):
                        chunk = batch[i : i + CHUNK]
                        began = time.monotonic()
                        with chaos.broker_lock:
                            produce_raw(
                                kafka.bootstrap,
                                [(topics[e.source], e.lead_id.encode(), e.line) for e in chunk],
                            )
                        time.sleep(max(0.0, len(chunk) / rate - (time.monotonic() - began)))
                    settled(settings)
                chaos.join(timeout=1800)
                assert chaos.error is None, repr(chaos.error)
                assert chaos.kills == KILLS and chaos.second_killed and chaos.broker_restarted
                chaos.worker.wait_ready(timeout=300)
                settled(settings)
                wait_group_caught_up(
                    kafka.bootstrap, f"{settings.app_id}-sender", settings.topic_actions, 3600
                )
                smtp.wait_for(len(oracle), timeout=600)
            finally:
                chaos.done.set()
                chaos.worker.stop()
                sender.stop()
            received = smtp.counts()
        raw = consume_all(kafka.bootstrap, settings.topic_actions, idle=5, timeout=600)
    wall = time.monotonic() - t0

    ids = [r["value"]["action_id"] for r in raw]
    raw_dups = len(ids) - len(set(ids))
    lost = oracle - set(received)
    extra = set(received) - oracle
    twice = {k: n for k, n in received.items() if n > 1}
    print(
        f"events {len(events)}, worker kills {chaos.kills} (+1 of two workers, +1 broker "
        f"restart), oracle sends {len(oracle)}, mails received {sum(received.values())}, "
        f"lost {len(lost)}, delivered twice {len(twice)}, extra {len(extra)}, "
        f"raw duplicate actions {raw_dups} ({raw_dups / max(1, chaos.kills + 1):.0f} per kill), "
        f"wall {wall:.0f} s; {'; '.join(chaos.log)}"
    )
    counts = collections.Counter(r["value"]["type"] for r in raw)
    print(f"actions on the topic by type: {dict(counts)}")
    assert not lost and not twice and not extra
