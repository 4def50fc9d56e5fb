"""Stream worker throughput against a bare Faust passthrough agent, same broker, same input.

Run with ``make bench`` (``pytest tests/bench -m bench -s``). Prints figures; asserts only that
everything was processed. Method: the input (trial and MQL journeys, future event times so no
timer fires) is produced up front; a process is started and timed from its first message to
its last (the worker through its /metrics, the passthrough by itself).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stream.core.model import DAY_MS
from tests.support.leads import trial_leads
from tests.support.worker import REPO, WorkerProcess, consume_all, free_port, produce_events

if TYPE_CHECKING:
    from stream.settings import Settings

pytestmark = pytest.mark.bench

EVENTS_TARGET = int(os.environ.get("NURTURE_BENCH_EVENTS", "40000"))

PASSTHROUGH = """
import os, sys, time, faust
bootstrap, app_id, out, datadir, port, total, *topics = sys.argv[1:]
total = int(total)
# the same consumer/producer tuning as stream/app.py, so only the per-event work differs
app = faust.App(app_id, broker="kafka://" + bootstrap, key_serializer="raw",
                value_serializer="raw", datadir=datadir, web_port=int(port),
                web_bind="127.0.0.1", consumer_auto_offset_reset="earliest", autodiscover=False,
                producer_linger=0.005, broker_max_poll_records=2000,
                consumer_max_fetch_size=4 * 1024 * 1024, stream_buffer_maxsize=8192)
channel = app.topic(*topics, key_serializer="raw", value_serializer="raw")
seen = 0
t0 = 0.0

@app.agent(channel, concurrency=1)
async def passthrough(stream):
    global seen, t0
    async for event in stream.events():
        if seen == 0:
            t0 = time.perf_counter()
        seen += 1
        await app.producer.send(out, event.message.key, event.message.value, None, None, None)
        if seen == total:
            await app.producer.flush()
            sys.stderr.write(f"RESULT {seen} {time.perf_counter() - t0}\\n")
            sys.stderr.flush()
            os._exit(0)

faust.Worker(app, loglevel="WARNING").execute_from_commandline()
"""


def _input(n_target: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    future = (int(time.time() * 1000) // DAY_MS + 400) * DAY_MS
    leads = max(1, n_target // 3)
    return trial_leads(leads, future, DAY_MS, rng, prefix="bench")[:n_target]


def _time_worker(settings: Settings, total: int) -> tuple[float, dict[str, float]]:
    with WorkerProcess.from_settings(settings) as worker:
        worker.wait_ready(timeout=180)
        worker.wait_processed(1, timeout=120)
        t0 = time.perf_counter()
        worker.wait_processed(total, timeout=900)
        elapsed = time.perf_counter() - t0
        extra = {
            "rss_mb": _rss_mb(worker.pid),
        }
    return elapsed, extra


def _rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _time_passthrough(settings: Settings, total: int, tmp: Path) -> float:
    from stream.topics_admin import ensure_topics
    from topics.catalog import TopicSpec

    out = settings.topic_actions + "-passthrough"
    ensure_topics(
        settings.kafka_bootstrap_servers,
        [TopicSpec(out, "k", "internal", "bench", "bench", settings.topic_partitions)],
    )
    script = tmp / "passthrough.py"
    script.write_text(PASSTHROUGH)
    log = open(tmp / "passthrough.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            settings.kafka_bootstrap_servers,
            settings.app_id + "-passthrough",
            out,
            str(tmp / "pt-data"),
            str(free_port()),
            str(total),
            *settings.input_topics,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    lines = [x for x in (tmp / "passthrough.log").read_text().splitlines() if "RESULT" in x]
    assert lines, (tmp / "passthrough.log").read_text()[-3000:]
    found = re.search(r"RESULT (\d+) ([0-9.]+)", lines[-1])
    assert found, lines[-1]
    seen, elapsed = found.groups()
    assert int(seen) == total
    got = consume_all(
        settings.kafka_bootstrap_servers, out, timeout=60, isolation="read_uncommitted"
    )
    assert len(got) >= total
    return float(elapsed)


def test_bench_worker_vs_passthrough(kafka_settings: Settings, tmp_path: Path) -> None:
    events = _input(EVENTS_TARGET)
    produce_events(kafka_settings, events)
    total = len(events)
    worker_s, extra = _time_worker(kafka_settings, total)
    passthrough_s = _time_passthrough(kafka_settings, total, tmp_path)
    worker_rate = total / worker_s
    pt_rate = total / passthrough_s
    print(
        f"\nbench: {total} events, {kafka_settings.topic_partitions} partitions, "
        f"{os.cpu_count()} cpus, load avg {os.getloadavg()[0]:.1f}\n"
        f"  worker (RocksDB state, at-least-once, outbox): {worker_rate:,.0f} events/s "
        f"({worker_s:.1f} s, RSS {extra['rss_mb']:.0f} MB)\n"
        f"  bare Faust passthrough agent:                 {pt_rate:,.0f} events/s "
        f"({passthrough_s:.1f} s)\n"
        f"  ratio worker/passthrough: {worker_rate / pt_rate:.0%}"
    )
