"""Worker throughput and latency against two ceilings: one table from one run (make bench).

Method (one broker, one input, one run; the figures that count are the ratios):

1. Input: ``nurture simulate`` traffic (``NURTURE_BENCH_LEADS`` leads, default 16,000, over the
   30 days before today: >= 100,000 messages across the three input topics, 0.2% malformed)
   produced up front to topics of ``NURTURE_BENCH_PARTITIONS`` partitions (default: the
   settings' count): a backlog, as after an outage.
2. Three consumers read all of it, one after the other, each in its own consumer group, each
   timed from its first message to its last:
   * raw aiokafka: ``getmany`` -> ``orjson.loads`` -> ``send`` (:mod:`tests.bench.raw_aiokafka`);
   * a bare per-event Faust passthrough agent with the worker's Faust tuning
     (:mod:`tests.bench.faust_passthrough`);
   * ``nurture worker`` (RocksDB state, at-least-once with its outbox), timed through the input
     messages it reports handled on ``/metrics``.
3. Latency at half load: with the worker caught up, a second simulated set (new leads) is
   produced at half the worker's measured rate for ``NURTURE_BENCH_PACED_SECONDS`` (default
   20 s), each message stamped with its send time. It is live traffic: the simulation's 30 days
   are compressed into the paced window (``time_scale``), so event times follow the wall clock
   (an earlier version put them 31 days ahead, which moved every partition's stream time a
   month forward and fired all of the first set's pending timers inside the latency window).
   The event-to-action latency of an action is its Kafka timestamp minus the timestamp of the
   input message its ``caused_by`` names (set by the bench's producer when it sends it). The
   bench's actions topic keeps the broker's append time (``message.timestamp.type=
   LogAppendTime``), so the latency ends when the action is on the broker, readable by a
   consumer: the worker producer's linger and produce round trip count. (Until session 6 it
   used the worker producer's create time, taken when the worker queued the action.)

With ``NURTURE_BENCH_PROFILE=<dir>`` py-spy samples the worker for 20 s of the timed run and
during the paced run, and the top functions are printed (raw stacks kept in
``<dir>/worker-profile.txt`` and ``<dir>/paced-profile.txt``). The paced run also prints the
worker's mean inputs per batch (``nurture_runtime_batch_inputs_total`` over
``nurture_runtime_batches_total``).

Asserts only that everything was read and processed; prints the table and ``uptime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from stream.core.model import DAY_MS
from stream.offline.simulate import generate
from tests.bench.latency import lines as latency_lines
from tests.bench.machine import CpuSnapshot, cpu_share_line
from tests.support.leads import percentile
from tests.support.worker import (
    REPO,
    WorkerProcess,
    _lag,
    consume_all,
    free_port,
    run,
    settings_env,
)

if TYPE_CHECKING:
    from stream.settings import Settings

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

LEADS = int(os.environ.get("NURTURE_BENCH_LEADS", "16000"))
DAYS = 30
MIN_EVENTS = int(os.environ.get("NURTURE_BENCH_MIN_EVENTS", "100000"))
PACED_SECONDS = float(os.environ.get("NURTURE_BENCH_PACED_SECONDS", "20"))
PROFILE_DIR = os.environ.get("NURTURE_BENCH_PROFILE")
PROFILE_SECONDS = 20
LINES_PER_LEAD = 6.8  # measured by stream.offline.simulate (30 days)

Record = tuple[str, bytes, bytes]  # topic, key, value


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _renamed(line: bytes, prefix: str) -> bytes:
    """The line with ``prefix`` before its lead, account and event ids (malformed: as is)."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(doc, dict):
        return line
    for field in ("lead_id", "account_id", "event_id"):
        if isinstance(doc.get(field), str):
            doc[field] = prefix + doc[field]
    return orjson.dumps(doc)


def simulated(
    settings: Settings,
    leads: int,
    seed: int,
    start: int,
    prefix: str = "",
    time_scale: float = 1.0,
) -> list[Record]:
    """Simulated input records; ``prefix`` makes the leads and event ids distinct from another
    set's (the simulator numbers leads and events from 0 in every run)."""
    topics = {
        "crm": settings.topic_crm_events,
        "product": settings.topic_product_events,
        "email": settings.topic_email_events,
    }
    return [
        (
            topics[ev.source],
            (prefix + ev.lead_id).encode(),
            _renamed(ev.line, prefix) if prefix else ev.line,
        )
        for ev in generate(leads, DAYS, seed, start=start, time_scale=time_scale)
    ]


