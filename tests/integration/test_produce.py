"""topics.produce against the real broker: catalog topic, lead_id key, what the worker parses."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from stream.core.model import rfc3339_to_ms
from topics.catalog import INPUT_TOPIC_OF_SOURCE, TopicSpec
from topics.events import EventEnvelope
from topics.parse import parse_event
from topics.produce import produce

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
#: (type, properties, the topic DESIGN.md section 2 puts it on)
SAMPLES: list[tuple[str, dict[str, Any], str]] = [
    ("page.viewed", {"page": "pricing"}, "nurture.product-events"),
    ("usage.reported", {"metric": "seats", "value": 8, "limit": 10}, "nurture.product-events"),
    ("email.opened", {}, "nurture.email-events"),
    ("email.replied", {"intent": "demo_request"}, "nurture.email-events"),
    ("lead.created", {"company_size": 120, "country": "DE"}, "nurture.crm-events"),
    ("nps.submitted", {"score": 9}, "nurture.crm-events"),
]


async def _read_ours(
    bootstrap: str, topics: list[str], prefix: bytes, count: int
) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(r for r in records if (r.key or b"").startswith(prefix))
    finally:
        await consumer.stop()
    return got


async def _scenario(bootstrap: str, run: str) -> None:
    events = [
        EventEnvelope(
            event_id=f"{run}-{i}",
            type=event_type,
            lead_id=f"L-{run}-{i % 2}",
            occurred_at=T0 + timedelta(minutes=i),
            properties=properties,
        )
        for i, (event_type, properties, _topic) in enumerate(SAMPLES)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = {e.event_id: await produce(producer, e) for e in events}
        bad = EventEnvelope(
            event_id=f"{run}-bad",
            type="usage.reported",
            lead_id=f"L-{run}-0",
            occurred_at=T0,
            properties={"metric": "cpu", "value": 1},
        )
        with pytest.raises(ValidationError):
            await produce(producer, bad)
    finally:
        await producer.stop()

    records = await _read_ours(
        bootstrap, sorted(INPUT_TOPIC_OF_SOURCE.values()), f"L-{run}".encode(), len(events)
    )
    assert len(records) == len(events)  # and not the bad one
    by_id = {}
    for record in records:
        parsed = parse_event(record.value or b"", key=record.key, key_required=True)
        by_id[parsed.event_id] = (record, parsed)
    partitions: dict[str, set[int]] = {}
    for event, (_type, _props, topic) in zip(events, SAMPLES, strict=True):
        record, parsed = by_id[event.event_id]
        meta = sent[event.event_id]
        assert record.topic == meta.topic == topic
        assert (record.partition, record.offset) == (meta.partition, meta.offset)
        assert record.key == event.lead_id.encode()
        assert (parsed.type, parsed.lead_id) == (event.type, event.lead_id)
        assert parsed.at == rfc3339_to_ms(event.occurred_at.isoformat())
        assert parsed.properties == event.properties
        partitions.setdefault(event.lead_id, set()).add(record.partition)
    # keyed by lead_id: each lead's events share one partition number across the input topics
    assert all(len(p) == 1 for p in partitions.values()), partitions


def test_produce_sends_each_event_to_its_catalog_topic_keyed_by_lead(
    kafka_bootstrap: str, catalog_topics: tuple[TopicSpec, ...]
) -> None:
    assert set(INPUT_TOPIC_OF_SOURCE.values()) <= {spec.name for spec in catalog_topics}
    asyncio.run(_scenario(kafka_bootstrap, uuid.uuid4().hex[:8]))
