"""What the pipeline report (:mod:`stream.report.pipeline`) keeps per lead, and where: its
program entries, opportunities and first sends (:class:`LeadFacts`), in a :class:`LeadStore` (a
dict here; RocksDB in the report consumer, :mod:`stream.report.store`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Entry:
    program: str
    at: int
    cohort: str
    tier: str
    group: str
    converted: bool = False  # live bookkeeping for the metrics only


class LeadFacts:
    """One lead's facts. Containers are created on first use (most leads never convert)."""

    __slots__ = ("credited_sends", "entries", "opportunities", "sends")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.opportunities: list[int] | None = None
        # (program, template, first send time): a short list is smaller than a dict
        self.sends: list[tuple[str, str, int]] | None = None
        self.credited_sends: set[tuple[str, str]] | None = None  # live metrics only

    def opps(self) -> list[int]:
        return sorted(self.opportunities) if self.opportunities else []

    def sent(self, program: str, template: str) -> int | None:
        for p, t, at in self.sends or ():
            if p == program and t == template:
                return at
        return None

    def record_send(self, program: str, template: str, at: int) -> bool:
        """Keep the first send per (program, template); True if this pair is new."""
        if self.sends is None:
            self.sends = []
        for i, (p, t, first) in enumerate(self.sends):
            if p == program and t == template:
                if at < first:
                    self.sends[i] = (p, t, at)
                return False
        self.sends.append((program, template, at))
        return True


class LeadStore(Protocol):
    """Where a report keeps its per-lead facts. ``put`` after every change of a lead."""

    def get(self, lead_id: str) -> LeadFacts | None: ...

    def put(self, lead_id: str, lead: LeadFacts) -> None: ...

    def values(self) -> Iterable[LeadFacts]: ...


class DictStore(dict[str, "LeadFacts"]):
    """The in-memory store (a dict; ``put`` is a no-op after the first insert)."""

    def put(self, lead_id: str, lead: LeadFacts) -> None:
        self[lead_id] = lead
