"""The sender's per-record decisions, driven directly: a recording transport at the seam and a
recording producer in place of Kafka; each path shows it ran through the store and counters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.config import load_config
from stream.core.model import ms_to_rfc3339
from stream.sender.service import Sender
from stream.sender.store import Held
from stream.sender.templates import Templates
from stream.sender.transports import Outbound, Transport
from stream.settings import load_settings

NOW = 1_800_000_000_000


class Recording(Transport):
    name = "recording"

    def __init__(self) -> None:
        self.delivered: list[Outbound] = []

    async def deliver(self, message: Outbound) -> None:
        self.delivered.append(message)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, dict[str, Any]]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.sent.append((topic, key, orjson.loads(value)))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def action(**changes: Any) -> dict[str, Any]:
    base = {
        "action_id": "a-1",
        "lead_id": "L-1",
        "type": "send",
        "channel": "email",
        "program": "trial_nurture",
        "template": "trial_nurture.welcome",
        "reason": "trial.started",
        "context": {},
        "caused_by": "e-1",
        "at": "2026-11-20T10:00:00Z",
    }
    return {**base, **changes}


@pytest.fixture
def sender(tmp_path: Path) -> Sender:
    s = Sender(
        load_settings(data_dir=tmp_path, sender_recipient="{lead_id}@mail.test"),
        Templates(load_config()),
        Recording(),
        clock=lambda: NOW / 1000,
    )
    s._producer = Producer()
    return s


def run(sender: Sender, *records: dict[str, Any] | bytes) -> None:
    """Handle ``records`` as one batch, then settle it as the run loop does before committing."""

    async def go() -> None:
        for n, record in enumerate(records):
            raw = record if isinstance(record, bytes) else orjson.dumps(record)
            await sender.handle(raw, b"L-1", 0, n)
        await sender.settle()

    asyncio.run(go())


def test_send_is_delivered_recorded_and_announced_once(sender: Sender) -> None:
    run(sender, action(), action(), action(type="enroll", action_id="a-2"))
    transport: Any = sender.transport
    assert [m.action_id for m in transport.delivered] == ["a-1"]
    assert transport.delivered[0].recipient == "L-1@mail.test"
    marker = sender.store.marker("a-1")
    assert marker is not None and marker.status == "delivered" and marker.published
    producer: Any = sender._producer
    [(topic, key, event)] = producer.sent
    assert topic == sender.s.topic_email_events and key == b"L-1"
    assert event["type"] == "email.sent" and event["event_id"] == "sent-a-1"
    assert event["properties"] == {"action_id": "a-1", "template": "trial_nurture.welcome"}
    assert event["occurred_at"] == ms_to_rfc3339(NOW)
    outcomes = {
        s.labels["outcome"]: s.value for s in _samples(sender, "nurture_sender_actions_total")
    }
    assert outcomes == {"delivered": 1, "duplicate": 1, "ignored": 1}


def test_a_batch_is_published_flagged_and_fsynced_once_at_settle(sender: Sender) -> None:
    batch = [action(action_id=f"a-{n}") for n in range(4)]

    async def go() -> None:
        for n, record in enumerate(batch):
            await sender.handle(orjson.dumps(record), b"L-1", 0, n)
        # here a SIGKILL before the commit would strike: delivered, marked, not yet synced
        assert sender.store.syncs == 0
        marker = sender.store.marker("a-2")
        assert marker is not None and marker.status == "delivered" and not marker.published
        await sender.settle()

    asyncio.run(go())
    assert sender.store.syncs == 1  # one fsync for the four deliveries
    markers = [sender.store.marker(f"a-{n}") for n in range(4)]
    assert all(m is not None and m.published for m in markers)
    [syncs] = [s.value for s in _samples(sender, "nurture_sender_store_syncs_total")]
    assert syncs == 1
    run(sender, action(type="enroll", action_id="e-9"))  # nothing written: no fsync
    assert sender.store.syncs == 1


def test_sends_on_other_channels_are_ignored_unless_configured(tmp_path: Path) -> None:
    task = action(action_id="t-1", channel="csm_task", lead_id=None, account_id="A-1")
    for channels, delivered in (({"email"}, []), ({"email", "csm_task"}, ["t-1"])):
        s = Sender(
            load_settings(data_dir=tmp_path / "-".join(sorted(channels)), sender_channels=channels),
            Templates(load_config()),
            Recording(),
            clock=lambda: NOW / 1000,
        )
        s._producer = Producer()
        run(s, task)
        transport: Any = s.transport
        assert [m.action_id for m in transport.delivered] == delivered, channels
        outcomes = {
            o.labels["outcome"]: o.value for o in _samples(s, "nurture_sender_actions_total")
        }
        assert outcomes == ({"ignored": 1} if not delivered else {"delivered": 1})
        s.store.close()


def test_a_marker_without_its_email_sent_publishes_it_on_the_duplicate(sender: Sender) -> None:
    sender.store.mark("a-1", "delivered", "trial_nurture.welcome", NOW - 5)  # crash before publish
    run(sender, action())
    transport: Any = sender.transport
    producer: Any = sender._producer
    assert transport.delivered == []
    assert [e["properties"]["action_id"] for _t, _k, e in producer.sent] == ["a-1"]
    run(sender, action())
    assert len(producer.sent) == 1


def test_deliver_after_holds_in_the_store_until_released(sender: Sender) -> None:
    later = action(deliver_after=ms_to_rfc3339(NOW + 60_000))
    run(sender, later, later)
    transport: Any = sender.transport
    assert transport.delivered == [] and sender.store.is_held("a-1")
    [held] = sender.store.held()
    assert held.due == NOW + 60_000
    asyncio.run(sender.release(held))
    asyncio.run(sender.release(Held(held.due, held.action_id, held.raw)))  # a second release
    assert [m.action_id for m in transport.delivered] == ["a-1"]
    assert not sender.store.is_held("a-1")
    past = action(action_id="a-2", deliver_after=ms_to_rfc3339(NOW - 1))
    run(sender, past)
    assert [m.action_id for m in transport.delivered] == ["a-1", "a-2"]


def test_bad_records_and_unknown_templates_go_to_dead_letter(sender: Sender) -> None:
    run(sender, b"{not json", action(template="nope.nothing"), action(template="nope.nothing"))
    producer: Any = sender._producer
    reasons = [(t, e["reason"]) for t, _k, e in producer.sent]
    dl = sender.s.topic_dead_letter
    assert reasons == [(dl, "invalid_action"), (dl, "template_error")]
    marker = sender.store.marker("a-1")
    assert marker is not None and marker.status == "dead_lettered"
    transport: Any = sender.transport
    assert transport.delivered == []


def _samples(sender: Sender, name: str) -> list[Any]:
    return [
        s for metric in sender.metrics.registry.collect() for s in metric.samples if s.name == name
    ]
