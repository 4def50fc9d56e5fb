"""Delivery retries: backoff between tries, success after failures, the last error after N;
and producing ``email.sent`` waits out a broker outage instead of exiting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from stream.core.config import load_config
from stream.sender.service import Sender
from stream.sender.templates import Templates
from stream.sender.transports import Outbound, Transport, TransportError
from stream.settings import load_settings


class Flaky(Transport):
    """Fails the first ``failures`` deliveries, then accepts (a stand-in at the seam)."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    async def deliver(self, message: Outbound) -> None:
        self.calls.append(message.action_id)
        if len(self.calls) <= self.failures:
            raise TransportError(f"refused #{len(self.calls)}")


def _sender(tmp_path: Path, transport: Transport, attempts: int) -> Sender:
    settings = load_settings(
        data_dir=tmp_path,
        sender_max_attempts=attempts,
        sender_backoff_seconds=0.01,
        sender_backoff_max_seconds=0.02,
    )
    return Sender(settings, Templates(load_config()), transport)


OUT = Outbound("a-1", "L-1", "t", "f@x", "L-1@x", "s", "b", {})


def test_success_after_failures_within_attempts(tmp_path: Path) -> None:
    flaky = Flaky(failures=2)
    sender = _sender(tmp_path, flaky, attempts=3)
    assert asyncio.run(sender._attempt(OUT)) is None
    assert flaky.calls == ["a-1"] * 3
    assert sender.metrics.failures._value.get() == 2


def test_every_attempt_failing_returns_the_last_error(tmp_path: Path) -> None:
    flaky = Flaky(failures=10)
    sender = _sender(tmp_path, flaky, attempts=4)
    error = asyncio.run(sender._attempt(OUT))
    assert isinstance(error, TransportError) and "refused #4" in str(error)
    assert len(flaky.calls) == 4


class OutageProducer:
    """A producer stand-in whose first ``failures`` sends raise what aiokafka raises while the
    broker restarts; it records the records it accepted."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0
        self.accepted: list[tuple[str, bytes | None, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.accepted.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_email_sent_is_published_after_a_broker_outage(tmp_path: Path) -> None:
    sender = _sender(tmp_path, Flaky(failures=0), attempts=1)
    producer = OutageProducer([KafkaTimeoutError(), NotLeaderForPartitionError()])
    sender._producer = producer
    action = {"action_id": "a-9", "lead_id": "L-9", "template": "t"}
    sender.store.mark("a-9", "delivered", "t", 1_000)
    asyncio.run(sender._publish_sent(action, 1_000))
    asyncio.run(sender.settle())
    assert producer.calls == 3  # two failed rounds, then the record
    assert [orjson.loads(v)["event_id"] for _t, _k, v in producer.accepted] == ["sent-a-9"]
    assert sender.metrics.produce_retries._value.get() == 2
    marker = sender.store.marker("a-9")
    assert marker is not None and marker.published
    sender.store.close()
