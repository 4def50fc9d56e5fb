"""Events per CPU second of the worker's processing path without Kafka (``make bench``).

:mod:`tests.bench.cpu_driver` runs the worker bench's simulated input (``NURTURE_BENCH_LEADS``
leads, default 16,000, over 30 days) through parse, the lead processor, a RocksDB store per
partition, the batch metrics and the account path, and times each stage in CPU seconds of
this process (``time.process_time``): a figure that a busy machine changes little, unlike the
worker bench's wall-clock rates. Prints the stages, the mean lead record size and ``uptime``.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.bench.cpu_driver import drive

pytestmark = pytest.mark.bench

LEADS = int(os.environ.get("NURTURE_BENCH_LEADS", "16000"))
BATCH = int(os.environ.get("NURTURE_BENCH_BATCH", "1000"))


def test_bench_worker_cpu_per_event() -> None:
    fig = drive(LEADS, BATCH, rocksdb=True)
    print()
    for line in fig.lines():
        print(line)
    print(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    assert fig.events > 0.99 * fig.messages  # 0.2% of the simulated lines are malformed
    assert fig.outputs > 0 and fig.account_events > 0  # both paths ran
