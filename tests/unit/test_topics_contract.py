"""The contract as code: boundary parsing, its agreement with the pydantic models, schema drift."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stream.core.model import ms_to_rfc3339, rfc3339_to_ms
from topics.catalog import catalog
from topics.events import EVENT_TYPES
from topics.export import SCHEMA_DIR, all_schemas, render, typed_event_model
from topics.parse import MAX_MESSAGE_BYTES, InvalidEvent, dead_letter_record, parse_event

GOOD: dict[str, Any] = {
    "event_id": "e-1",
    "type": "page.viewed",
    "lead_id": "L-42",
    "account_id": "A-7",
    "occurred_at": "2026-11-20T10:00:00Z",
    "properties": {"page": "pricing"},
}


def _raw(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()


def test_design_example_parses_to_core_event() -> None:
    event = parse_event(_raw(), key=b"L-42", key_required=True)
    assert event.event_id == "e-1"
    assert event.lead_id == "L-42"
    assert event.type == "page.viewed"
    assert event.at == rfc3339_to_ms("2026-11-20T10:00:00+00:00")
    assert event.properties == {"page": "pricing"}


def test_offsets_are_normalised_to_the_same_instant() -> None:
    a = parse_event(_raw(occurred_at="2026-11-20T11:30:00+01:30"))
    b = parse_event(_raw(occurred_at="2026-11-20T10:00:00.000Z"))
    assert a.at == b.at


BAD: list[tuple[str, bytes, str]] = [
    ("not json", b"{not json", "invalid_json"),
    ("not utf-8", b"\xff\xfe{}", "invalid_json"),
    ("a list", b"[1, 2]", "not_an_object"),
    ("missing lead_id", _raw(lead_id=_DROP), "missing_field:lead_id"),
    ("missing event_id", _raw(event_id=_DROP), "missing_field:event_id"),
    ("missing occurred_at", _raw(occurred_at=_DROP), "missing_field:occurred_at"),
    ("lead_id a number", _raw(lead_id=42), "bad_field:lead_id"),
    ("empty type", _raw(type=""), "bad_field:type"),
    ("unknown type", _raw(type="page.exploded"), "unknown_type"),
    ("no offset", _raw(occurred_at="2026-11-20T10:00:00"), "bad_occurred_at"),
    ("date only", _raw(occurred_at="2026-11-20"), "bad_occurred_at"),
    ("not a date", _raw(occurred_at="yesterday"), "bad_occurred_at"),
    ("month 13", _raw(occurred_at="2026-13-20T10:00:00Z"), "bad_occurred_at"),
    ("properties a list", _raw(properties=[1]), "bad_properties:page.viewed"),
    ("page missing", _raw(properties={}), "bad_properties:page.viewed"),
    ("page a number", _raw(properties={"page": 3}), "bad_properties:page.viewed"),
    (
        "usage metric unknown",
        _raw(type="usage.reported", properties={"metric": "cpu", "value": 1}),
        "bad_properties:usage.reported",
    ),
    (
        "usage value a string",
        _raw(type="usage.reported", properties={"metric": "seats", "value": "8"}),
        "bad_properties:usage.reported",
    ),
    (
        "nps out of range",
        _raw(type="nps.submitted", properties={"score": 11}),
        "bad_properties:nps.submitted",
    ),
    *[
        (f"{etype} {what}", _raw(type=etype, properties=props), f"bad_properties:{etype}")
        for etype, what, props in [
            ("support.ticket_opened", "severity unknown", {"severity": "critical"}),
            ("support.ticket_resolved", "ticket_id missing", {"severity": "urgent"}),
            ("billing.status_changed", "status unknown", {"status": "late"}),
            ("csat.submitted", "score 0", {"score": 0}),
            ("csat.submitted", "score 6", {"score": 6}),
            ("outcome.achieved", "outcome missing", {}),
            ("advocacy.completed", "kind unknown", {"kind": "tweet"}),
            ("lead.created", "role unknown", {"role": "owner"}),
            ("subscription.converted", "renewal_at no offset", {"renewal_at": "2027-11-20"}),
            (
                "subscription.converted",
                "renewal_at month 13",
                {"renewal_at": "2027-13-01T00:00:00Z"},
            ),
            ("subscription.converted", "term_months 0", {"term_months": 0}),
            ("subscription.converted", "arr negative", {"arr": -1.0}),
            ("subscription.renewed", "renewal_at missing", {"arr": 1000.0}),
        ]
    ],
    ("account_id an object", _raw(account_id={"id": 1}), "bad_field:account_id"),
    ("huge", _raw(properties={"page": "x" * MAX_MESSAGE_BYTES}), "too_large"),
]


@pytest.mark.parametrize(("case", "raw", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_messages_are_rejected_with_a_reason(case: str, raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    assert info.value.reason == reason
    assert info.value.detail


def test_key_must_match_lead_id() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(_raw(), key=b"L-43")
    assert info.value.reason == "key_mismatch"
    with pytest.raises(InvalidEvent) as info:
        parse_event(_raw(), key=None, key_required=True)
    assert info.value.reason == "missing_key"
    assert parse_event(_raw(), key=None).lead_id == "L-42"


# rejected before any per-type model applies (not JSON, not an object, no or unknown type)
BEFORE_MODELS = {"invalid_json", "not_an_object", "unknown_type", "bad_field:type"}
MODEL_CASES = [b for b in BAD[:-1] if b[2] not in BEFORE_MODELS]
PRE_MODEL_CASES = [b for b in BAD if b[2] in BEFORE_MODELS]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[b[0] for b in MODEL_CASES])
def test_models_reject_what_the_hot_path_rejects(case: tuple[str, bytes, str]) -> None:
    _name, raw, _reason = case
    model = typed_event_model(json.loads(raw)["type"])
    with pytest.raises(ValidationError):
        model.model_validate_json(raw)


@pytest.mark.parametrize("case", PRE_MODEL_CASES, ids=[b[0] for b in PRE_MODEL_CASES])
def test_no_model_applies_where_the_hot_path_rejects_first(case: tuple[str, bytes, str]) -> None:
    _name, raw, _reason = case
    with pytest.raises((ValueError, KeyError, TypeError)):
        typed_event_model(json.loads(raw)["type"])


def test_the_bad_cases_split_without_loss() -> None:
    assert len(MODEL_CASES) + len(PRE_MODEL_CASES) == len(BAD) - 1  # "huge" is size-only
    assert len(PRE_MODEL_CASES) == 5


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_type_accepts_a_minimal_valid_event(event_type: str) -> None:
    required: dict[str, dict[str, Any]] = {
        "feature.used": {"feature": "reports"},
        "page.viewed": {"page": "pricing"},
        "content.downloaded": {"content": "case_study"},
        "usage.reported": {"metric": "seats", "value": 8, "limit": 10},
        "nps.submitted": {"score": 9},
        "billing.status_changed": {"status": "past_due"},
        "subscription.renewed": {"renewal_at": "2027-11-20T00:00:00Z"},
        "support.ticket_resolved": {"ticket_id": "T-1"},
        "csat.submitted": {"score": 4},
        "outcome.achieved": {"outcome": "first_report_shared"},
        "advocacy.completed": {"kind": "review"},
    }
    raw = _raw(type=event_type, properties=required.get(event_type, {}))
    assert parse_event(raw).type == event_type
    typed_event_model(event_type).model_validate_json(raw)  # the model agrees


def test_dead_letter_record_keeps_the_original_bytes() -> None:
    import base64

    raw = b"\xff not json"
    record = orjson.loads(dead_letter_record(raw, b"L-1", "invalid_json", "boom", topic="t"))
    assert base64.b64decode(record["original"]) == raw
    assert base64.b64decode(record["key"]) == b"L-1"
    assert record["reason"] == "invalid_json"
    assert record["original_text"] is None


def test_exported_schemas_match_the_models() -> None:
    for name, doc in all_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{path} missing: run `nurture schemas export`"
        assert path.read_text() == render(doc), f"{path} is stale: run `nurture schemas export`"


def test_catalog_has_the_contract_topics_co_partitioned() -> None:
    specs = {s.name: s for s in catalog()}
    assert set(specs) == {
        "nurture.product-events",
        "nurture.email-events",
        "nurture.crm-events",
        "nurture.actions",
        "nurture.transitions",
        "nurture.dead-letter",
    }
    inputs = [s for s in specs.values() if s.role == "input"]
    assert len({s.partitions for s in inputs}) == 1


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T10:00:00Z",
        "1970-01-01T00:00:00Z",
        "2024-02-29T23:59:59.999Z",
        "2000-03-01T00:00:00.001Z",
        "1999-12-31T12:34:56Z",
        "2100-02-28T01:02:03.450Z",
    ],
)
def test_fast_utc_path_equals_the_datetime_parser(text: str) -> None:
    assert parse_event(_raw(occurred_at=text)).at == rfc3339_to_ms(text)


@pytest.mark.parametrize(
    "text", ["2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-20T24:00:00Z"]
)
def test_impossible_dates_are_rejected(text: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(_raw(occurred_at=text))
    assert info.value.reason == "bad_occurred_at"


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_fast_utc_path_agrees_on_any_instant(moment: datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert parse_event(_raw(occurred_at=text)).at == rfc3339_to_ms(text)


@given(st.integers(min_value=0, max_value=7_000_000_000_000))
def test_ms_rfc3339_round_trip(ms: int) -> None:
    assert rfc3339_to_ms(ms_to_rfc3339(ms)) == ms
