"""Input events: the envelope and the v1 event types with their properties (DESIGN.md section 2).

These pydantic models are the contract and the JSON Schema source. The worker's hot path validates
with :mod:`topics.parse`, which applies the same property models in strict mode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


class Properties(BaseModel):
    """Base for per-type properties: strict JSON types, unknown keys kept (forward compatible)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class NoProperties(Properties):
    """Types that carry no properties of their own."""


def _aware_instant(text: str) -> str:
    """An RFC 3339 string that names a real instant (the pattern alone admits month 13)."""
    datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return text


#: an RFC 3339 timestamp with offset carried inside ``properties`` (a JSON string on the wire)
Rfc3339 = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
        json_schema_extra={"format": "date-time"},
    ),
    AfterValidator(_aware_instant),
]


def _iana_zone(name: str) -> str:
    """A time zone the IANA tz database knows (``Europe/Berlin``, ``America/New_York``, ``UTC``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name[:64]!r}") from None
    return name


#: an IANA time zone name; an unknown one is rejected at the boundary (dead letter)
TimeZoneName = Annotated[
    str,
    Field(min_length=1, max_length=64, json_schema_extra={"format": "iana-time-zone"}),
    AfterValidator(_iana_zone),
]

Role = Literal["admin", "end_user", "executive"]
Severity = Literal["low", "normal", "high", "urgent"]
BillingStatus = Literal["active", "past_due", "payment_failed", "suspended"]
AdvocacyKind = Literal["review", "reference", "case_study"]


# --- CRM --------------------------------------------------------------------------------------
class LeadProfile(Properties):
    company_size: int | None = Field(None, ge=0, le=10_000_000, description="employees")
    industry: str | None = None
    country: str | None = None
    tech_stack: list[str] | None = None
    source: str | None = None
    title: str | None = None
    role: Role | None = Field(None, description="the person's role in a customer account")
    timezone: TimeZoneName | None = Field(
        None, description="IANA time zone of the lead (quiet hours); default from rules.yaml"
    )


class SubscriptionConverted(Properties):
    plan: str | None = None
    seats_limit: float | None = Field(None, ge=0)
    api_calls_limit: float | None = Field(None, ge=0)
    data_volume_limit: float | None = Field(None, ge=0)
    renewal_at: Rfc3339 | None = Field(None, description="end of the first term")
    term_months: int | None = Field(None, ge=1, le=120)
    arr: float | None = Field(None, ge=0, description="annual recurring revenue")


class SubscriptionRenewed(Properties):
    renewal_at: Rfc3339 = Field(description="end of the new term")
    arr: float | None = Field(None, ge=0, description="annual recurring revenue of the new term")


class SubscriptionCancelled(Properties):
    reason: str | None = None


class SubscriptionUpgraded(Properties):
    plan: str | None = None
    limits: dict[str, float] | None = Field(
        None, description="new limits by metric, e.g. {'seats': 50}"
    )
    arr: float | None = Field(None, ge=0, description="annual recurring revenue after it")


class TicketOpened(Properties):
    ticket_id: str | None = Field(
        None, min_length=1, max_length=200, description="the event_id stands in when absent"
    )
    severity: Severity | None = None


class TicketResolved(Properties):
    ticket_id: str = Field(min_length=1, max_length=200)
    severity: Severity | None = None


class NpsSubmitted(Properties):
    score: int = Field(ge=0, le=10)


class CsatSubmitted(Properties):
    score: int = Field(ge=1, le=5)


class BillingStatusChanged(Properties):
    status: BillingStatus


class OutcomeAchieved(Properties):
    outcome: str = Field(min_length=1, max_length=200)


class AdvocacyCompleted(Properties):
    kind: AdvocacyKind


# --- product ----------------------------------------------------------------------------------
class FeatureUsed(Properties):
    feature: str = Field(min_length=1)


class PageViewed(Properties):
    page: str = Field(
        min_length=1,
        description="pricing | comparison | alternatives | case_study | roi_calculator | ...",
    )


class ContentDownloaded(Properties):
    content: str = Field(min_length=1, description="case_study | comparison | whitepaper | ...")


class UpgradeCtaClicked(Properties):
    tier: str | None = None


UsageMetric = Literal["seats", "api_calls", "data_volume", "records", "integrations"]


class UsageReported(Properties):
    metric: UsageMetric
    value: float = Field(ge=0)
    limit: float | None = Field(None, ge=0)


# --- email ------------------------------------------------------------------------------------
class EmailSent(Properties):
    action_id: str | None = None
    template: str | None = None


class EmailReplied(Properties):
    intent: Literal["demo_request", "positive", "negative", "other"] = "other"


class EmailBounced(Properties):
    hard: bool = False


Source = Literal["crm", "product", "email"]

#: event type -> (source system, properties model)
EVENT_TYPES: dict[str, tuple[Source, type[Properties]]] = {
    "lead.created": ("crm", LeadProfile),
    "lead.updated": ("crm", LeadProfile),
    "sales.contacted": ("crm", NoProperties),
    "opportunity.created": ("crm", NoProperties),
    "subscription.converted": ("crm", SubscriptionConverted),
    "subscription.upgraded": ("crm", SubscriptionUpgraded),
    "expansion.requested": ("crm", NoProperties),
    "subscription.renewed": ("crm", SubscriptionRenewed),
    "subscription.cancelled": ("crm", SubscriptionCancelled),
    "support.ticket_opened": ("crm", TicketOpened),
    "support.ticket_resolved": ("crm", TicketResolved),
    "nps.submitted": ("crm", NpsSubmitted),
    "csat.submitted": ("crm", CsatSubmitted),
    "billing.status_changed": ("crm", BillingStatusChanged),
    "outcome.achieved": ("crm", OutcomeAchieved),
    "advocacy.completed": ("crm", AdvocacyCompleted),
    "trial.started": ("product", NoProperties),
    "session.started": ("product", NoProperties),
    "feature.used": ("product", FeatureUsed),
    "activation.completed": ("product", NoProperties),
    "page.viewed": ("product", PageViewed),
    "content.downloaded": ("product", ContentDownloaded),
    "roi_calculator.completed": ("product", NoProperties),
    "upgrade_cta.clicked": ("product", UpgradeCtaClicked),
    "usage.reported": ("product", UsageReported),
    "email.sent": ("email", EmailSent),
    "email.opened": ("email", NoProperties),
    "email.clicked": ("email", NoProperties),
    "email.replied": ("email", EmailReplied),
    "email.bounced": ("email", EmailBounced),
    "email.unsubscribed": ("email", NoProperties),
    "walkthrough.booked": ("email", NoProperties),
}


class EventEnvelope(BaseModel):
    """Every input message. ``event_id`` is the idempotency key; ``occurred_at`` is event time."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    event_id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100, description="one of the v1 event types")
    lead_id: str = Field(min_length=1, max_length=200, description="also the Kafka message key")
    account_id: str | None = Field(None, max_length=200)
    occurred_at: AwareDatetime = Field(description="RFC 3339 with offset; event time")
    properties: dict[str, Any] = Field(default_factory=dict)


def source_of(event_type: str) -> Source:
    """Which system (and so which input topic) an event type comes from."""
    return EVENT_TYPES[event_type][0]
