"""The report consumer's facts on disk: per-lead attribution facts and read offsets in RocksDB.

A :class:`RocksStore` is a :class:`stream.report.facts.LeadStore`: a lead the report changes
is kept in a small dirty map until :meth:`RocksStore.flush`, which writes the dirty leads, the
offsets read so far and the record counts in one RocksDB ``WriteBatch`` (atomic), then forgets
them. Memory is bounded by one batch of records, whatever the number of leads; a restarted
consumer resumes from the stored offsets with the facts that go with them.

Keys (raw bytes): ``L<lead_id>`` a lead's facts (JSON, see :func:`encode_lead`);
``O<topic>\\x00<partition>`` the next offset to read; ``Mcounts`` ``[transitions, actions]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Options, Rdict, WriteBatch

from stream.report.facts import Entry, LeadFacts

LEAD = b"L"
OFFSET = b"O"
COUNTS = b"Mcounts"


def encode_lead(lead: LeadFacts) -> bytes:
    entries = [[e.program, e.at, e.cohort, e.tier, e.group, e.converted] for e in lead.entries]
    credited = sorted(lead.credited_sends) if lead.credited_sends else None
    return orjson.dumps([entries, lead.opportunities, lead.sends, credited])


def decode_lead(raw: bytes) -> LeadFacts:
    entries, opportunities, sends, credited = orjson.loads(raw)
    lead = LeadFacts()
    lead.entries = [
        Entry(program=p, at=at, cohort=c, tier=t, group=g, converted=conv)
        for p, at, c, t, g, conv in entries
    ]
    lead.opportunities = opportunities
    lead.sends = [(p, t, at) for p, t, at in sends] if sends is not None else None
    lead.credited_sends = {(p, t) for p, t in credited} if credited is not None else None
    return lead


def _offset_key(topic: str, partition: int) -> bytes:
    return OFFSET + topic.encode() + b"\x00" + str(partition).encode()


class RocksStore:
    """Per-lead facts and read offsets of the report consumer, in one RocksDB at ``path``."""

    def __init__(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.db: Any = Rdict(str(path), options=options)  # raw mode: bytes keys and values
        self._dirty: dict[str, LeadFacts] = {}

    # --- LeadStore ----------------------------------------------------------------------------
    def get(self, lead_id: str) -> LeadFacts | None:
        lead = self._dirty.get(lead_id)
        if lead is not None:
            return lead
        raw = self.db.get(LEAD + lead_id.encode())
        return None if raw is None else decode_lead(raw)

    def put(self, lead_id: str, lead: LeadFacts) -> None:
        self._dirty[lead_id] = lead

    def values(self) -> Iterator[LeadFacts]:
        """Every lead: the unflushed ones, then those on disk (decoded one at a time)."""
        yield from list(self._dirty.values())
        dirty = {LEAD + k.encode() for k in self._dirty}
        for key, raw in self.db.items(from_key=LEAD):
            if not key.startswith(LEAD):
                break
            if key not in dirty:
                yield decode_lead(raw)

    # --- offsets and counts -------------------------------------------------------------------
    def offsets(self) -> dict[tuple[str, int], int]:
        """``(topic, partition) -> next offset to read``, as last flushed."""
        out: dict[tuple[str, int], int] = {}
        for key, raw in self.db.items(from_key=OFFSET):
            if not key.startswith(OFFSET):
                break
            topic, _, partition = key[1:].rpartition(b"\x00")
            out[(topic.decode(), int(partition))] = int(raw)
        return out

    def counts(self) -> tuple[int, int]:
        """``(transitions, actions)`` records read, as last flushed."""
        raw = self.db.get(COUNTS)
        if raw is None:
            return 0, 0
        transitions, actions = orjson.loads(raw)
        return int(transitions), int(actions)

    def pending(self) -> int:
        return len(self._dirty)

    def flush(self, offsets: Mapping[tuple[str, int], int], counts: tuple[int, int]) -> int:
        """Write the changed leads, ``offsets`` (next offset per topic partition) and
        ``counts`` atomically; returns the number of leads written."""
        batch = WriteBatch(raw_mode=True)
        for lead_id, lead in self._dirty.items():
            batch.put(LEAD + lead_id.encode(), encode_lead(lead))
        for (topic, partition), offset in offsets.items():
            batch.put(_offset_key(topic, partition), str(offset).encode())
        batch.put(COUNTS, orjson.dumps(list(counts)))
        self.db.write(batch)
        n = len(self._dirty)
        self._dirty.clear()
        return n

    def close(self) -> None:
        self.db.close()


def leads_on_disk(store: RocksStore) -> int:
    """Number of leads stored (a full key scan; for tests and the log)."""
    n = 0
    for key in store.db.keys(from_key=LEAD):
        if not key.startswith(LEAD):
            break
        n += 1
    return n


__all__ = ["RocksStore", "decode_lead", "encode_lead", "leads_on_disk"]
