"""Per-lead state: one ``msgspec.Struct`` record plus its compact, exact binary codec.

Everything a rule needs lives here and every collection is bounded by the config (signal
windows, score contributions, sessions, features, usage samples, send times, seen event ids),
so one lead's state stays a few hundred bytes whatever its history.

A state is a value. ``step`` never changes the state it is given: it works on a shallow copy
(:func:`working_copy`) that the rules change field by field, and returns that copy.
Sharing the fields between the two is safe because every field holds an immutable value
(scalars, strings, tuples). Code outside the core reads states and never assigns to them.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from sys import intern
from typing import Any

import msgspec
import orjson

from stream.core.model import Timer

#: stored layout: msgpack ``[CODEC_VERSION, [field, ...]]`` (fields in declaration order)
CODEC_VERSION = 2
_LEGACY_VERSION = 1  # orjson array of the NamedTuple era; still read (see _decode_v1)


class LeadState(msgspec.Struct, gc=False, array_like=True):
    """One lead. ``gc=False``: nothing in it can refer back to it (see the module docstring),
    so a million states cost the cycle collector nothing. ``array_like``: stored as a
    positional array (no field names per record); new fields go at the end with a default, so
    states stored before they existed still decode."""

    lead_id: str
    account_id: str | None = None
    # segmentation: ICP fit (gate) from firmographics
    icp_tier: str = "unknown"  # high | medium | out | unknown (no firmographics yet)
    company_size: int | None = None
    industry: str | None = None
    # the one program the lead is in, and its state inside it
    program: str | None = None
    program_state: str | None = None
    program_entered_at: int | None = None
    program_version: str | None = None  # config version the lead entered its program under
    holdout: bool = False  # holdout for the current program: tracked, never sent to
    reengage_context: str | None = None  # mql | trial, while in re_engagement
    # clocks (event time, epoch ms)
    watermark: int | None = None  # max event time seen for this lead
    last_activity_at: int | None = None  # product or email engagement
    last_movement_at: int | None = None  # buying-stage movement (MQL stale rule)
    # facts
    score: int = 0
    mql_reached: bool = False
    sales_contacted: bool = False
    customer: bool = False
    email_blocked: str | None = None  # unsubscribed | hard_bounced: no email ever again
    # bounded event-time windows
    score_events: tuple[tuple[int, int], ...] = ()  # (at, points), sorted by at
    signal_events: tuple[tuple[int, str], ...] = ()  # (at, kind), sorted by at
    # product engagement (trial)
    trial_start: int | None = None
    activated_at: int | None = None  # earliest activation event time
    features: tuple[str, ...] = ()  # distinct features used (bounded)
    sessions: tuple[int, ...] = ()  # earliest session times at/after trial start (bounded)
    checkpoints: tuple[tuple[str, str], ...] = ()  # (checkpoint, judged state) this trial
    # customer usage (expansion)
    limits: tuple[tuple[str, float], ...] = ()  # (metric, plan limit)
    usage: tuple[tuple[str, int, float], ...] = ()  # (metric, at, value) samples
    expansion_fired: tuple[str, ...] = ()  # threshold / milestone keys already acted on
    # journey-tool guarantees
    send_times: tuple[int, ...] = ()  # delivery times of recent emails (frequency cap)
    seen_ids: str = ""  # ring of recent event ids: "\x1fid\x1fid\x1f" (one object: compact)
    timers: tuple[Timer, ...] = ()  # pending timers, sorted (by due, then timer_id)
    timer_seq: int = 0  # makes timer ids unique per lead for its life
    timezone: str | None = None  # IANA name from lead.created/updated (quiet hours)

    # -- timers (kept sorted; the tuple is replaced only when it changes) ------------------
    def add_timer(self, kind: str, due: int, key: str | None = None) -> str:
        """Schedule a timer; its id is unique for the lead's life (kind, sequence, due)."""
        self.timer_seq += 1
        timer_id = f"{kind}@{key}" if key is not None else f"{kind}#{self.timer_seq}@{due}"
        timers = list(self.timers)  # already sorted: one insertion, not a sort
        insort(timers, Timer(due, timer_id, kind))
        self.timers = tuple(timers)
        return timer_id

    def cancel_timers(self, *kinds: str) -> None:
        """Drop the pending timers of these kinds."""
        if self.timers:
            kept = [t for t in self.timers if t.kind not in kinds]
            if len(kept) != len(self.timers):
                self.timers = tuple(kept)

    def cancel_prefix(self, prefix: str) -> None:
        """Drop the pending timers whose kind starts with ``prefix``."""
        if self.timers:
            kept = [t for t in self.timers if not t.kind.startswith(prefix)]
            if len(kept) != len(self.timers):
                self.timers = tuple(kept)

    def drop_timer(self, timer_id: str) -> None:
        """Drop the pending timer with this id (it fired)."""
        self.timers = tuple([t for t in self.timers if t.timer_id != timer_id])

    def timer_of(self, kind: str) -> Timer | None:
        """The pending timer of ``kind`` (the earliest), or None."""
        for t in self.timers:
            if t.kind == kind:
                return t
        return None


