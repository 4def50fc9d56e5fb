"""The worker's per-event CPU without Kafka: an offline driver of its processing path.

The worker bench's input (``nurture simulate``: 16,000 leads over 30 days by default) goes
through what the worker runs for every message, minus Faust and the broker:

* parse (``LeadRunner.parse``: :func:`topics.parse.parse_event` with the key);
* the lead processor (:class:`stream.runtime.processor.LeadProcessor`) over batches of one
  partition's inputs, its writes applied to a store (a dict, or one rocksdict per partition in
  a temp dir with ``rocksdb=True``, as :class:`stream.runtime.tablestore.TableStore` writes);
* the worker's metrics of each batch (``LeadRunner.observe_series`` into a real
  :class:`stream.metrics.Metrics`);
* the account path: the forward of every account event
  (:func:`stream.runtime.accounts.account_forward`), decoded as the account runner
  does (``AccountRunner.parse``), and the account processor over batches of it.

Partitions are the Kafka default partitioner's (murmur2 of the key); offsets count per topic
partition; a partition's batch is its next ``batch_size`` inputs in delivery order; the
consumer's committed offset follows one batch behind (the outbox and journal are pruned as in
the worker). Each stage is timed with ``time.process_time`` (CPU seconds of this process: a
busy machine slows it little), so the figure is events per CPU second.

Run: ``python -m tests.bench.cpu_driver [leads] [batch_size] [--rocksdb]`` or the bench test
:mod:`tests.bench.test_bench_cpu`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from stream.core.config import load_config
from stream.core.model import DAY_MS
from stream.offline.simulate import generate
from stream.runtime.accounts import account_forward, account_processor
from stream.runtime.batch import BatchResult, Input
from stream.runtime.processor import LeadProcessor
from stream.runtime.tablestore import write_batch

PARTITIONS = 12
DAYS = 30
TOPICS = {"crm": "crm", "product": "product", "email": "email"}
ACCOUNT_TOPIC = "accounts"


class MemoryStore:
    """A partitioned dict store applying a batch's writes."""

    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = defaultdict(dict)

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return list(self.data[partition].items())

    def write(self, partition: int, writes: dict[bytes, bytes | None]) -> None:
        data = self.data[partition]
        for key, value in writes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    def values(self) -> Iterator[tuple[bytes, bytes]]:
        for data in self.data.values():
            yield from data.items()

    def close(self) -> None:
        pass


class RocksStore:
    """One rocksdict per partition in a temp dir, written with one WriteBatch per batch (what
    :class:`stream.runtime.tablestore.TableStore` does with Faust's table)."""

    def __init__(self) -> None:
        import rocksdict

        self._tmp = tempfile.TemporaryDirectory(prefix="nurture-cpu-")
        self._rocksdict = rocksdict
        self.dbs: dict[int, Any] = {}

    def _db(self, partition: int) -> Any:
        db = self.dbs.get(partition)
        if db is None:
            path = f"{self._tmp.name}/{partition}"
            db = self.dbs[partition] = self._rocksdict.Rdict(
                path, options=self._rocksdict.Options(raw_mode=True)
            )
        return db

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db(partition).get(key)
        return value

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return list(self._db(partition).items())

    def write(self, partition: int, writes: dict[bytes, bytes | None]) -> None:
        write_batch(self._db(partition), writes)  # as the worker's TableStore.write

    def values(self) -> Iterator[tuple[bytes, bytes]]:
        for db in self.dbs.values():
            yield from db.items()

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self._tmp.cleanup()