async def _produce(bootstrap: str, records: list[Record], rate: float | None) -> dict[str, int]:
    """Produce records in order; at ``rate`` messages/s if given (each stamped with its send
    time). Returns event_id -> send timestamp (ms) of the paced records."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=1 if rate else 20, acks="all"
    )
    await producer.start()
    sent_at: dict[str, int] = {}
    pending: list[Any] = []
    try:
        t0 = time.monotonic()
        for i, (topic, key, value) in enumerate(records):
            if rate is not None:
                due = t0 + i / rate
                wait = due - time.monotonic()
                if wait > 0.002:
                    await asyncio.sleep(wait)
                ts = int(time.time() * 1000)
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                    sent_at[orjson.loads(value)["event_id"]] = ts
                pending.append(await producer.send(topic, value, key=key, timestamp_ms=ts))
            else:
                pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent_at


def produce(settings: Settings, records: list[Record], rate: float | None = None) -> dict[str, int]:
    return dict(run(_produce(settings.kafka_bootstrap_servers, records, rate)))


def _ensure_out_topic(settings: Settings, name: str) -> None:
    from stream.topics_admin import ensure_topics
    from topics.catalog import TopicSpec

    spec = TopicSpec(name, "k", "internal", "bench", "bench", settings.topic_partitions)
    ensure_topics(settings.kafka_bootstrap_servers, [spec])


def _run_script(module: str, args: list[str], env: dict[str, str], log: Path) -> float:
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            proc.wait(900)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log.read_text(errors="replace")
    found = re.findall(r"RESULT (\d+) ([0-9.]+)", text)
    assert found, f"{module} gave no result:\n{text[-3000:]}"
    return float(found[-1][1])


def time_raw(settings: Settings, total: int, tmp: Path) -> Row:
    out = settings.topic_actions + "-raw"
    _ensure_out_topic(settings, out)
    args = [settings.kafka_bootstrap_servers, settings.app_id + "-raw", out, str(total)]
    seconds = _run_script(
        "tests.bench.raw_aiokafka", [*args, *settings.input_topics], {}, tmp / "raw.log"
    )
    return Row("raw aiokafka: getmany -> orjson.loads -> send", total, seconds)


def time_passthrough(settings: Settings, total: int, tmp: Path) -> Row:
    out = settings.topic_actions + "-passthrough"
    _ensure_out_topic(settings, out)
    args = [out, str(total), str(free_port()), str(tmp / "pt-data")]
    seconds = _run_script(
        "tests.bench.faust_passthrough", args, settings_env(settings), tmp / "passthrough.log"
    )
    got = consume_all(
        settings.kafka_bootstrap_servers, out, timeout=120, isolation="read_uncommitted"
    )
    assert len(got) >= total
    return Row("bare Faust passthrough agent (per event)", total, seconds)


def cpu_seconds(pid: int | None) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid`` by thread name, and ``total``."""
    if pid is None:
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        key = "main" if task.name == str(pid) else name
        out[key] = out.get(key, 0.0) + used
    out["total"] = sum(out.values())
    return out


def _cpu_line(before: dict[str, float], after: dict[str, float], inputs: int) -> str:
    used = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    parts = [
        f"{k} {v:.1f} s" for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if k != "total"
    ]
    return (
        f"  worker CPU in the paced window: {used.get('total', 0.0):.1f} s, "
        f"{1e6 * used.get('total', 0.0) / max(1, inputs):.0f} us per input "
        f"({', '.join(parts[:4])})"
    )


def _rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_handled(worker: WorkerProcess, count: int, timeout: float) -> None:
    """Poll the worker's /metrics every 0.5 s (rendering /metrics costs the worker CPU: 10 Hz
    polling took ~10% of it in a profile) until it has handled ``count`` messages."""
    deadline = time.monotonic() + timeout
    while worker.processed() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker handled {worker.processed()} of {count}")
        time.sleep(0.5)  # poll interval of a condition with a deadline


