"""The topic catalog: names, keys, partitioning and retention of every topic the product uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["input", "output", "internal"]

DEFAULT_PARTITIONS = 12
WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    role: Role
    written_by: str
    read_by: str
    partitions: int = DEFAULT_PARTITIONS
    config: dict[str, str] = field(default_factory=dict)


def catalog(
    *,
    product_events: str = "nurture.product-events",
    email_events: str = "nurture.email-events",
    crm_events: str = "nurture.crm-events",
    actions: str = "nurture.actions",
    transitions: str = "nurture.transitions",
    dead_letter: str = "nurture.dead-letter",
    partitions: int = DEFAULT_PARTITIONS,
) -> tuple[TopicSpec, ...]:
    """The contract's topics (DESIGN.md section 2). Input topics share one partition count."""
    retain_30d = {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    retain_90d = {"retention.ms": str(90 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
    return (
        TopicSpec(
            product_events, "lead_id", "input", "product services", "worker", partitions, retain_30d
        ),
        TopicSpec(
            email_events, "lead_id", "input", "email sender", "worker", partitions, retain_30d
        ),
        TopicSpec(
            crm_events,
            "lead_id",
            "input",
            "CRM / billing / support sync",
            "worker",
            partitions,
            retain_30d,
        ),
        TopicSpec(
            actions,
            "lead_id",
            "output",
            "worker",
            "email sender, sales and CSM task creators",
            partitions,
            retain_30d,
        ),
        TopicSpec(
            transitions, "lead_id", "output", "worker", "analytics, audit", partitions, retain_90d
        ),
        TopicSpec(dead_letter, "original key", "output", "worker", "ops", partitions, retain_90d),
    )


def changelog_config() -> dict[str, str]:
    """Settings for table changelog topics: compacted, so the latest state per lead is kept."""
    return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


#: event source system (``topics.events.EVENT_TYPES``) -> the default topic carrying its events
INPUT_TOPIC_OF_SOURCE: dict[str, str] = {
    "product": "nurture.product-events",
    "email": "nurture.email-events",
    "crm": "nurture.crm-events",
}
