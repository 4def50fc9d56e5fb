"""``produce(producer, event)``: send one contract event the way the worker expects it.

For Python services that feed the input topics: the event is checked against its type's
properties model (what the worker would dead-letter fails here, before sending), serialised as
one UTF-8 JSON object, keyed by ``lead_id`` (so a lead's events share a partition across the
co-partitioned input topics) and sent to the input topic of its source system (catalog).

    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=..., acks="all", enable_idempotence=True)
    await producer.start()
    await produce(producer, EventEnvelope(event_id="e-1", type="page.viewed", lead_id="L-42",
                                          occurred_at=now, properties={"page": "pricing"}))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from topics.catalog import INPUT_TOPIC_OF_SOURCE
from topics.events import EVENT_TYPES, EventEnvelope


class Producer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any: ...


def topic_for(event: EventEnvelope, topics: Mapping[str, str] | None = None) -> str:
    """The input topic of ``event``'s source (``topics``: source -> name, for renamed topics)."""
    if event.type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event.type!r}; known: {sorted(EVENT_TYPES)}")
    source = EVENT_TYPES[event.type][0]
    return (topics or INPUT_TOPIC_OF_SOURCE)[source]


def serialise(event: EventEnvelope) -> tuple[bytes, bytes]:
    """(key, value) of ``event``; raises ``pydantic.ValidationError`` on bad properties."""
    if event.type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event.type!r}; known: {sorted(EVENT_TYPES)}")
    properties_model = EVENT_TYPES[event.type][1]
    properties_model.model_validate(event.model_dump(mode="json")["properties"])
    value = event.model_dump_json(exclude_none=True).encode()
    return event.lead_id.encode(), value


async def produce(
    producer: Producer, event: EventEnvelope, *, topics: Mapping[str, str] | None = None
) -> Any:
    """Send ``event`` keyed by its ``lead_id`` to its input topic; return the record metadata."""
    key, value = serialise(event)
    return await producer.send_and_wait(topic_for(event, topics), value=value, key=key)
