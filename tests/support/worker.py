"""Run the stream worker as a real subprocess, and produce to / consume from a real broker.

Typical use (with the ``kafka_settings`` fixture of tests/conftest.py)::

    with WorkerProcess.from_settings(kafka_settings) as worker:   # starts; stops on exit
        worker.wait_ready()
        produce_events(kafka_settings, events)
        actions = consume_all(bootstrap, kafka_settings.topic_actions, until=lambda r: len(r) >= 3)

``WorkerProcess(bootstrap, data_dir, app_id, web_port)`` also works with the default topic names.
``stop()`` sends SIGTERM and waits (graceful); ``kill()`` sends SIGKILL. The worker's output goes
to ``<data_dir>/../worker-<app_id>-<n>.log``; ``log_tail()`` returns its end for assertion messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.settings import Settings

REPO = Path(__file__).resolve().parents[2]
NURTURE = str(Path(sys.executable).with_name("nurture"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """NURTURE_* variables equivalent to a Settings object."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, (set, frozenset)):  # pydantic-settings reads a JSON list
            env[f"NURTURE_{name.upper()}"] = json.dumps(sorted(value))
        else:
            env[f"NURTURE_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """One ``nurture worker`` subprocess."""

    command = "worker"  # the nurture subcommand run (tests/support/sender.py runs "sender")
    _count = 0

    def __init__(
        self,
        bootstrap: str,
        data_dir: str | Path,
        app_id: str,
        web_port: int | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.data_dir = Path(data_dir)
        self.app_id = app_id
        self.web_port = web_port or free_port()
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        WorkerProcess._count += 1
        self.log_path = self.data_dir.parent / f"worker-{app_id}-{WorkerProcess._count}.log"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        data_dir: str | Path | None = None,
        web_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> WorkerProcess:
        merged = settings_env(settings)
        # run any worker test under the other guarantee: NURTURE_TEST_PROCESSING_GUARANTEE
        override = os.environ.get("NURTURE_TEST_PROCESSING_GUARANTEE")
        if override:
            merged["NURTURE_PROCESSING_GUARANTEE"] = override
        merged.update(env or {})
        return cls(
            settings.kafka_bootstrap_servers,
            data_dir if data_dir is not None else settings.data_dir,
            settings.app_id,
            web_port,
            env=merged,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(
            {
                "NURTURE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "NURTURE_DATA_DIR": str(self.data_dir),
                "NURTURE_APP_ID": self.app_id,
                "NURTURE_WEB_PORT": str(self.web_port),
                "NURTURE_WEB_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [NURTURE, self.command], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """GET ``path`` on the worker's web server: (status, parsed JSON or text)."""
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def metric_sum(self, name: str) -> float:
        """Sum of all samples of one metric on the worker's /metrics (0 if absent)."""
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        total = 0.0
        for line in str(body).splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def processed(self) -> int:
        """Input messages this worker process has handled (events + dead letters)."""
        return int(
            self.metric_sum("nurture_events_in_total")
            + self.metric_sum("nurture_dead_letters_total")
        )

    def processed_answered(self, timeout: float = 60.0) -> int:
        """:meth:`processed`, asked again while /metrics does not answer in time (a long batch
        holds the worker's event loop on a loaded machine), up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.processed()
            except (TimeoutError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise

    def wait_processed(self, count: int, timeout: float = 60.0, poll: float = 0.1) -> None:
        """Poll /metrics every ``poll`` s until this process has handled ``count`` input
        messages, or raise."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            seen = self.processed_answered(max(1.0, deadline - time.monotonic()))
            if seen >= count:
                return
            time.sleep(poll)  # poll interval of a condition with a deadline
        raise TimeoutError(f"worker handled {seen} of {count} messages:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll ``/readyz`` until it answers 200 (table recovered), or raise with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"worker exited early:\n{self.log_tail()}")
            try:
                status, _ = self.get("/readyz")
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                status = 0
            if status == 200:
                return
            time.sleep(0.2)  # poll interval of a readiness probe with a deadline
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, no cleanup (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> WorkerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ReportConsumerProcess(WorkerProcess):
    """One ``nurture report-consumer`` subprocess (GET /report, /metrics, /readyz on its port);
    its RocksDB folder is ``<data_dir>/../report-<app_id>`` unless ``data_dir`` is given."""

    command = "report-consumer"

    @classmethod
    def for_settings(
        cls, settings: Settings, *, data_dir: str | Path | None = None
    ) -> ReportConsumerProcess:
        port = free_port()
        folder = data_dir or Path(settings.data_dir).parent / f"report-{settings.app_id}"
        env = {"NURTURE_REPORT_PORT": str(port), "NURTURE_REPORT_DATA_DIR": str(folder)}
        made = cls.from_settings(settings, web_port=port, env=env)
        assert isinstance(made, ReportConsumerProcess)
        return made


# --- producing and consuming ---------------------------------------------------------------


def topic_for_event(event: Mapping[str, Any], settings: Settings | None = None) -> str:
    """The input topic of an event by its type's source (unknown types go to product events)."""
    from topics.events import EVENT_TYPES

    source = EVENT_TYPES.get(str(event.get("type")), ("product",))[0]
    names = {
        "product": settings.topic_product_events if settings else "nurture.product-events",
        "email": settings.topic_email_events if settings else "nurture.email-events",
        "crm": settings.topic_crm_events if settings else "nurture.crm-events",
    }
    return names[source]


def run(coro: Any) -> Any:
    from stream.kafka_local import run_sync

    return run_sync(coro)


async def _produce(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes | None]]
) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2_000_000, acks="all"
    )
    await producer.start()
    n = 0
    try:
        batch = []
        for topic, key, value in records:
            batch.append(await producer.send(topic, value, key=key))
            n += 1
            if len(batch) >= 5000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return n


