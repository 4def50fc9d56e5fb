"""Per-lead state: a frozen record plus a compact, exact binary codec (orjson, positional).

Everything a rule needs lives here and every collection is bounded by the config (signal
windows, score contributions, sessions, features, usage samples, send times, seen event ids),
so one lead's state stays a few hundred bytes whatever its history.
"""

from __future__ import annotations

from sys import intern
from typing import NamedTuple

import orjson

from stream.core.model import Timer

CODEC_VERSION = 1


class LeadState(NamedTuple):
    """Immutable (a NamedTuple: cheap to build, which the hot path does once per step)."""

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
    send_times: tuple[int, ...] = ()  # send clock of recent emails (frequency cap)
    seen_ids: str = ""  # ring of recent event ids: "\x1fid\x1fid\x1f" (one object: compact)
    timers: tuple[Timer, ...] = ()  # pending timers, sorted by due
    timer_seq: int = 0  # makes timer ids unique per lead for its life


SEP = "\x1f"


def seen_contains(seen: str, event_id: str) -> bool:
    """Is ``event_id`` in the dedupe ring?"""
    return bool(seen) and f"{SEP}{event_id}{SEP}" in seen


def seen_add(seen: str, event_id: str, ring: int) -> str:
    """The ring with ``event_id`` appended, oldest ids dropped beyond ``ring`` entries."""
    seen = f"{seen}{event_id}{SEP}" if seen else f"{SEP}{event_id}{SEP}"
    extra = seen.count(SEP) - 1 - ring
    while extra > 0:
        seen = seen[seen.index(SEP, 1) :]
        extra -= 1
    return seen


def seen_list(state: LeadState) -> list[str]:
    """The event ids in the dedupe ring, oldest first."""
    return state.seen_ids.split(SEP)[1:-1] if state.seen_ids else []


def encode_state(state: LeadState) -> bytes:
    """Compact bytes for RocksDB / the changelog. ``decode_state(encode_state(s)) == s``."""
    timers = [(t.due, t.timer_id, t.kind) for t in state.timers]
    fields: list[object] = list(state[:-2])
    fields[30] = state.seen_ids.split(SEP)[1:-1] if state.seen_ids else []  # no JSON escapes
    return orjson.dumps([CODEC_VERSION, *fields, timers, state.timer_seq])


# positions in the encoded list (the codec version comes first)
_PROGRAM = LeadState._fields.index("program") + 1
_PROGRAM_STATE = LeadState._fields.index("program_state") + 1


def peek_program(data: bytes) -> tuple[str | None, str | None]:
    """``(program, program_state)`` of encoded state, without building the LeadState (the
    runtime counts program occupancy over a whole partition with it). Raises ValueError on
    bytes :func:`encode_state` did not write."""
    v = orjson.loads(data)
    if not isinstance(v, list) or not v or v[0] != CODEC_VERSION or len(v) != 34:
        raise ValueError("not an encoded LeadState (unknown codec version or shape)")
    program, program_state = v[_PROGRAM], v[_PROGRAM_STATE]
    return (
        program if isinstance(program, str) else None,
        program_state if isinstance(program_state, str) else None,
    )


def _i(x: str | None) -> str | None:
    return None if x is None else intern(x)


def decode_state(data: bytes) -> LeadState:
    """Inverse of :func:`encode_state`. Raises ValueError on bytes it did not write.

    Small-vocabulary strings (tiers, programs, states, signal kinds, features, metrics, timer
    kinds) are interned, so a million decoded leads share them instead of holding copies."""
    v = orjson.loads(data)
    if not isinstance(v, list) or not v or v[0] != CODEC_VERSION or len(v) != 34:
        raise ValueError("not an encoded LeadState (unknown codec version or shape)")
    return LeadState(
        v[1],
        v[2],
        intern(v[3]),
        v[4],
        _i(v[5]),
        _i(v[6]),
        _i(v[7]),
        v[8],
        _i(v[9]),
        v[10],
        _i(v[11]),
        v[12],
        v[13],
        v[14],
        v[15],
        v[16],
        v[17],
        v[18],
        _i(v[19]),
        tuple((a, p) for a, p in v[20]),
        tuple((a, intern(k)) for a, k in v[21]),
        v[22],
        v[23],
        tuple(map(intern, v[24])),
        tuple(v[25]),
        tuple((intern(n), intern(j)) for n, j in v[26]),
        tuple((intern(m), x) for m, x in v[27]),
        tuple((intern(m), a, x) for m, a, x in v[28]),
        tuple(v[29]),
        tuple(v[30]),
        f"{SEP}{SEP.join(v[31])}{SEP}" if v[31] else "",
        tuple(Timer(d, i, intern(k)) for d, i, k in v[32]),
        v[33],
    )