def time_worker(worker: WorkerProcess, total: int, tmp: Path) -> tuple[Row, list[str]]:
    wait_handled(worker, 1, timeout=180)
    t0 = time.perf_counter()
    spy = None
    if PROFILE_DIR:
        from tests.bench.pyspy import record

        assert worker.pid is not None
        spy = record(worker.pid, Path(PROFILE_DIR) / "worker-profile.txt", PROFILE_SECONDS)
    wait_handled(worker, total, timeout=2400)
    seconds = time.perf_counter() - t0
    rss = _rss_mb(worker.pid)
    profile: list[str] = []
    if spy is not None:
        from tests.bench.pyspy import summarize

        spy.wait(PROFILE_SECONDS + 60)
        profile = summarize(Path(PROFILE_DIR or tmp) / "worker-profile.txt")
    row = Row("nurture worker (RocksDB state, at-least-once)", total, seconds, f"RSS {rss:.0f} MB")
    return row, profile


@dataclass
class Paced:
    messages: int
    latencies_ms: list[float]  # of lead actions
    account_latencies_ms: list[float]  # of account actions (through the account topic)
    inputs_per_batch: float
    profile: list[str]
    since_ms: float  # wall clock when the paced input began


ACCOUNT_LAG_DONE = 100  # account-topic records left (progress markers keep arriving)


def wait_accounts_caught_up(settings: Settings, timeout: float = 900) -> float:
    """Seconds until the account runner has (nearly) consumed the account topic: the lead
    inputs are handled before the account copies they forward are."""
    from stream.runtime.accounts import account_topic_name

    if not settings.accounts_enabled:
        return 0.0
    topic = account_topic_name(settings)
    t0 = time.monotonic()
    while True:
        lag = run(_lag(settings.kafka_bootstrap_servers, settings.app_id, [topic]))
        if lag <= ACCOUNT_LAG_DONE:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"account topic lag still {lag} after {timeout} s")
        time.sleep(0.5)  # poll interval of a condition with a deadline


def _batch_counts(worker: WorkerProcess) -> tuple[float, float]:
    return (
        worker.metric_sum("nurture_runtime_batch_inputs_total"),
        worker.metric_sum("nurture_runtime_batches_total"),
    )


def paced_latency(settings: Settings, worker: WorkerProcess, rate: float, handled: int) -> Paced:
    """Produce a fresh simulated set at ``rate``/s, its event times on the wall clock;
    latencies (ms) of the actions it caused."""
    leads = max(100, int(rate * PACED_SECONDS / LINES_PER_LEAD))
    scale = DAYS * DAY_MS / (PACED_SECONDS * 1000)
    now = int(time.time() * 1000)
    records = simulated(settings, leads, seed=99, start=now, prefix="paced-", time_scale=scale)
    since = time.time() * 1000
    records = records[: int(rate * PACED_SECONDS)]
    inputs0, batches0 = _batch_counts(worker)
    cpu0 = cpu_seconds(worker.pid)
    assert worker.pid is not None
    machine0 = CpuSnapshot(worker.pid)
    spy = None
    if PROFILE_DIR:
        from tests.bench.pyspy import record

        assert worker.pid is not None
        seconds = max(1, int(PACED_SECONDS) - 2)
        spy = record(worker.pid, Path(PROFILE_DIR) / "paced-profile.txt", seconds)
    sent_at = produce(settings, records, rate=rate)
    machine1 = CpuSnapshot(worker.pid)  # the producing window: the paced rate held
    wait_handled(worker, handled + len(records), timeout=600)
    inputs1, batches1 = _batch_counts(worker)
    cpu = _cpu_line(cpu0, cpu_seconds(worker.pid), len(records))
    machine = cpu_share_line(machine0, machine1)
    profile: list[str] = []
    if spy is not None:
        from tests.bench.pyspy import summarize

        spy.wait(PACED_SECONDS + 60)
        profile = summarize(Path(PROFILE_DIR or ".") / "paced-profile.txt")
    actions = consume_all(
        settings.kafka_bootstrap_servers, settings.topic_actions, idle=3.0, timeout=300
    )
    lat: list[float] = []
    account_lat: list[float] = []
    for rec in actions:
        value = rec["value"]
        if not isinstance(value, dict):
            continue
        sent = sent_at.get(value.get("caused_by", ""))
        if sent is not None:
            into = account_lat if value.get("account_id") else lat
            into.append(float(rec["timestamp"] - sent))
    per_batch = (inputs1 - inputs0) / max(1.0, batches1 - batches0)
    return Paced(len(records), lat, account_lat, per_batch, [cpu, machine, *profile], since)


def _account_line(lat: list[float]) -> str:
    if not lat:
        return "  account actions caused by the paced input: none"
    return (
        f"  account actions ({len(lat):,}, through the account topic's event-time merge): "
        f"p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms, "
        f"max {max(lat):.0f} ms"
    )