#: ``working_copy(state)``: a shallow copy for one step to change (the original stays as it was).
#: msgspec's C ``Struct.__copy__``: what ``copy.copy`` calls, minus its dispatch (not in the stubs)
working_copy: Callable[[LeadState], LeadState] = LeadState.__copy__  # type: ignore[attr-defined]

SEP = "\x1f"


def seen_contains(seen: str, event_id: str) -> bool:
    """Is ``event_id`` in the dedupe ring?"""
    return bool(seen) and f"{SEP}{event_id}{SEP}" in seen


def seen_add(seen: str, event_id: str, ring: int) -> str:
    """The ring with ``event_id`` appended, oldest ids dropped beyond ``ring`` entries."""
    if not seen:
        return f"{SEP}{event_id}{SEP}"
    while seen.count(SEP) > ring:  # full (n ids have n + 1 separators): drop the oldest
        seen = seen[seen.index(SEP, 1) :]
    return f"{seen}{event_id}{SEP}"


def seen_list(state: LeadState) -> list[str]:
    """The event ids in the dedupe ring, oldest first."""
    return state.seen_ids.split(SEP)[1:-1] if state.seen_ids else []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[int, LeadState])


def encode_state(state: LeadState) -> bytes:
    """Compact bytes for RocksDB / the changelog. ``decode_state(encode_state(s)) == s``."""
    return _encoder.encode((CODEC_VERSION, state))


def decode_state(data: bytes) -> LeadState:
    """Inverse of :func:`encode_state`. Raises ValueError on bytes it did not write.

    Also reads the version-1 layout (an orjson array) that stores written before the msgspec
    record still hold. Small-vocabulary strings (tiers, programs, states, signal kinds,
    features, metrics, timer kinds) are interned, so a million decoded leads share them
    instead of holding copies."""
    if data[:1] == b"[":
        return _intern_vocabulary(_decode_v1(data))
    try:
        version, state = _decoder.decode(data)
    except msgspec.DecodeError as err:
        raise ValueError(f"not an encoded LeadState: {err}") from None
    if version != CODEC_VERSION:
        raise ValueError(f"not an encoded LeadState (unknown codec version {version})")
    return _intern_vocabulary(state)


class _ProgramPeek(msgspec.Struct, array_like=True, gc=False):
    """The leading fields of an encoded :class:`LeadState`, up to ``program_state``; msgspec
    skips the rest of the array without building it."""

    lead_id: Any
    account_id: Any
    icp_tier: Any
    company_size: Any
    industry: Any
    program: str | None
    program_state: str | None


_peek_decoder = msgspec.msgpack.Decoder(tuple[int, _ProgramPeek])


def peek_program(data: bytes) -> tuple[str | None, str | None]:
    """``(program, program_state)`` of encoded state, without building the LeadState (the
    runtime counts program occupancy over a whole partition with it). Raises ValueError on
    bytes :func:`encode_state` did not write."""
    if data[:1] == b"[":
        v1 = _decode_v1(data)
        return v1.program, v1.program_state
    try:
        version, peek = _peek_decoder.decode(data)
    except msgspec.DecodeError as err:
        raise ValueError(f"not an encoded LeadState: {err}") from None
    if version != CODEC_VERSION:
        raise ValueError(f"not an encoded LeadState (unknown codec version {version})")
    return peek.program, peek.program_state


def _i(x: str | None) -> str | None:
    return None if x is None else intern(x)


def _intern_vocabulary(s: LeadState) -> LeadState:
    """Intern the small-vocabulary strings of a freshly decoded state (changed in place)."""
    s.icp_tier = intern(s.icp_tier)
    s.industry = _i(s.industry)
    s.program = _i(s.program)
    s.program_state = _i(s.program_state)
    s.program_version = _i(s.program_version)
    s.reengage_context = _i(s.reengage_context)
    s.email_blocked = _i(s.email_blocked)
    s.timezone = _i(s.timezone)
    if s.signal_events:
        s.signal_events = tuple([(a, intern(k)) for a, k in s.signal_events])
    if s.features:
        s.features = tuple(map(intern, s.features))
    if s.checkpoints:
        s.checkpoints = tuple([(intern(n), intern(j)) for n, j in s.checkpoints])
    if s.limits:
        s.limits = tuple([(intern(m), x) for m, x in s.limits])
    if s.usage:
        s.usage = tuple([(intern(m), a, x) for m, a, x in s.usage])
    if s.timers:
        s.timers = tuple([Timer(t.due, t.timer_id, intern(t.kind)) for t in s.timers])
    return s


def _decode_v1(data: bytes) -> LeadState:
    """The version-1 layout: ``[1, field, ...]`` in the same field order, with ``seen_ids`` as
    a list of ids and each timer as ``[due, timer_id, kind]``."""
    try:
        v: Any = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"not an encoded LeadState: {err}") from None
    if not isinstance(v, list) or len(v) != 34 or v[0] != _LEGACY_VERSION:
        raise ValueError("not an encoded LeadState (unknown codec version or shape)")
    doc = dict(zip(LeadState.__struct_fields__, v[1:], strict=False))
    ids = doc["seen_ids"]
    doc["seen_ids"] = f"{SEP}{SEP.join(ids)}{SEP}" if ids else ""
    try:
        return msgspec.convert(list(doc.values()), LeadState)
    except msgspec.ValidationError as err:
        raise ValueError(f"not an encoded LeadState: {err}") from None
