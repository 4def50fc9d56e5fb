"""Per-batch stage times of the worker loop, for the latency breakdown (debugging only).

With ``NURTURE_TRACE_LATENCY_FILE`` set, the lead runner writes one JSON line per batch:
the partition, wall-clock times (ms) of the batch's stages and, per input, its Kafka
timestamp and when the consumer delivered it to the runner::

    {"runner": "LeadRunner", "p": 3, "round": 1733012345678.1, "take": ...,
     "processed": ..., "queued": ..., "acked": ..., "actions": 2,
     "inputs": [[kafka_ts, delivered], ...]}

``round`` is when the loop's round over the owned partitions began, ``take`` when the
partition's merge was taken, ``processed`` after stepping and the state write, ``queued``
when every output was in the producer's accumulator (an output's Kafka timestamp is set
there), ``acked`` when the broker acknowledged the last of them; ``held`` is how long (ms)
the event-time merge had held the partition before this take (0: it did not). Garbage
collections of 1 ms and more, and every older-generation one, are lines of their own:
``{"gc": generation, "at": ..., "ms": ...}``. Off (the default) it costs one attribute test
per batch. ``tests/bench/latency.py`` summarises the file.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import IO, Any

import orjson


def now() -> float:
    return time.time() * 1000.0


class BatchTrace:
    """The stage times of one batch, written when its outputs are acknowledged."""

    __slots__ = (
        "acked",
        "actions",
        "held",
        "inputs",
        "out",
        "p",
        "processed",
        "queued",
        "round",
        "runner",
        "take",
    )

    def __init__(self, out: IO[bytes], runner: str, p: int, round_began: float) -> None:
        self.out = out
        self.runner = runner
        self.p = p
        self.round = round_began
        self.take = now()
        self.processed = 0.0
        self.queued = 0.0
        self.acked = 0.0
        self.actions = 0
        self.held = 0.0
        self.inputs: list[tuple[int, float]] = []

    def on_sent(self, futures: list[Any]) -> None:
        """Write the line once every future of the batch is done."""
        left = len(futures)
        if not left:
            self.acked = self.queued
            self.write()
            return
        pending = [left]

        def done(_: Any) -> None:
            pending[0] -= 1
            if pending[0] == 0:
                self.acked = now()
                self.write()

        for fut in futures:
            fut.add_done_callback(done)

    def write(self) -> None:
        doc = {
            "runner": self.runner,
            "p": self.p,
            "round": self.round,
            "take": self.take,
            "processed": self.processed,
            "queued": self.queued,
            "acked": self.acked,
            "actions": self.actions,
            "held": self.held,
            "inputs": self.inputs,
        }
        self.out.write(orjson.dumps(doc) + b"\n")
        self.out.flush()  # the worker may be killed: each line lands whole


_gc_traced: set[Path] = set()


def open_trace(path: Path | None) -> IO[bytes] | None:
    """The trace file (None: not tracing); garbage collections are traced into it too."""
    if path is None:
        return None
    out = path.open("ab", buffering=1 << 16)
    if path in _gc_traced:
        return out
    _gc_traced.add(path)  # the lead and the account runner share the file: one watcher
    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = now()
            return
        took = now() - began[0]
        if took >= 1.0 or info.get("generation", 0) > 0:
            doc = {"gc": info.get("generation", -1), "at": began[0], "ms": took}
            out.write(orjson.dumps(doc) + b"\n")
            out.flush()

    gc.callbacks.append(on_gc)
    return out