def bench_settings(kafka_bootstrap: str, tmp_path: Path, run_id: str) -> Settings:
    """Settings of a bench run on topics of its own (created here), tracing the worker's
    batches into ``<tmp_path>/trace.jsonl``."""
    from stream.settings import Settings
    from stream.topics_admin import catalog_from_settings, ensure_topics

    fields: dict[str, Any] = {
        "app_id": f"nurture-{run_id}",
        "kafka_bootstrap_servers": kafka_bootstrap,
        "data_dir": tmp_path / "data",
        "topic_product_events": f"nurture.product-events.{run_id}",
        "topic_email_events": f"nurture.email-events.{run_id}",
        "topic_crm_events": f"nurture.crm-events.{run_id}",
        "topic_actions": f"nurture.actions.{run_id}",
        "topic_transitions": f"nurture.transitions.{run_id}",
        "topic_dead_letter": f"nurture.dead-letter.{run_id}",
        "log_level": "warning",
        "trace_latency_file": tmp_path / "trace.jsonl",
    }
    if os.environ.get("NURTURE_BENCH_PARTITIONS"):
        fields["topic_partitions"] = int(os.environ["NURTURE_BENCH_PARTITIONS"])
    settings = Settings(**fields)
    specs = [
        replace(spec, config={**spec.config, "message.timestamp.type": "LogAppendTime"})
        if spec.name == settings.topic_actions  # latency ends when the action is on the broker
        else spec
        for spec in catalog_from_settings(settings)
    ]
    ensure_topics(kafka_bootstrap, specs)
    return settings


