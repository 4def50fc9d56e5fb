"""Where an input's event-to-action time goes: a summary of the worker's batch trace
(``NURTURE_TRACE_LATENCY_FILE``, :mod:`stream.runtime.trace`).

Per input of a batch that caused an action (ms, p50 / p99 / max):

* ``fetch``: Kafka timestamp (the bench's send time) -> delivered to the runner by the drain
  (producer linger, broker, fetch wait, the consumer thread, the drain);
* ``buffered``: delivered -> its partition's merge taken (the loop's wake-up and linger, the
  round's earlier partitions, an event-time hold);
* ``into round``: round began -> this partition taken (the earlier partitions' work);
* ``process``: taken -> stepped and the state written;
* ``queue``: stepped -> every output in the producer's accumulator (the output's timestamp);
* ``ack``: queued -> the broker acknowledged the last output (not in the measured latency);
* ``to queued``: Kafka timestamp -> queued (what the bench's latency measures);
* ``held``: how long the event-time merge had held the partition before the take (waiting
  for an input topic with unread data), over the inputs of held batches only.

Garbage collections of 1 ms and more between the first and the last traced batch are counted,
with their longest pause.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support.leads import percentile

STAGES = ("fetch", "buffered", "into round", "process", "queue", "ack", "to queued", "held")


def breakdown(path: Path, since_ms: float, runner: str) -> dict[str, list[float]]:
    """Stage times of the inputs of ``runner``'s batches taken after ``since_ms`` that caused
    actions."""
    out: dict[str, list[float]] = {name: [] for name in STAGES}
    if not path.exists():
        return out
    pauses: list[tuple[float, float]] = []
    last_take = since_ms
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        if "gc" in doc:
            pauses.append((doc["at"], doc["ms"]))
            continue
        if doc["runner"] == runner:
            last_take = max(last_take, doc["take"])
        if doc["runner"] != runner or doc["take"] < since_ms or not doc["actions"]:
            continue
        for ts, delivered in doc["inputs"]:
            if not ts or ts < since_ms:
                continue
            out["fetch"].append(delivered - ts)
            out["buffered"].append(doc["take"] - delivered)
            out["into round"].append(doc["take"] - doc["round"])
            out["process"].append(doc["processed"] - doc["take"])
            out["queue"].append(doc["queued"] - doc["processed"])
            out["ack"].append(doc["acked"] - doc["queued"])
            out["to queued"].append(doc["queued"] - ts)
            if doc["held"]:
                out["held"].append(doc["held"])
    # the window of the traced batches (the worker's stop collects garbage: not in it)
    out["gc"] = [ms for at, ms in pauses if since_ms <= at <= last_take]
    return out


def lines(path: Path, since_ms: float, runner: str = "LeadRunner") -> list[str]:
    stages = breakdown(path, since_ms, runner)
    n = len(stages["fetch"])
    if not n:
        return [f"  latency breakdown of {runner}: no traced input"]
    rows = [
        f"  latency breakdown of {runner} ({n:,} inputs of batches with actions), "
        "ms: p50 / p99 / max"
    ]
    for name in STAGES:
        v = stages[name]
        if not v or name == "gc":
            continue
        rows.append(
            f"    {name:<11} {percentile(v, 50):>7.1f} {percentile(v, 99):>7.1f} {max(v):>7.1f}"
        )
    pauses = stages["gc"]
    if pauses:
        rows.append(
            f"    garbage collections >= 1 ms: {len(pauses)}, {sum(pauses):.0f} ms in all, "
            f"longest {max(pauses):.1f} ms"
        )
    return rows
