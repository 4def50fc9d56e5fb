"""The table value of one lead: the core's encoded state plus the runtime's delivery metadata.

Layout (bytes): ``b"N2"`` + 8-byte signed big-endian next due time of the lead's timers (-1:
none) + 4-byte big-endian length of the state + the state bytes of
:func:`stream.core.state.encode_state` + a JSON metadata block::

    [applied, outbox, history]
    applied = {"<topic>:<partition>": <highest input offset applied to this lead>}
    outbox  = [[topic, partition, offset, [transition JSON...], [action JSON...]], ...]
    history = [transition record, ...]  (the last HISTORY_KEEP, for GET /leads/{lead_id})

Why: at-least-once processing re-delivers inputs after a crash, but the lead's state (local
RocksDB, changelog) may already include them. A re-delivered input whose offset is ``<=``
``applied`` is not stepped again (that would double-count); instead the outputs it produced,
kept in the outbox until the input's offset is committed, are sent again. So no output is
lost and a replayed input never changes the state twice; duplicates carry the same action_id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"N2"
_HEAD = struct.Struct(">qI")  # next due (ms, -1 none), state length
_START = len(MAGIC) + _HEAD.size
OUTBOX_CAP = 512
HISTORY_KEEP = 10

OutboxEntry = list[Any]  # [topic, partition, offset, [str...], [str...]]


@dataclass(slots=True)
class LeadRecord:
    state: Any  # LeadState | None
    applied: dict[str, int] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)
    history: list[Any] = field(default_factory=list)


def encode_record(state_bytes: bytes, rec: LeadRecord, next_due: int | None) -> bytes:
    meta = orjson.dumps([rec.applied, rec.outbox, rec.history])
    head = _HEAD.pack(-1 if next_due is None else next_due, len(state_bytes))
    return b"".join((MAGIC, head, state_bytes, meta))


def peek_next_due(raw: bytes) -> int | None:
    """The lead's earliest pending timer, from the header alone (no state decode): rebuilding
    a partition's due index reads only this."""
    if raw[:2] != MAGIC:
        return None
    due, _n = _HEAD.unpack_from(raw, 2)
    return None if due < 0 else int(due)


def peek_state_bytes(raw: bytes) -> bytes:
    """The encoded state alone (no metadata decode): counting a partition's program occupancy
    reads only this (with :func:`stream.core.state.peek_program`)."""
    if raw[:2] != MAGIC:
        return raw
    _due, n = _HEAD.unpack_from(raw, 2)
    return raw[_START : _START + n]


def split_record(raw: bytes) -> tuple[bytes, dict[str, int], list[OutboxEntry], list[Any]]:
    """(state bytes, applied, outbox, history). A value without the header is a bare state."""
    if raw[:2] != MAGIC:
        return raw, {}, [], []
    _due, n = _HEAD.unpack_from(raw, 2)
    state_bytes = raw[_START : _START + n]
    meta = orjson.loads(raw[_START + n :])
    return state_bytes, meta[0], meta[1], meta[2] if len(meta) > 2 else []
