"""Micro-benchmark of the pure core (not a timed test): ``make bench``.

Prints events/s of ``step`` on one core over a generated multi-lead stream, and memory per
100k leads (live Python objects and encoded bytes for the state store). Sizes can be changed
with NURTURE_BENCH_LEADS / NURTURE_BENCH_EVENTS_PER_LEAD / NURTURE_BENCH_MEMORY_LEADS.
"""

from __future__ import annotations

import gc
import heapq
import os
import resource
import time
import tracemalloc

import pytest

from stream.core.config import RulesConfig, load_config
from stream.core.engine import step
from stream.core.model import Event, TimerFired
from stream.core.state import LeadState, decode_state, encode_state
from stream.core.synth import drive, stream
from stream.offline.replay import REPLAY_GC_THRESHOLD

pytestmark = pytest.mark.bench

LEADS = int(os.environ.get("NURTURE_BENCH_LEADS", "10000"))
EVENTS_PER_LEAD = int(os.environ.get("NURTURE_BENCH_EVENTS_PER_LEAD", "20"))
MEMORY_LEADS = int(os.environ.get("NURTURE_BENCH_MEMORY_LEADS", "100000"))
REPEATS = int(os.environ.get("NURTURE_BENCH_REPEATS", "3"))


def test_bench_step_throughput_one_core() -> None:
    config = load_config()
    events = list(stream(11, LEADS, EVENTS_PER_LEAD))

    # 1) replay-style: events plus timers fired from event time (generator excluded)
    gc.collect()
    states: dict[str, LeadState] = {}
    t0 = time.perf_counter()
    n_steps = sum(1 for _ in drive(iter(events), config, states))
    replay_s = time.perf_counter() - t0

    # 2) step alone over the recorded inputs (best of REPEATS; the box is shared, so CPU time
    #    is reported next to wall time). "gc frozen": the pre-built input list is moved out of
    #    the collector's reach first (gc.freeze), as a streaming worker holds no such list.
    #    "gc as replay": frozen, plus the young-generation threshold replay runs with.
    inputs = _inputs_of(events, config)
    best: dict[str, tuple[float, float]] = {}
    threshold = gc.get_threshold()
    for label in ("gc on", "gc frozen", "gc as replay"):
        for _ in range(REPEATS):
            states2: dict[str, LeadState] = {}
            gc.collect()
            if label != "gc on":
                gc.freeze()
            if label == "gc as replay":
                gc.set_threshold(*REPLAY_GC_THRESHOLD)
            t0, c0 = time.perf_counter(), time.process_time()
            for inp in inputs:
                lead = inp.lead_id
                states2[lead] = step(states2.get(lead), inp, config).state
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            gc.set_threshold(*threshold)
            gc.unfreeze()
            assert states2 == states  # same inputs, same result: the loop did the real work
            prev = best.get(label)
            best[label] = (min(wall, prev[0]), min(cpu, prev[1])) if prev else (wall, cpu)

    n_timers = sum(1 for i in inputs if isinstance(i, TimerFired))
    lines = [f"{len(events):,} events + {n_timers:,} timer firings, {LEADS:,} leads, one core"]
    for label, (wall, cpu) in best.items():
        lines.append(
            f"step only ({label}): {len(events) / wall:,.0f} events/s wall, "
            f"{len(events) / cpu:,.0f} events per CPU-second, "
            f"{1e6 * cpu / len(inputs):.1f} us/input"
        )
    lines.append(
        f"replay driver (step + timer heap, gc on): {len(events) / replay_s:,.0f} events/s wall"
        f" ({n_steps:,} effective steps)"
    )
    print("\n" + "\n".join("[bench core] " + ln for ln in lines))


def _inputs_of(events: list[Event], config: RulesConfig) -> list[Event | TimerFired]:
    """The exact input sequence ``drive`` feeds to ``step`` (events and due timers)."""
    out: list[Event | TimerFired] = []
    states: dict[str, LeadState] = {}
    heap: list[tuple[int, str, str]] = []
    for e in events:
        while heap and heap[0][0] <= e.at:
            due, lead, tid = heapq.heappop(heap)
            before = states.get(lead)
            tf = TimerFired(lead, tid, due)
            r = step(before, tf, config)
            if before is not None and r.state is not before:
                out.append(tf)
                states[lead] = r.state
                for t in set(r.timers) - set(before.timers):
                    heapq.heappush(heap, (t.due, lead, t.timer_id))
        before = states.get(e.lead_id)
        r = step(before, e, config)
        out.append(e)
        states[e.lead_id] = r.state
        old = set(before.timers) if before is not None else set()
        for t in set(r.timers) - old:
            heapq.heappush(heap, (t.due, e.lead_id, t.timer_id))
    return out


def test_bench_memory_per_100k_leads() -> None:
    config = load_config()
    states: dict[str, LeadState] = {}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in drive(stream(12, MEMORY_LEADS, 6), config, states):
        pass
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    encoded = [encode_state(s) for s in states.values()]
    scale = 100_000 / len(states)
    enc_mb = sum(map(len, encoded)) * scale / 1e6

    del states
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    live = {s.lead_id: s for s in map(decode_state, encoded)}
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    live_mb = (current - base) * scale / 1e6
    assert len(live) == MEMORY_LEADS
    print(
        f"\n[bench core] memory per 100k leads (6 events each): "
        f"live states {live_mb:,.1f} MB, encoded {enc_mb:,.1f} MB "
        f"({sum(map(len, encoded)) / len(encoded):,.0f} B/lead); "
        f"process peak RSS grew {(rss1 - rss0) * scale / 1024:,.0f} MB while replaying "
        f"(includes the generated events)"
    )
