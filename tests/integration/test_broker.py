"""The broker works end to end: topics from the catalog, aiokafka groups and transactions, kcat."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream.cli import main as cli_main
from stream.settings import Settings
from stream.topics_admin import describe_topics, ensure_topics
from topics.catalog import catalog

REPO = Path(__file__).resolve().parents[2]


async def _consume(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    group: str | None = None,
    isolation_level: str = "read_uncommitted",
    timeout: float = 30.0,
    settle_polls: int = 0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``count`` records from the start of ``topic`` (poll with a deadline).

    ``settle_polls`` extra empty-tolerant polls after ``count`` show that nothing else arrives.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
        for _ in range(settle_polls):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
        if group is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_catalog_topics_are_created_idempotently(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    specs = catalog(
        product_events=f"pe.{run}",
        email_events=f"ee.{run}",
        crm_events=f"ce.{run}",
        actions=f"ac.{run}",
        transitions=f"tr.{run}",
        dead_letter=f"dl.{run}",
        partitions=4,
    )
    names = [s.name for s in specs]

    first = ensure_topics(kafka_bootstrap, specs)
    second = ensure_topics(kafka_bootstrap, specs)

    assert sorted(first.created) == sorted(names)
    assert first.existing == []
    assert second.created == []
    assert sorted(second.existing) == sorted(names)
    assert second.partition_mismatch == {}
    info = describe_topics(kafka_bootstrap, names)
    assert {n: (info[n].partitions, info[n].leaders_ready) for n in names} == {
        n: (4, True) for n in names
    }

    async def topic_config(name: str) -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)]
            )
        finally:
            await admin.close()
        entries = response.resources[0][4]
        return {entry[0]: entry[1] for entry in entries}

    transitions_cfg = asyncio.run(topic_config(f"tr.{run}"))
    assert transitions_cfg["retention.ms"] == str(90 * 24 * 3600 * 1000)
    assert transitions_cfg["cleanup.policy"] == "delete"
    assert asyncio.run(topic_config(f"pe.{run}"))["retention.ms"] == str(30 * 24 * 3600 * 1000)


def test_existing_topic_with_other_partition_count_is_reported(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from topics.catalog import TopicSpec

    name = topic_factory("drift", partitions=2)
    spec = TopicSpec(name, "lead_id", "input", "test", "test", 4, {})

    report = ensure_topics(kafka_bootstrap, [spec])

    assert report.created == []
    assert report.existing == [name]
    assert report.partition_mismatch == {name: (2, 4)}
    assert any("has 2 partitions, the catalog wants 4" in line for line in report.lines())


def test_topics_cli_creates_then_reports_existing(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4().hex[:8]
    for field in ("PRODUCT_EVENTS", "EMAIL_EVENTS", "CRM_EVENTS", "ACTIONS", "TRANSITIONS"):
        monkeypatch.setenv(f"NURTURE_TOPIC_{field}", f"cli.{field.lower()}.{run}")
    monkeypatch.setenv("NURTURE_TOPIC_DEAD_LETTER", f"cli.dead_letter.{run}")

    assert cli_main(["topics", "create", "--bootstrap", kafka_bootstrap]) == 0
    created = capsys.readouterr().out.splitlines()
    assert cli_main(["topics", "create", "--bootstrap", kafka_bootstrap]) == 0
    again = capsys.readouterr().out.splitlines()
    assert cli_main(["topics", "list", "--bootstrap", kafka_bootstrap]) == 0
    listed = capsys.readouterr().out.splitlines()

    assert len(created) == 6 and all(line.startswith("created  cli.") for line in created)
    assert len(again) == 6 and all(line.startswith("exists   cli.") for line in again)
    default = Settings.model_fields["topic_partitions"].default  # the CLI's own default (12)
    assert len(listed) == 6 and all(line.endswith(f"partitions={default}") for line in listed)


def test_produce_and_consume_in_a_group_with_committed_offsets(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("broker-group")
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for i in range(100):
                await producer.send(topic, f"v{i}".encode(), key=f"L-{i % 7}".encode())
            await producer.flush()
        finally:
            await producer.stop()
        records = await _consume(kafka_bootstrap, topic, 100, group=group)
        # a fresh consumer in the same group sees the committed positions
        probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
        await probe.start()
        try:
            committed = [await probe.committed(TopicPartition(topic, p)) for p in range(4)]
        finally:
            await probe.stop()
        return records, sum(c or 0 for c in committed)

    records, committed_total = asyncio.run(scenario())

    assert len(records) == 100
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(100))
    partitions_per_key: dict[bytes, set[int]] = {}
    for r in records:
        assert r.key is not None
        partitions_per_key.setdefault(r.key, set()).add(r.partition)
    assert len(partitions_per_key) == 7
    assert all(len(p) == 1 for p in partitions_per_key.values())  # one key, one partition
    assert committed_total == 100


def test_transactions_commit_and_abort(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """Faust's exactly_once rests on these: transactional writes + offsets in the transaction."""
    source = topic_factory("tx-src")
    sink = topic_factory("tx-sink")
    group = f"g-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[bytes], int | None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
        )
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(10):
                    await producer.send(sink, f"committed-{i}".encode(), key=b"L-1")
                await producer.send_offsets_to_transaction({TopicPartition(source, 0): 42}, group)
            await producer.begin_transaction()
            for i in range(5):
                await producer.send(sink, f"aborted-{i}".encode(), key=b"L-1")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send(sink, b"committed-last", key=b"L-1")
        finally:
            await producer.stop()
        records = await _consume(
            kafka_bootstrap, sink, 11, isolation_level="read_committed", settle_polls=2
        )
        probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
        await probe.start()
        try:
            offset = await probe.committed(TopicPartition(source, 0))
        finally:
            await probe.stop()
        return [r.value for r in records if r.value is not None], offset

    values, offset = asyncio.run(scenario())

    assert values == [f"committed-{i}".encode() for i in range(10)] + [b"committed-last"]
    assert offset == 42


