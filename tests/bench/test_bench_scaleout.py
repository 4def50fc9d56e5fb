"""Two workers against one: the throughput of one consumer group of ``nurture worker``
processes over the same backlog (make bench-scaleout; part of make bench).

Method (one broker, one input, one run; the figure that counts is the ratio):

1. Input: the worker bench's simulated traffic (:func:`tests.bench.test_bench_worker.simulated`:
   ``NURTURE_BENCH_LEADS`` leads, default 16,000, over the 30 days before today, >= 100,000
   messages across the three input topics).
2. For N = 1, then N = 2: fresh input and output topics of ``NURTURE_BENCH_PARTITIONS``
   partitions (default 12) and a fresh consumer group. N worker processes (each with its own
   RocksDB folder) start on the empty topics; once the group is stable with N members and
   every worker answers ``/readyz`` (recovery done, no rebalance running), the whole input is
   produced, and the group is timed from the first input message any worker reports handled
   to the last (the sum of ``nurture_events_in_total`` + dead letters on their ``/metrics``).
   Starting the workers first keeps the join rebalance out of the timed window (a second
   worker joining a running group would revoke partitions mid-backlog).

The machine has 2 cores, shared with the broker and the producer: two workers cannot get twice
the CPU of one, so the ratio measures how much of the idle CPU one worker leaves (waiting on
the broker) a second process uses, not a scale-out factor. The CPU seconds the worker
processes used in the timed window (/proc) are printed next to each figure: events per CPU
second that stay about the same with two processes mean splitting the partitions costs little
CPU; whether throughput then doubles needs a free core per worker, which this machine does not
have. Prints the figures and ``uptime``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stream.core.model import DAY_MS
from tests.bench.machine import process_cpu
from tests.bench.test_bench_worker import LEADS, MIN_EVENTS, Row, produce, simulated
from tests.support.worker import WorkerProcess, run

if TYPE_CHECKING:
    from stream.settings import Settings

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

Record = tuple[str, bytes, bytes]


def bench_settings(bootstrap: str, tmp: Path, run_id: str) -> Settings:
    """Settings of one run: topics, consumer group and data folder of its own."""
    from stream.settings import Settings
    from stream.topics_admin import catalog_from_settings, ensure_topics

    fields: dict[str, Any] = {
        "app_id": f"nurture-{run_id}",
        "kafka_bootstrap_servers": bootstrap,
        "data_dir": tmp / run_id / "data",
        "log_level": "warning",
        **{
            name: f"{default}.{run_id}"
            for name, default in (
                ("topic_product_events", "nurture.product-events"),
                ("topic_email_events", "nurture.email-events"),
                ("topic_crm_events", "nurture.crm-events"),
                ("topic_actions", "nurture.actions"),
                ("topic_transitions", "nurture.transitions"),
                ("topic_dead_letter", "nurture.dead-letter"),
            )
        },
    }
    if os.environ.get("NURTURE_BENCH_PARTITIONS"):
        fields["topic_partitions"] = int(os.environ["NURTURE_BENCH_PARTITIONS"])
    settings = Settings(**fields)
    ensure_topics(bootstrap, catalog_from_settings(settings))
    return settings


async def _group(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        described = response.to_object()["groups"][0]
        return str(described["state"]), len(described["members"])
    finally:
        await admin.close()


def wait_group_ready(settings: Settings, workers: list[WorkerProcess], timeout: float) -> None:
    """Until the group is stable with one member per worker and every worker is ready."""
    deadline = time.monotonic() + timeout
    seen: tuple[str, int] = ("", 0)
    while time.monotonic() < deadline:
        for w in workers:
            w.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
        seen = run(_group(settings.kafka_bootstrap_servers, settings.app_id))
        if seen == ("Stable", len(workers)) and all(w.get("/readyz")[0] == 200 for w in workers):
            return
        time.sleep(0.5)  # poll interval of a condition with a deadline
    raise TimeoutError(f"group {settings.app_id} is {seen}, want Stable with {len(workers)}")


def cpu_seconds(workers: list[WorkerProcess]) -> float:
    """User + system CPU seconds the worker processes have used so far (/proc)."""
    return sum(process_cpu(w.pid) for w in workers if w.pid is not None)


def _metric(worker: WorkerProcess, name: str) -> float:
    """A metric of a worker, NaN if it is too busy to answer."""
    try:
        return worker.metric_sum(name)
    except (OSError, RuntimeError, ValueError):
        return float("nan")


def handled(workers: list[WorkerProcess], last: dict[int, int]) -> int:
    """Messages the workers handled; a worker too busy to answer /metrics within its 5 s
    timeout (seen at load ~15) counts with its last answer (``last``, by index)."""
    for i, w in enumerate(workers):
        try:
            last[i] = w.processed()
        except (OSError, RuntimeError, ValueError):
            last.setdefault(i, 0)
    return sum(last.values())


def time_group(
    settings: Settings, records: list[Record], names: dict[str, str], n: int, timeout: float
) -> Row:
    """Start ``n`` workers, wait for the group, produce ``records`` (their topics renamed by
    ``names``) and time the group from its first handled message to its last."""
    workers = [
        WorkerProcess.from_settings(settings, data_dir=Path(settings.data_dir) / f"w{i}")
        for i in range(n)
    ]
    try:
        for w in workers:
            w.start()
        wait_group_ready(settings, workers, timeout=240)
        produce(settings, [(names[t], k, v) for t, k, v in records])
        total = len(records)
        deadline = time.monotonic() + timeout
        last: dict[int, int] = {}
        while handled(workers, last) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("no worker handled a message")
            time.sleep(0.05)  # poll interval of a condition with a deadline
        t0, cpu0 = time.perf_counter(), cpu_seconds(workers)
        while (done := handled(workers, last)) < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the group handled {done} of {total}")
            time.sleep(0.5)  # /metrics costs the workers CPU: poll twice a second
        seconds, cpu = time.perf_counter() - t0, cpu_seconds(workers) - cpu0
        shares = ", ".join(f"{n:,}" for n in last.values())
        gave_up = sum(_metric(w, "nurture_runtime_eventtime_idle_timeouts_total") for w in workers)
        note = (
            f"{cpu:.0f} worker CPU s ({total / cpu:,.0f} events per CPU s); handled {shares}; "
            f"merge gave up waiting {gave_up:.0f} times"
        )
    finally:
        for w in workers:
            w.stop()
    return Row(f"{n} worker process{'es' if n > 1 else ''} in one group", total, seconds, note)


def test_bench_two_workers_against_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    stamp = int(time.time())
    one = bench_settings(kafka_bootstrap, tmp_path, f"scale1-{stamp}")
    two = bench_settings(kafka_bootstrap, tmp_path, f"scale2-{stamp}")
    start = (int(time.time() * 1000) // DAY_MS - 31) * DAY_MS
    records = simulated(one, LEADS, seed=7, start=start)  # on the first run's topics
    assert len(records) >= MIN_EVENTS, f"{len(records)} messages; raise NURTURE_BENCH_LEADS"
    same = {t: t for t in one.input_topics}
    renamed = dict(zip(one.input_topics, two.input_topics, strict=True))

    single = time_group(one, records, same, 1, timeout=1800)
    print(f"\n  {single.name}: {single.rate:,.0f} events/s ({single.note})")  # if the next fails
    pair = time_group(two, records, renamed, 2, timeout=1800)

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(
        "\n".join(
            [
                "",
                f"scale-out bench: {len(records):,} simulated messages ({LEADS:,} leads), "
                f"{one.topic_partitions} partitions, {os.cpu_count()} cpus shared with the "
                f"broker and the producer",
                f"uptime: {load}",
                f"  {'consumer group':<36} {'events/s':>10} {'seconds':>8}  note",
                *(
                    f"  {r.name:<36} {r.rate:>10,.0f} {r.seconds:>8.1f}  {r.note}"
                    for r in (single, pair)
                ),
                f"  two / one: {pair.rate / single.rate:.2f}x   (2 cores for broker, producer "
                f"and workers: not a scale-out factor, see the module docstring)",
            ]
        )
    )
