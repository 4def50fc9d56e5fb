"""The partition journal: per batch anchor, the leads with outputs and the outputs themselves.

A batch's outputs must survive until the consumer has committed past the batch's *anchor*
(its last input; :mod:`stream.runtime.processor`), so a re-delivered anchor can send them again.
They are kept in table values of the partition, next to the lead records:

* ``__batch__:<p>:<topic>:<offset>``: a :class:`JournalEntry`: the leads with outputs under
  the anchor (written again when it is re-delivered), the first part of the outputs, and the
  number of further parts;
* ``__batch__:<p>:<topic>:<offset>#<i>`` (i = 1 .. parts): the rest of the outputs.

Each value stays under ``max_bytes`` of outputs (it is a changelog record too: Kafka's default
message size limit is 1 MB). A lead whose outputs in one batch alone exceed that keeps them in
its own record's outbox (:class:`stream.runtime.record.OutboxEntry`). Entries are deleted,
with their parts, once the consumer has committed past the anchor. An entry of the earlier
layout (a JSON list of lead ids; the outputs in the leads' outboxes) is still read.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import orjson

JOURNAL_PREFIX = "__batch__:"
JOURNAL_OUTPUTS_MAX = 256 * 1024  # bytes of outputs per journal value


class LeadOutputs(msgspec.Struct, array_like=True, gc=False):
    """What one lead sent in a batch, as sent."""

    lead_id: str
    transitions: list[bytes]
    actions: list[bytes]

    def size(self) -> int:
        return sum(map(len, self.transitions)) + sum(map(len, self.actions))


class JournalEntry(msgspec.Struct, array_like=True, gc=False):
    """One journal value. The first part of an anchor lists its leads and counts the further
    parts; a further part carries outputs only. ``outputs`` None: an earlier layout's entry
    (the outputs are in the leads' outboxes)."""

    leads: list[str]
    outputs: list[LeadOutputs] | None = None
    parts: int = 0


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(JournalEntry).decode


def decode_journal(value: bytes) -> JournalEntry:
    """A journal value; the earlier layout (a JSON list of lead ids) reads as an entry without
    outputs."""
    if value[:1] == b"[":
        return JournalEntry(orjson.loads(value))
    return _decode(value)


def journal_key(partition: int, anchor: str, part: int = 0) -> bytes:
    """The table key of an anchor's journal value (``part`` > 0: a further part)."""
    key = f"{JOURNAL_PREFIX}{partition}:{anchor}"
    return (f"{key}#{part}" if part else key).encode()


def journal_anchor(key: bytes, partition: int) -> str | None:
    """The anchor of a first-part journal key of ``partition``, else None."""
    prefix = f"{JOURNAL_PREFIX}{partition}:".encode()
    if not key.startswith(prefix) or b"#" in key:
        return None
    return key[len(prefix) :].decode()


Read = Callable[[bytes], "bytes | None"]  # the partition's table get


def read_outputs(read: Read, partition: int, anchor: str) -> list[LeadOutputs]:
    """All outputs journaled under ``anchor`` (its parts in order)."""
    value = read(journal_key(partition, anchor))
    if value is None:
        return []
    entry = decode_journal(value)
    outputs = list(entry.outputs or [])
    for i in range(1, entry.parts + 1):
        more = read(journal_key(partition, anchor, i))
        if more is not None:
            outputs += decode_journal(more).outputs or []
    return outputs


def parts_of(read: Read, partition: int, anchor: str) -> int:
    value = read(journal_key(partition, anchor))
    return 0 if value is None else decode_journal(value).parts


def journal_writes(
    partition: int,
    anchor: str,
    leads: list[str],
    outputs: list[LeadOutputs],
    max_bytes: int,
    stale_parts: int = 0,
) -> tuple[dict[bytes, bytes | None], int, list[LeadOutputs]]:
    """The table writes journaling ``outputs`` under ``anchor`` (parts of at most
    ``max_bytes`` of outputs each; ``stale_parts``: parts an earlier value of the anchor had,
    deleted if not rewritten), the number of further parts, and the outputs of leads too
    large for any part (for their outboxes)."""
    chunks: list[list[LeadOutputs]] = [[]]
    spilled: list[LeadOutputs] = []
    filled = 0
    for out in outputs:
        size = out.size()
        if size > max_bytes:
            spilled.append(out)
            continue
        if filled + size > max_bytes and chunks[-1]:
            chunks.append([])
            filled = 0
        chunks[-1].append(out)
        filled += size
    parts = len(chunks) - 1
    writes: dict[bytes, bytes | None] = {
        journal_key(partition, anchor): _encode(JournalEntry(leads, chunks[0], parts))
    }
    for i in range(1, parts + 1):
        writes[journal_key(partition, anchor, i)] = _encode(JournalEntry([], chunks[i]))
    for i in range(parts + 1, stale_parts + 1):
        writes[journal_key(partition, anchor, i)] = None
    return writes, parts, spilled


def journal_deletes(partition: int, anchor: str, parts: int) -> dict[bytes, None]:
    """The deletes of an anchor's journal value and its parts."""
    return {journal_key(partition, anchor, i): None for i in range(parts + 1)}