def test_bench_worker_against_raw_and_bare_faust(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = bench_settings(kafka_bootstrap, tmp_path, f"bench-{int(time.time())}")

    start = (int(time.time() * 1000) // DAY_MS - DAYS - 1) * DAY_MS
    records = simulated(settings, LEADS, seed=7, start=start)
    total = len(records)
    assert total >= MIN_EVENTS, f"{total} messages; raise NURTURE_BENCH_LEADS"
    produce(settings, records)
    del records

    raw = time_raw(settings, total, tmp_path)
    bare = time_passthrough(settings, total, tmp_path)
    with WorkerProcess.from_settings(settings) as worker:
        worker.wait_ready(timeout=180)
        work, profile = time_worker(worker, total, tmp_path)
        accounts_s = wait_accounts_caught_up(settings)
        work.note += f"; account topic caught up {accounts_s:.0f} s later"
        half = work.rate / 2
        paced = paced_latency(settings, worker, half, total)
    lat = paced.latencies_ms
    assert lat, "no action was caused by the paced input"

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [
        "",
        f"worker bench: {total:,} simulated messages ({LEADS:,} leads, {DAYS} days), "
        f"{settings.topic_partitions} partitions, {os.cpu_count()} cpus",
        f"uptime: {load}",
        f"  {'consumer':<48} {'events/s':>10} {'seconds':>8}  note",
    ]
    for row in (raw, bare, work):
        lines.append(f"  {row.name:<48} {row.rate:>10,.0f} {row.seconds:>8.1f}  {row.note}")
    lines += [
        f"  worker / bare Faust: {work.rate / bare.rate:.0%}   (target >= 100%)",
        f"  worker / raw:        {work.rate / raw.rate:.0%}   (target >= 25%)",
        f"  bare Faust / raw:    {bare.rate / raw.rate:.0%}",
        f"  event -> action latency at half the worker's rate ({half:,.0f}/s, {paced.messages:,} "
        f"messages, {len(lat):,} actions): p50 {percentile(lat, 50):.0f} ms, "
        f"p99 {percentile(lat, 99):.0f} ms, max {max(lat):.0f} ms   (target p99 <= 50 ms); "
        f"{paced.inputs_per_batch:.1f} inputs per batch",
        _account_line(paced.account_latencies_ms),
        *latency_lines(tmp_path / "trace.jsonl", paced.since_ms),
        *latency_lines(tmp_path / "trace.jsonl", paced.since_ms, "AccountRunner"),
        *profile,
        *paced.profile,
    ]
    print("\n".join(lines))


LATENCY_LEADS = int(os.environ.get("NURTURE_BENCH_LATENCY_LEADS", "2000"))
# one or more paced rates (comma-separated), each on topics of its own, one broker for all
LATENCY_RATES = [
    float(rate)
    for rate in os.environ.get(
        "NURTURE_BENCH_LATENCY_RATES", os.environ.get("NURTURE_BENCH_LATENCY_RATE", "2458")
    ).split(",")
]
CURVE: list[str] = []  # a summary row per rate run, printed after the last
# a paced run before the first rate, not reported (``make bench-latency``: 1000): a broker
# started for the bench compiles its hot paths meanwhile (its JIT took 0.2-0.4 cores in the
# first minute), which a long-running broker does not
WARMUP_RATE = float(os.environ.get("NURTURE_BENCH_LATENCY_WARMUP_RATE", "0"))


@pytest.fixture(scope="module")
def latency_curve(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Warms the broker up if asked; collects a row per paced rate and prints them as one
    table after the module's last test."""
    if WARMUP_RATE > 0:
        row, _block = latency_run(kafka_bootstrap, tmp_path_factory.mktemp("warmup"), WARMUP_RATE)
        print(f"\nbroker warm-up at {WARMUP_RATE:,.0f}/s (not in the table):\n{row}")
    yield CURVE
    if CURVE:
        print(
            "\n".join(
                [
                    "",
                    "latency against paced input rate (lead actions to the broker's append; "
                    "CPU in cores over the paced window):",
                    f"  {'rate/s':>7}  {'lead p50/p99/max ms':>20}  {'account p50/p99 ms':>19}"
                    f"  {'inputs/batch':>12}  CPU",
                    *CURVE,
                ]
            )
        )


@pytest.mark.parametrize("rate", LATENCY_RATES, ids=lambda rate: f"{rate:g}/s")
def test_bench_worker_latency(
    kafka_bootstrap: str, tmp_path: Path, rate: float, latency_curve: list[str]
) -> None:
    """Only the paced half of the bench, at a fixed rate (``NURTURE_BENCH_LATENCY_RATE``,
    default 2,458/s: half the worker's rate on a quiet machine; or each of the comma-separated
    ``NURTURE_BENCH_LATENCY_RATES``, as ``make bench-latency`` runs them) after a small backlog
    (``NURTURE_BENCH_LATENCY_LEADS`` leads), with the per-stage breakdown: ~1 minute a rate,
    for trying a change to the loop or a setting (the worker reads ``NURTURE_*`` settings from
    the environment)."""
    row, block = latency_run(kafka_bootstrap, tmp_path, rate)
    latency_curve.append(row)
    print(block)


def latency_run(kafka_bootstrap: str, tmp_path: Path, rate: float) -> tuple[str, str]:
    """One paced run at ``rate`` on topics of its own: (its table row, its printed block)."""
    settings = bench_settings(kafka_bootstrap, tmp_path, f"lat-{int(time.time())}")
    start = (int(time.time() * 1000) // DAY_MS - DAYS - 1) * DAY_MS
    records = simulated(settings, LATENCY_LEADS, seed=7, start=start)
    total = len(records)
    produce(settings, records)
    del records
    with WorkerProcess.from_settings(settings) as worker:
        worker.wait_ready(timeout=180)
        wait_handled(worker, total, timeout=600)
        wait_accounts_caught_up(settings)
        paced = paced_latency(settings, worker, rate, total)
    lat = paced.latencies_ms
    assert lat, "no action was caused by the paced input"
    acc = paced.account_latencies_ms
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    cpu = paced.profile[1].split("in cores):", 1)[-1].strip()
    row = (
        f"  {rate:>7,.0f}  {percentile(lat, 50):>6.0f} /{percentile(lat, 99):>6.0f} /"
        f"{max(lat):>6.0f}  "
        + (f"{percentile(acc, 50):>8.0f} /{percentile(acc, 99):>8.0f}" if acc else f"{'-':>19}")
        + f"  {paced.inputs_per_batch:>12.1f}  {cpu}"
    )
    block = "\n".join(
        [
            "",
            f"latency bench: {total:,} backlog messages, then {paced.messages:,} at "
            f"{rate:,.0f}/s, {settings.topic_partitions} partitions",
            f"uptime: {load}",
            f"  lead actions ({len(lat):,}): p50 {percentile(lat, 50):.0f} ms, "
            f"p99 {percentile(lat, 99):.0f} ms, max {max(lat):.0f} ms   (target p99 <= 50 ms); "
            f"{paced.inputs_per_batch:.1f} inputs per batch",
            _account_line(acc),
            *latency_lines(tmp_path / "trace.jsonl", paced.since_ms),
            *latency_lines(tmp_path / "trace.jsonl", paced.since_ms, "AccountRunner"),
            *paced.profile,
        ]
    )
    return row, block