@dataclass
class Figures:
    messages: int = 0
    events: int = 0
    invalid: int = 0
    lead_batches: int = 0
    account_events: int = 0
    account_batches: int = 0
    outputs: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    lead_values: int = 0
    lead_bytes: int = 0
    lead_state_bytes: int = 0
    written_bytes: int = 0  # lead table values written (what the changelog carries too)
    journal_bytes: int = 0  # journal values written (the batches' outputs kept until committed)
    account_values: int = 0
    account_bytes: int = 0

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    def lines(self) -> list[str]:
        out = [
            f"{self.messages} messages ({self.events} events, {self.invalid} invalid), "
            f"{self.lead_batches} lead batches, {self.account_events} account inputs in "
            f"{self.account_batches} batches, {self.outputs} lead outputs",
            f"CPU {self.total_cpu:.2f} s: {self.messages / self.total_cpu:,.0f} messages per CPU s",
        ]
        for stage, sec in self.cpu.items():
            share = 100 * sec / self.total_cpu
            out.append(f"  {stage:<16} {sec:7.2f} s  {share:5.1f}%")
        if self.lead_values:
            out.append(
                f"lead record: {self.lead_bytes / self.lead_values:,.0f} B mean over "
                f"{self.lead_values} leads (core state "
                f"{self.lead_state_bytes / self.lead_values:,.0f} B); "
                f"{self.written_bytes / 1e6:,.1f} MB of lead values and "
                f"{self.journal_bytes / 1e6:,.1f} MB of journal values written"
            )
        if self.account_values:
            out.append(
                f"account record: {self.account_bytes / self.account_values:,.0f} B mean over "
                f"{self.account_values} accounts"
            )
        return out


def _partition(key: bytes) -> int:
    from aiokafka.partitioner import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def _messages(leads: int, seed: int, start: int) -> list[SimpleNamespace]:
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    out = []
    for ev in generate(leads, DAYS, seed, start=start):
        topic = TOPICS[ev.source]
        key = ev.lead_id.encode()
        p = _partition(key)
        offset = offsets[(topic, p)]
        offsets[(topic, p)] = offset + 1
        out.append(
            SimpleNamespace(
                topic=topic, partition=p, offset=offset, key=key, value=ev.line, timestamp=None
            )
        )
    return out


class _Committed:
    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}

    def __call__(self, topic: str, partition: int) -> int | None:
        return self.offsets.get((topic, partition))

    def commit(self, inputs: list[Input], partition: int) -> None:
        for inp in inputs:
            self.offsets[(inp.topic, partition)] = inp.offset + 1


