"""The boundary: raw Kafka bytes -> a validated core :class:`~stream.core.model.Event`.

This is the worker's and replay's hot path. A well-formed message decodes in C into a msgspec
``Struct`` of the envelope's shape (its ``properties`` kept as raw JSON, then read by
``orjson.loads`` as before, so their values are exactly what they were); anything that does not
fit that shape goes through the checks one by one after ``orjson.loads``, which name the fault.
Both paths end in the same checks (type, time, account id, properties, key), so a message gets
the same answer and the same reason either way (a property test holds the two together).
Properties are validated with the contract's pydantic models in strict mode only for the types
that carry properties. It accepts exactly what :class:`topics.events.EventEnvelope` plus the
per-type models accept (a test holds the two together). A rejected message raises
:class:`InvalidEvent` with a short machine ``reason`` and a human ``detail``; the caller sends it
to the dead-letter topic with :func:`dead_letter_record`.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
from pydantic import ValidationError

from stream.core.model import Event, rfc3339_to_ms
from topics.events import EVENT_TYPES, NoProperties

MAX_MESSAGE_BYTES = 64 * 1024
MAX_ID_LENGTH = 200
# RFC 3339 date-time with a mandatory offset (Z or +hh:mm); fractional seconds optional.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


class InvalidEvent(ValueError):
    """A message that cannot be processed. ``reason`` is a stable code, ``detail`` explains."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _require_str(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise InvalidEvent(f"missing_field:{name}", f"required field {name!r} is missing")
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"bad_field:{name}", f"{name!r} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH and name != "occurred_at":
        raise InvalidEvent(f"bad_field:{name}", f"{name!r} is longer than {MAX_ID_LENGTH}")
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _fast_utc(text: str) -> int | None:
    """``YYYY-MM-DDTHH:MM:SS[.fff]Z``, the form nearly every producer sends; else None.

    The shape is checked here (``datetime.fromisoformat`` alone accepts more than RFC 3339);
    the digits, the calendar and the ranges by ``fromisoformat``, in C."""
    n = len(text)
    if (n != 20 and n != 24) or text[-1] != "Z" or text[10] != "T":
        return None
    if text[4] != "-" or text[7] != "-" or text[13] != ":" or text[16] != ":":
        return None
    if n == 24 and text[19] != ".":
        return None
    if not (text[:4].isdigit() and text[5:7].isdigit() and text[8:10].isdigit()):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment - _EPOCH) // _ONE_MS


def _parse_time(text: str) -> int:
    fast = _fast_utc(text)
    if fast is not None:
        return fast
    if not _RFC3339.match(text):
        raise InvalidEvent(
            "bad_occurred_at", f"occurred_at {text[:64]!r} is not RFC 3339 with an offset"
        )
    try:
        return rfc3339_to_ms(text)
    except ValueError as exc:
        raise InvalidEvent("bad_occurred_at", f"occurred_at {text[:64]!r}: {exc}") from None


def _check_properties(event_type: str, props: Any) -> dict[str, Any]:
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise InvalidEvent(f"bad_properties:{event_type}", "properties must be a JSON object")
    model = EVENT_TYPES[event_type][1]
    if model is not NoProperties:
        try:
            model.__pydantic_validator__.validate_python(props)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "properties"
            raise InvalidEvent(
                f"bad_properties:{event_type}", f"properties.{where}: {first['msg']}"
            ) from None
    return props


class _Envelope(msgspec.Struct, gc=False):
    """The envelope's shape, for the fast path of :func:`parse_event`."""

    event_id: str
    type: str
    lead_id: str
    occurred_at: str
    account_id: str | None = None
    properties: msgspec.Raw = msgspec.Raw(b"null")


_ENVELOPE = msgspec.json.Decoder(_Envelope)
#: event_id, type, lead_id, occurred_at, account_id, properties (parsed JSON, not yet checked)
_Fields = tuple[str, str, str, str, Any, Any]