def produce_raw(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    """Produce ``(topic, key, value)`` records, in order, and wait for all acks."""
    return int(run(_produce(bootstrap, list(records))))


def produce_rounds(
    settings: Settings,
    worker: WorkerProcess,
    batches: Iterable[list[tuple[str, bytes | None, bytes | None]]],
    start: int = 0,
) -> int:
    """Produce ``(topic, key, value)`` batches one at a time, each only once ``worker`` has
    handled every message before it (``start`` counts messages it handled earlier). Per-lead
    order then holds across the three input topics, which Kafka orders only within one topic.
    Returns the total handled."""
    sent = start
    for batch in batches:
        if not batch:
            continue
        sent += produce_raw(settings.kafka_bootstrap_servers, batch)
        worker.wait_processed(sent, timeout=60)
    return sent


def produce_events(
    target: str | Settings,
    events: Sequence[Mapping[str, Any]],
    settings: Settings | None = None,
) -> int:
    """Produce contract events (dicts) keyed by lead_id to the input topic of their source.

    ``target`` is a bootstrap string (default topic names, or those of ``settings``) or a
    Settings object (its bootstrap and topic names)."""
    if not isinstance(target, str):
        settings, bootstrap = target, target.kafka_bootstrap_servers
    else:
        bootstrap = target
    records = [
        (
            topic_for_event(e, settings),
            str(e["lead_id"]).encode(),
            json.dumps(e, separators=(",", ":")).encode(),
        )
        for e in events
    ]
    return produce_raw(bootstrap, records)


async def _consume(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool] | None,
    timeout: float,
    idle: float,
    isolation: str,
    auth: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
        max_partition_fetch_bytes=4_000_000,
        fetch_max_bytes=16_000_000,
        **(auth or {}),
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, msgs in batches.items():
                for m in msgs:
                    value: Any = m.value
                    with contextlib.suppress(ValueError):
                        value = json.loads(m.value) if m.value is not None else None
                    out.append(
                        {
                            "key": m.key.decode(errors="replace") if m.key is not None else None,
                            "value": value,
                            "partition": tp.partition,
                            "offset": m.offset,
                            "timestamp": m.timestamp,
                        }
                    )
                    last_new = time.monotonic()
            if until is not None and until(out):
                break
            if until is None and time.monotonic() - last_new >= idle:
                break
    finally:
        await consumer.stop()
    return out


def consume_all(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
    timeout: float = 60.0,
    *,
    idle: float = 3.0,
    isolation: str = "read_committed",
    auth: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning. Stops when ``until(records)`` is true, at ``timeout``
    (returning what was read: the caller asserts), or, without ``until``, after ``idle`` seconds
    without a new record. Each record is ``{key, value (parsed JSON), partition, offset}``."""
    return list(run(_consume(bootstrap, topic, until, timeout, idle, isolation, auth)))


async def _consume_to_end(
    bootstrap: str, topic: str, timeout: float
) -> tuple[list[dict[str, Any]], bool]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await probe.start()
    try:
        parts = probe.partitions_for_topic(topic) or await _partitions(probe, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await probe.end_offsets(tps)
    finally:
        await probe.stop()
    want = {tp.partition: end for tp, end in ends.items()}

    def reached(records: list[dict[str, Any]]) -> bool:
        last: dict[int, int] = {}
        for r in records:
            last[r["partition"]] = max(last.get(r["partition"], -1), r["offset"])
        return all(end == 0 or last.get(p, -1) >= end - 1 for p, end in want.items())

    records = await _consume(bootstrap, topic, reached, timeout, 3.0, "read_uncommitted")
    return records, reached(records)


def consume_to_end(bootstrap: str, topic: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning up to the end offsets it has when called (every
    partition), so records that arrive after the expected ones are seen too. Raises if the
    end is not reached within ``timeout``."""
    records, reached = run(_consume_to_end(bootstrap, topic, timeout))
    if not reached:
        raise TimeoutError(f"{topic}: end offsets not reached in {timeout}s")
    return list(records)


async def _lag(
    bootstrap: str, group: str, topics: Sequence[str], auth: Mapping[str, Any] | None = None
) -> int:
    """Records of ``topics`` not yet committed by ``group`` (``auth``: client security kwargs)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(auth or {}))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **(auth or {}))
    await admin.start()
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or await _partitions(consumer, t))
        ]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client._wait_on_metadata(topic)
    return set(consumer.partitions_for_topic(topic) or ())


def input_lag(settings: Settings) -> int:
    """Messages on the input topics not yet committed by the worker's consumer group."""
    return int(
        run(_lag(settings.kafka_bootstrap_servers, settings.app_id, list(settings.input_topics)))
    )


def wait_consumed(settings: Settings, timeout: float = 120.0) -> None:
    """Poll until the worker group has committed every input message (lag 0), or raise."""
    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        lag = input_lag(settings)
        if lag == 0:
            return
        time.sleep(0.5)  # poll interval of a condition with a deadline
    raise TimeoutError(f"input lag still {lag} after {timeout}s")