def drive(
    leads: int = 16_000, batch_size: int = 1000, *, rocksdb: bool = False, seed: int = 7
) -> Figures:
    from prometheus_client import CollectorRegistry

    from stream.commands.heap import tune_gc
    from stream.metrics import Metrics
    from stream.runtime.account_agent import AccountRunner
    from stream.runtime.agent import LeadRunner, Parsed
    from stream.runtime.merge import Slot

    config = load_config(None)
    start = (int(time.time() * 1000) // DAY_MS - DAYS - 1) * DAY_MS
    messages = _messages(leads, seed, start)
    fig = Figures(messages=len(messages))
    store: Any = RocksStore() if rocksdb else MemoryStore()
    account_store: Any = MemoryStore()
    committed, account_committed = _Committed(), _Committed()
    lead_proc = LeadProcessor(config, store, committed=committed, clock=lambda: 0)
    account_proc = account_processor(
        config, account_store, committed=account_committed, clock=lambda: 0
    )
    metrics = Metrics(CollectorRegistry())
    # the runners' own parse/observe methods, without Faust (they use none of its state)
    lead_runner: Any = object.__new__(LeadRunner)
    lead_runner.processor = lead_proc
    account_runner: Any = object.__new__(AccountRunner)
    account_runner.merges = {}
    account_runner.input_topics = (ACCOUNT_TOPIC,)
    account_runner.settings = SimpleNamespace(topic_partitions=PARTITIONS)
    cpu: dict[str, float] = defaultdict(float)
    by_partition: dict[int, list[SimpleNamespace]] = defaultdict(list)
    for m in messages:
        by_partition[m.partition].append(m)
    account_offsets: dict[int, int] = defaultdict(int)
    account_queue: dict[int, list[SimpleNamespace]] = defaultdict(list)
    tune_gc()
    clock = time.process_time
    cursor = dict.fromkeys(by_partition, 0)
    while cursor:
        for p in sorted(cursor):
            queue = by_partition[p]
            chunk = queue[cursor[p] : cursor[p] + batch_size]
            cursor[p] += len(chunk)
            if cursor[p] >= len(queue):
                del cursor[p]
            t = clock()
            slots = []
            for m in chunk:
                event, error = lead_runner.parse(m)
                slots.append(
                    Slot(0 if event is None else event.at, m.offset, Parsed(m, event, error))
                )
            t1 = clock()
            cpu["lead parse"] += t1 - t
            inputs = [Input(s.item.message.topic, s.offset, s.item.event) for s in slots]
            result: BatchResult = lead_proc.process(p, inputs, not cursor.get(p))
            t2 = clock()
            cpu["lead process"] += t2 - t1
            store.write(p, result.writes)
            t3 = clock()
            cpu["lead write"] += t3 - t2
            forwards = []
            for s in slots:
                if s.item.event is None:
                    fig.invalid += 1
                    continue
                fig.events += 1
                fw = account_forward(ACCOUNT_TOPIC, s.item.message, s.item.event)
                if fw is not None:
                    forwards.append(fw)
            t4 = clock()
            cpu["account forward"] += t4 - t3
            LeadRunner.observe_series(lead_runner, metrics, result, slots)
            t5 = clock()
            cpu["lead metrics"] += t5 - t4
            committed.commit(inputs, p)
            fig.lead_batches += 1
            fig.outputs += len(result.transitions) + len(result.actions)
            for k, v in result.writes.items():
                if v and k.startswith(b"__"):
                    fig.journal_bytes += len(v)
                elif v:
                    fig.written_bytes += len(v)
            for _topic, _p, key, value in forwards:
                assert key is not None  # forwards are keyed by account
                ap = _partition(key)
                offset = account_offsets[ap]
                account_offsets[ap] = offset + 1
                account_queue[ap].append(
                    SimpleNamespace(
                        topic=ACCOUNT_TOPIC, partition=ap, offset=offset, key=key, value=value
                    )
                )
        _accounts(account_runner, account_proc, account_store, account_queue, fig, cpu)
    fig.cpu = dict(cpu)
    from stream.runtime.record import peek_state_bytes

    for key, value in store.values():
        if key.startswith(b"__"):
            continue
        fig.lead_values += 1
        fig.lead_bytes += len(value)
        fig.lead_state_bytes += len(peek_state_bytes(value))
    for key, value in account_store.values():
        if not key.startswith(b"__"):
            fig.account_values += 1
            fig.account_bytes += len(value)
    store.close()
    return fig


def _accounts(
    runner: Any,
    proc: LeadProcessor,
    store: MemoryStore,
    queues: dict[int, list[SimpleNamespace]],
    fig: Figures,
    cpu: dict[str, float],
) -> None:
    """The account runner over what the lead batches forwarded (one batch per partition)."""
    clock = time.process_time
    for p in sorted(queues):
        chunk = queues[p]
        if not chunk:
            continue
        queues[p] = []
        t = clock()
        inputs = []
        for m in chunk:
            event, error = runner.parse(m)
            if error is not None:
                raise AssertionError(f"account parse failed: {error}")
            inputs.append(Input(m.topic, m.offset, event))
        inputs.sort(key=lambda i: i.event.at if i.event is not None else 0)
        t1 = clock()
        cpu["account parse"] += t1 - t
        result = proc.process(p, inputs, False)
        store.write(p, result.writes)
        cpu["account process"] += clock() - t1
        fig.account_events += len(inputs)
        fig.account_batches += 1


def main(argv: list[str]) -> None:
    args = [a for a in argv if not a.startswith("--")]
    leads = int(args[0]) if args else 16_000
    batch = int(args[1]) if len(args) > 1 else 1000
    fig = drive(leads, batch, rocksdb="--rocksdb" in argv)
    for line in fig.lines():
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