def _fast_fields(raw: bytes) -> _Fields | None:
    """The fields of a message of the envelope's shape, or None (then :func:`_checked_fields`
    says what is wrong, or accepts what this path does not know)."""
    try:
        env = _ENVELOPE.decode(raw)
    except msgspec.DecodeError:
        return None
    return _envelope_fields(env)


def _envelope_fields(env: _Envelope) -> _Fields | None:
    try:
        props = orjson.loads(bytes(env.properties))
    except orjson.JSONDecodeError:
        return None
    event_id, event_type, lead_id = env.event_id, env.type, env.lead_id
    if not (event_id and event_type and lead_id and env.occurred_at):
        return None
    if max(len(event_id), len(event_type), len(lead_id)) > MAX_ID_LENGTH:
        return None
    return event_id, event_type, lead_id, env.occurred_at, env.account_id, props


def _checked_fields(raw: bytes) -> _Fields:
    """The fields after ``orjson.loads``, one check at a time (the first fault is raised)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    return (
        _require_str(doc, "event_id"),
        _require_str(doc, "type"),
        _require_str(doc, "lead_id"),
        _require_str(doc, "occurred_at"),
        doc.get("account_id"),
        doc.get("properties"),
    )


def parse_event(raw: bytes, key: bytes | None = None, *, key_required: bool = False) -> Event:
    """Validate one message. ``key`` (if given) must equal ``lead_id``; a missing key is
    rejected only when ``key_required`` (the worker requires it, replay has no keys)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidEvent("too_large", f"{len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    fields = _fast_fields(raw)
    if fields is None:
        fields = _checked_fields(raw)
    return _event(fields, key, key_required)


class _Forward(msgspec.Struct, gc=False):
    """The shape of a forward envelope of the account topic (see
    :func:`stream.runtime.accounts.forward_envelope`)."""

    src: tuple[str, int, int]
    event: _Envelope


_FORWARD = msgspec.json.Decoder(_Forward)


def parse_forward(value: bytes) -> tuple[Event, tuple[str, int, int]] | None:
    """The event of a forward envelope (``{"src": [topic, partition, offset], "event": ...}``)
    and its origin, decoded in one pass, with :func:`parse_event`'s checks and answers; None
    if ``value`` does not have that shape (then open the envelope and parse its event)."""
    try:
        forward = _FORWARD.decode(value)
    except msgspec.DecodeError:
        return None
    fields = _envelope_fields(forward.event)
    if fields is None:
        return None
    return _event(fields, None, False), forward.src


def _event(fields: _Fields, key: bytes | None, key_required: bool) -> Event:
    """The checks every path ends in (type, time, account id, properties, key)."""
    event_id, event_type, lead_id, occurred_at, account_id, properties = fields
    if event_type not in EVENT_TYPES:
        raise InvalidEvent("unknown_type", f"event type {event_type[:100]!r} is not in v1")
    at = _parse_time(occurred_at)
    if account_id is not None and (not isinstance(account_id, str) or len(account_id) > 200):
        raise InvalidEvent("bad_field:account_id", "account_id must be a string or null")
    props = _check_properties(event_type, properties)
    if key is None:
        if key_required:
            raise InvalidEvent("missing_key", "message has no key; producers key by lead_id")
    elif key != lead_id.encode():
        raise InvalidEvent(
            "key_mismatch", f"message key {key[:80]!r} differs from lead_id {lead_id[:80]!r}"
        )
    return Event(
        event_id=event_id,
        type=event_type,
        lead_id=lead_id,
        at=at,
        account_id=account_id,
        properties=props,
    )


def dead_letter_record(
    raw: bytes,
    key: bytes | None,
    reason: str,
    detail: str = "",
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    at: str | None = None,
) -> bytes:
    """The JSON value written to ``nurture.dead-letter`` (see topics.outputs.DeadLetterRecord)."""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    record: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": base64.b64encode(key).decode() if key is not None else None,
        "original": base64.b64encode(raw).decode(),
        "original_text": text,
    }
    if at is not None:
        record["dead_lettered_at"] = at
    return orjson.dumps(record)
