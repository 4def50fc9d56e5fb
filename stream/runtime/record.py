"""The table value of one lead: the core's encoded state plus the runtime's delivery metadata.

Layout (bytes): ``b"N3"`` + 8-byte signed big-endian next due time of the lead's timers (-1:
none) + 4-byte big-endian length of the state + the state bytes of
:func:`stream.core.state.encode_state` + a MessagePack metadata block (msgspec)::

    [applied, outbox, history]
    applied = {"<topic>:<partition>": <highest input offset applied to this lead>}
    outbox  = [[topic, partition, offset, [transition JSON bytes...], [action JSON bytes...]]...]
    history = [[at ms, reason, caused_by, from_program, from_state, to_program, to_state,
                kind, from_value, to_value], ...]  (trailing nulls left out; the last
                HISTORY_KEEP transitions, for GET /leads/{lead_id})

The outputs sit in the outbox as the bytes that were sent (MessagePack ``bin``: no escaping, no
second JSON encoding), and the history keeps only what the lead view shows (no signals, no
account health, event time as an integer). The previous layout (``b"N2"``: a JSON metadata
block, outputs as JSON strings inside it, full transition records as history, ~2.4 kB per lead
of the worker bench against ~0.35 kB of state) is still read, so a worker upgraded in place
keeps its stores; it writes the new layout from the lead's next change on.

Why applied offsets and kept outputs: at-least-once processing re-delivers inputs after a
crash, but the lead's state (local RocksDB, changelog) may already include them. A
re-delivered input whose offset is ``<=`` ``applied`` is not stepped again (that would
double-count); instead the outputs it produced, kept until the input's offset is committed,
are sent again. So no output is lost and a replayed input never changes the state twice;
duplicates carry the same action_id.

Where the outputs are kept: in the partition's journal entry of their batch
(:mod:`stream.runtime.journal`, deleted once the consumer has committed past it), so a lead's
record does not carry its last batch's outputs until it is touched again (they were ~1 kB of
the ~1.2 kB record of a lead of the worker bench). A lead's own ``outbox`` is used only for a
lead whose outputs of one batch are too large for a journal value, and for records of the
earlier layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from stream.core.model import ms_to_rfc3339, rfc3339_to_ms

MAGIC = b"N3"
LEGACY_MAGIC = b"N2"  # JSON metadata (read only)
_HEAD = struct.Struct(">qI")  # next due (ms, -1 none), state length
_START = len(MAGIC) + _HEAD.size
OUTBOX_CAP = 512
HISTORY_KEEP = 10


class OutboxEntry(msgspec.Struct, array_like=True, gc=False):
    """The outputs one lead produced in the batch anchored at ``topic``/``partition``/
    ``offset``, as sent."""

    topic: str
    partition: int
    offset: int
    transitions: list[bytes]
    actions: list[bytes]


class HistoryEntry(msgspec.Struct, array_like=True, frozen=True, gc=False, omit_defaults=True):
    """One past transition as the lead (or account) view shows it. A lead's names programs
    and states; an account's (``kind`` set) names the values of its kind."""

    at: int
    reason: str
    caused_by: str
    from_program: str | None = None
    from_state: str | None = None
    to_program: str | None = None
    to_state: str | None = None
    kind: str | None = None
    from_value: str | None = None
    to_value: str | None = None

    def view(self) -> dict[str, Any]:
        if self.kind is None:
            head = {
                "from_program": self.from_program,
                "from_state": self.from_state,
                "to_program": self.to_program,
                "to_state": self.to_state,
            }
        else:
            head = {"kind": self.kind, "from_value": self.from_value, "to_value": self.to_value}
        return {
            **head,
            "reason": self.reason,
            "caused_by": self.caused_by,
            "at": ms_to_rfc3339(self.at),
        }


def history_entry(t: Any) -> HistoryEntry:
    """The history entry of a lead :class:`stream.core.model.Transition` or an
    :class:`stream.accounts.model.AccountTransition`."""
    kind = getattr(t, "kind", None)
    if kind is None:
        return HistoryEntry(
            t.at, t.reason, t.caused_by, t.from_program, t.from_state, t.to_program, t.to_state
        )
    return HistoryEntry(
        t.at, t.reason, t.caused_by, kind=kind, from_value=t.from_value, to_value=t.to_value
    )


@dataclass(slots=True)
class LeadRecord:
    state: Any  # LeadState | None
    applied: dict[str, int] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)


_META = tuple[dict[str, int], list[OutboxEntry], list[HistoryEntry]]
_encode_meta = msgspec.msgpack.Encoder().encode
_decode_meta = msgspec.msgpack.Decoder(_META).decode


def encode_record(state_bytes: bytes, rec: LeadRecord, next_due: int | None) -> bytes:
    meta = _encode_meta((rec.applied, rec.outbox, rec.history))
    head = _HEAD.pack(-1 if next_due is None else next_due, len(state_bytes))
    return b"".join((MAGIC, head, state_bytes, meta))


def _headed(raw: bytes) -> bool:
    magic = raw[:2]
    return magic in (MAGIC, LEGACY_MAGIC)


def peek_next_due(raw: bytes) -> int | None:
    """The lead's earliest pending timer, from the header alone (no state decode): rebuilding
    a partition's due index reads only this."""
    if not _headed(raw):
        return None
    due, _n = _HEAD.unpack_from(raw, 2)
    return None if due < 0 else int(due)


def peek_state_bytes(raw: bytes) -> bytes:
    """The encoded state alone (no metadata decode): counting a partition's program occupancy
    reads only this (with :func:`stream.core.state.peek_program`)."""
    if not _headed(raw):
        return raw
    _due, n = _HEAD.unpack_from(raw, 2)
    return raw[_START : _START + n]


def split_record(
    raw: bytes,
) -> tuple[bytes, dict[str, int], list[OutboxEntry], list[HistoryEntry]]:
    """(state bytes, applied, outbox, history). A value without the header is a bare state."""
    magic = raw[:2]
    if magic != MAGIC and magic != LEGACY_MAGIC:
        return raw, {}, [], []
    _due, n = _HEAD.unpack_from(raw, 2)
    state_bytes = raw[_START : _START + n]
    if magic == MAGIC:
        applied, outbox, history = _decode_meta(raw[_START + n :])
        return state_bytes, applied, outbox, history
    return (state_bytes, *_legacy_meta(raw[_START + n :]))


def _legacy_meta(
    block: bytes,
) -> tuple[dict[str, int], list[OutboxEntry], list[HistoryEntry]]:
    """The metadata of an ``N2`` record: ``[applied, outbox, history]`` in JSON, outputs as
    JSON strings, history as full transition records."""
    meta = orjson.loads(block)
    outbox = [
        OutboxEntry(topic, partition, offset, [s.encode() for s in trs], [s.encode() for s in acts])
        for topic, partition, offset, trs, acts in meta[1]
    ]
    history = [_legacy_history(doc) for doc in (meta[2] if len(meta) > 2 else [])]
    return meta[0], outbox, history


def _legacy_history(doc: dict[str, Any]) -> HistoryEntry:
    at = rfc3339_to_ms(doc["at"])
    if "kind" in doc:
        return HistoryEntry(
            at,
            doc["reason"],
            doc["caused_by"],
            kind=doc["kind"],
            from_value=doc.get("from_value"),
            to_value=doc.get("to_value"),
        )
    return HistoryEntry(
        at,
        doc["reason"],
        doc["caused_by"],
        doc.get("from_program"),
        doc.get("from_state"),
        doc.get("to_program"),
        doc.get("to_state"),
    )
