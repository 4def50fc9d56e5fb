"""What a batch of the worker is made of, and what it returns: the types shared by the
processors (:mod:`stream.runtime.processor`, :mod:`stream.runtime.accounts`) and the runner
(:mod:`stream.runtime.agent`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.core.model import Event
from stream.runtime.record import HistoryEntry, LeadRecord
from stream.runtime.timers import PartitionDue

NO_TIME = -(2**62)


class PartitionStore(Protocol):
    """Where lead records live, per partition (the Faust table's RocksDB, a dict in tests)."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]: ...


# (topic, partition) -> committed offset (the next offset a restarted consumer reads) or None
Committed = Callable[[str, int], "int | None"]


@dataclass(slots=True)
class Input:
    """One input message of a batch: an event, or an anchor-only message (a tick, or a
    message that failed validation; ``event`` is None then)."""

    topic: str
    offset: int
    event: Event | None = None


@dataclass(slots=True)
class BatchResult:
    """What one batch produced. ``transitions``/``actions`` are ``(lead key, JSON)`` to send;
    ``writes`` are the table writes (one per touched lead, plus journal entries; ``None``
    deletes a key)."""

    partition: int
    transitions: list[tuple[bytes, bytes]] = field(default_factory=list)
    actions: list[tuple[bytes, bytes]] = field(default_factory=list)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    transition_records: list[dict[str, Any]] = field(default_factory=list)
    action_records: list[dict[str, Any]] = field(default_factory=list)
    fired_lags_ms: list[int] = field(default_factory=list)  # stream time minus due, per timer
    failed: list[tuple[Input, str]] = field(default_factory=list)  # core errors: dead-letter
    replayed: int = 0  # outputs re-sent for a re-delivered anchor
    skipped: int = 0  # re-delivered inputs not stepped again
    stepped: int = 0  # events stepped through the core
    more_due: bool = False  # leads still due by stream time (fire_limit reached)
    stream_time: int = NO_TIME
    late: int = 0  # events stepped (not re-delivered ones) behind the partition's stream time
    late_first: tuple[str, int, int, int] | None = None  # (topic, offset, at, stream time)


class Pending:
    """Outputs of one lead in the current batch: records, their JSON, history entries of the
    transitions, timer lags. (A plain class: one is made per event and per fired lead, and a
    dataclass's default factories cost twice its ``__init__``.)"""

    __slots__ = (
        "action_records",
        "actions",
        "history",
        "lags",
        "transition_records",
        "transitions",
    )

    def __init__(self) -> None:
        self.transitions: list[bytes] = []
        self.transition_records: list[dict[str, Any]] = []
        self.actions: list[bytes] = []
        self.action_records: list[dict[str, Any]] = []
        self.history: list[HistoryEntry] = []
        self.lags: list[int] = []

    def extend(self, other: Pending) -> None:
        self.transitions += other.transitions
        self.transition_records += other.transition_records
        self.actions += other.actions
        self.action_records += other.action_records
        self.history += other.history
        self.lags += other.lags


class PartitionState:
    """What the processor keeps per partition: the hot-lead cache (dict order = LRU order),
    the due index, the journal and the stream time."""

    __slots__ = (
        "cache",
        "due",
        "journal",
        "journal_parts",
        "journal_topics",
        "pruned_at",
        "stream_time",
    )

    def __init__(self) -> None:
        self.cache: dict[str, LeadRecord] = {}
        self.due = PartitionDue()
        self.journal: dict[str, list[str]] = {}  # anchor "topic:offset" -> leads with outputs
        self.journal_parts: dict[str, int] = {}  # anchors whose outputs span further values
        # the topics of journal anchors (a handful), each with the highest anchor offset it had:
        # an input past it cannot be a re-delivered anchor (no journal lookup per input)
        self.journal_topics: dict[str, int] = {}
        self.pruned_at: tuple[int | None, ...] = ()  # committed offsets at the last prune
        self.stream_time = NO_TIME

    def note_anchor(self, topic: str, offset: int) -> None:
        if offset > self.journal_topics.get(topic, -1):
            self.journal_topics[topic] = offset


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def never_committed(topic: str, partition: int) -> int | None:
    return None