def _kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        subprocess.run(["bash", str(REPO / "deploy" / "install-system-deps.sh")], check=True)
        path = shutil.which("kcat")
    assert path is not None, "kcat is not installed (deploy/install-system-deps.sh)"
    return path


def test_kcat_produces_a_contract_event_that_aiokafka_reads(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    kcat = _kcat()
    topic = topic_factory("kcat-product-events")
    event = {
        "event_id": "e-kcat-1",
        "type": "page.viewed",
        "lead_id": "L-42",
        "account_id": "A-7",
        "occurred_at": "2026-11-20T10:00:00Z",
        "properties": {"page": "pricing"},
    }
    line = "L-42\t" + json.dumps(event, separators=(",", ":")) + "\n"
    subprocess.run(
        [kcat, "-b", kafka_bootstrap, "-t", topic, "-P", "-K", "\t", "-X", "acks=all"],
        input=line.encode(),
        check=True,
        timeout=60,
    )

    [record] = asyncio.run(_consume(kafka_bootstrap, topic, 1, settle_polls=1))

    assert record.key == b"L-42"
    assert record.value is not None
    assert json.loads(record.value) == event

    # and the other way round: kcat reads what a Python producer wrote, key and value intact
    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b'{"event_id":"e-py-1"}', key=b"L-42")
        finally:
            await producer.stop()

    asyncio.run(produce())
    fmt = ["-f", "%k|%s\\n"]
    out = subprocess.run(
        [kcat, "-b", kafka_bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q", *fmt],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert sorted(out.splitlines()) == sorted(
        ["L-42|" + json.dumps(event, separators=(",", ":")), 'L-42|{"event_id":"e-py-1"}']
    )


FAUST_APP = """
import os

import faust

app = faust.App(
    os.environ["APP_ID"],
    broker="kafka://" + os.environ["BOOTSTRAP"],
    processing_guarantee="exactly_once",
    store="memory://",
    web_enabled=False,
    topic_partitions=4,
    topic_replication_factor=1,
)
source = app.topic(os.environ["SOURCE"], value_serializer="raw")
sink = app.topic(os.environ["SINK"], value_serializer="raw")
counts = app.Table("counts", default=int, partitions=4)


@app.agent(source)
async def forward(stream):
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=value + b"!")
"""


def test_faust_exactly_once_worker_runs_on_this_broker(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """The pinned broker version works with faust-streaming's transactional (EOS) mode."""
    import os
    import sys

    source, sink = topic_factory("eos-src"), topic_factory("eos-sink")
    (tmp_path / "eos_app.py").write_text(FAUST_APP)
    env = dict(
        os.environ,
        APP_ID=f"eos-{uuid.uuid4().hex[:8]}",
        BOOTSTRAP=kafka_bootstrap,
        SOURCE=source,
        SINK=sink,
        PYTHONPATH=str(tmp_path),
    )
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "eos_app", "worker", "-l", "info"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        async def scenario() -> list[ConsumerRecord[bytes, bytes]]:
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                for i in range(40):
                    await producer.send(source, f"m{i}".encode(), key=f"L-{i % 5}".encode())
                await producer.flush()
            finally:
                await producer.stop()
            return await _consume(
                kafka_bootstrap, sink, 40, isolation_level="read_committed", timeout=120
            )

        records = asyncio.run(scenario())
        alive = worker.poll() is None
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    text = log.read_text(errors="replace")
    assert alive, f"faust worker died:\n{text[-3000:]}"
    assert sorted(r.value for r in records if r.value is not None) == sorted(
        f"m{i}!".encode() for i in range(40)
    ), text[-3000:]
    assert "transactional producers" in text  # the worker really ran in EOS mode


def test_local_broker_that_dies_on_start_reports_its_log() -> None:
    """A broker whose port is taken exits at start; start() fails fast with the log tail."""
    import socket

    from stream.kafka_local import KafkaStartError, LocalKafka

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broken = LocalKafka(port=taken.getsockname()[1], ready_timeout=60)
        started = time.monotonic()
        with pytest.raises(KafkaStartError) as info:
            broken.start()
        elapsed = time.monotonic() - started
    message = str(info.value)
    assert "exited with code" in message
    assert "Address already in use" in message  # the broker's own error, from the log tail
    assert elapsed < 60  # noticed the exit, did not wait for the ready deadline
    assert not broken.running
    assert broken.data_dir is None  # temp dir removed
