"""Who used the machine's CPU during a measured window: the whole machine (``/proc/stat``), the
Kafka broker (the JVMs running ``kafka.Kafka``), the bench process itself (the load generator)
and the worker. On 2 cores the broker and the load generator share the CPU with the worker, so a
latency figure means little without these.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far; 0 if it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _broker_pids() -> list[int]:
    """The JVMs whose command line runs a Kafka broker (``kafka.Kafka``)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"java" in cmdline and b"kafka.Kafka" in cmdline:
            pids.append(int(entry.name))
    return pids


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all but idle and iowait), all cores."""
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in cpu]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / _TICK


@dataclass
class CpuSnapshot:
    worker_pid: int
    wall: float = field(default_factory=time.monotonic)
    machine: float = field(default_factory=_machine_busy)
    broker: float = 0.0
    bench: float = field(default_factory=time.process_time)
    worker: float = 0.0

    def __post_init__(self) -> None:
        self.broker = sum(process_cpu(pid) for pid in _broker_pids())
        self.worker = process_cpu(self.worker_pid)


def cpu_share_line(before: CpuSnapshot, after: CpuSnapshot) -> str:
    """One line: each part's CPU over the window as a share of one core, and the machine's
    busy share of all its cores."""
    wall = max(after.wall - before.wall, 1e-9)
    cores = os.cpu_count() or 1

    def cores_used(a: float, b: float) -> str:
        return f"{(b - a) / wall:.2f}"

    return (
        f"  CPU in the window ({wall:.0f} s, in cores): "
        f"worker {cores_used(before.worker, after.worker)}, "
        f"broker {cores_used(before.broker, after.broker)}, "
        f"bench producer {cores_used(before.bench, after.bench)}; "
        f"machine {(after.machine - before.machine) / wall:.2f} of {cores} "
        f"({100 * (after.machine - before.machine) / wall / cores:.0f}% busy)"
    )
