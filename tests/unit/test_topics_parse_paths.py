"""parse_event's two paths give one answer: a message of the envelope's shape decodes in C
(msgspec), anything else is checked field by field after ``orjson.loads``. The oracle is the
field-by-field path alone (the parser as it was before the fast path)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import topics.parse as parse
from topics.parse import InvalidEvent, parse_event

VALID_TIMES = [
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00.123Z",
    "2026-11-20T11:30:00+01:30",
    "2024-02-29T23:59:59.999Z",
]
BAD_TIMES = [
    "2026-02-29T10:00:00Z",  # not a leap year
    "2026-13-01T00:00:00Z",
    "2026-11-20T24:00:00Z",
    "2026-11-20 10:00:00Z",
    "2026-11-20T10:00:00",
    "+026-11-20T10:00:00Z",
    "2026-11-20T10:00:0aZ",
    "",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
IDS = st.text(min_size=1, max_size=6)
BAD_IDS = st.one_of(st.just(""), st.just("x" * 201), st.integers(), st.none(), st.lists(IDS))
# (type, valid properties)
TYPED = st.sampled_from(
    [
        ("page.viewed", {"page": "pricing"}),
        ("session.started", None),
        ("usage.reported", {"metric": "seats", "value": 8, "limit": 10}),
        ("lead.created", {"company_size": 50, "industry": "saas"}),
        ("feature.used", {"feature": "api"}),
    ]
)
BAD_PROPERTIES = st.one_of(
    st.just({"metric": "seats", "value": "8", "limit": 10}),
    st.dictionaries(st.sampled_from(["page", "metric", "value", "x"]), SCALARS, max_size=3),
    st.lists(SCALARS, max_size=2),
    st.text(max_size=4),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A message whose every field is usually valid; each can be wrong, missing or odd."""

    def pick(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(good if draw(st.integers(0, 9)) < 8 else bad)

    event_type, props = draw(TYPED)
    fields: dict[str, Any] = {
        "event_id": pick(IDS, BAD_IDS),
        "type": pick(st.just(event_type), st.one_of(st.just("nope.unknown"), BAD_IDS)),
        "lead_id": pick(IDS, BAD_IDS),
        "occurred_at": pick(st.sampled_from(VALID_TIMES), st.sampled_from(BAD_TIMES)),
        "account_id": pick(st.one_of(st.none(), IDS), st.one_of(st.just("a" * 201), SCALARS)),
        "properties": pick(st.just(props), BAD_PROPERTIES),
        "extra": draw(SCALARS),
    }
    doc = {k: v for k, v in fields.items() if draw(st.integers(0, 19)) > 0}  # rarely missing
    raw = json.dumps(doc).encode()  # big integers and Infinity too (orjson.dumps refuses)
    cut = draw(st.integers(0, 19))
    if cut == 1:
        raw = raw[: len(raw) // 2]  # truncated
    elif cut == 2:
        raw = b"[" + raw + b"]"  # not an object
    return raw


def _outcome(raw: bytes) -> object:
    try:
        return parse_event(raw)
    except InvalidEvent as exc:
        return (exc.reason, exc.detail)


def _field_by_field(raw: bytes) -> object:
    with mock.patch.object(parse, "_fast_fields", lambda raw: None):
        return _outcome(raw)


@settings(max_examples=600, deadline=None)
@given(messages())
def test_fast_path_answers_as_the_field_by_field_path(raw: bytes) -> None:
    assert _outcome(raw) == _field_by_field(raw)


def test_a_well_formed_message_takes_the_fast_path() -> None:
    raw = json.dumps(
        {
            "event_id": "e-1",
            "type": "page.viewed",
            "lead_id": "L-42",
            "occurred_at": "2026-11-20T10:00:00Z",
            "properties": {"page": "pricing", "n": 2**70},
        }
    ).encode()
    fields = parse._fast_fields(raw)
    assert fields is not None and fields[5]["n"] == float(2**70)  # orjson's reading of it
    assert _outcome(raw) == _field_by_field(raw)
