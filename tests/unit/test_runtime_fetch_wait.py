"""The worker's fetch wait: ``NURTURE_FETCH_MAX_WAIT_MS`` reaches the aiokafka consumer that
Faust's consumer thread builds (Faust itself hard-codes 1,500 ms). aiokafka keeps one fetch in
flight per broker, so a partition drained while a long poll for the others is out waits for that
poll: the fetch wait bounds the event-to-action latency at low input rates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream.app import create_app
from stream.settings import Settings

FAUST_FIXED_WAIT_MS = 1500


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers="127.0.0.1:9",  # never connected: the app is not started
        data_dir=tmp_path / "data",
        topic_partitions=2,
        accounts_enabled=False,
        **fields,
    )


async def _built_wait(
    settings: Settings, thread_class: Any = None, field: str = "_fetch_max_wait_ms"
) -> int:
    """The fetch wait (or another ``field``) of the aiokafka consumer the app's consumer
    thread (or ``thread_class``) builds; the app is created inside the event loop, as the
    worker does."""
    app: Any = create_app(settings)
    thread = app.consumer._thread if thread_class is None else thread_class(app.consumer)
    consumer = thread._create_worker_consumer(app.transport)
    try:
        return int(getattr(consumer, field))
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("fields", "want_ms"),
    [
        pytest.param({}, Settings.model_fields["fetch_max_wait_ms"].default, id="default"),
        pytest.param({"fetch_max_wait_ms": 25}, 25, id="configured"),
    ],
)
def test_fetch_wait_reaches_the_worker_consumer(
    tmp_path: Path, fields: dict[str, Any], want_ms: int
) -> None:
    assert asyncio.run(_built_wait(_settings(tmp_path, **fields))) == want_ms


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param({}, Settings.model_fields["fetch_min_bytes"].default, id="default"),
        pytest.param({"fetch_min_bytes": 1}, 1, id="configured"),
    ],
)
def test_fetch_minimum_reaches_the_worker_consumer(
    tmp_path: Path, fields: dict[str, Any], want: int
) -> None:
    """aiokafka's 1 byte answered a fetch at every message: the worker waits for 64 KB or
    the fetch wait, whichever comes first."""
    got = asyncio.run(_built_wait(_settings(tmp_path, **fields), field="_fetch_min_bytes"))
    assert got == want
    assert Settings.model_fields["fetch_min_bytes"].default > 1


def test_faust_alone_would_wait_its_fixed_fetch_wait(tmp_path: Path) -> None:
    """Why the override: Faust's own consumer thread builds the consumer with 1,500 ms."""
    settings = _settings(tmp_path, fetch_max_wait_ms=25)
    plain = faust_aiokafka.AIOKafkaConsumerThread
    assert asyncio.run(_built_wait(settings, plain)) == FAUST_FIXED_WAIT_MS


def test_a_fetch_wait_of_zero_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        _settings(tmp_path, fetch_max_wait_ms=0)


async def _built_linger(settings: Settings) -> float:
    """The linger (seconds) of the aiokafka producer that the app's Faust producer builds."""
    app: Any = create_app(settings)
    producer = app.producer._new_producer()
    try:
        return float(producer._message_accumulator._linger_time)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("fields", "want_s"),
    [
        pytest.param({}, 0.005, id="default"),
        pytest.param({"producer_linger_ms": 1}, 0.001, id="configured"),
        pytest.param({"producer_linger_ms": 0}, 0.0, id="none"),
    ],
)
def test_producer_linger_reaches_the_worker_producer(
    tmp_path: Path, fields: dict[str, Any], want_s: float
) -> None:
    assert asyncio.run(_built_linger(_settings(tmp_path, **fields))) == pytest.approx(want_s)
