"""Per-lead state: a frozen record plus a compact, exact binary codec (orjson, positional).

Everything a rule needs lives here and every collection is bounded by the config (signal
windows, score contributions, sessions, features, usage samples, send times, seen event ids),
so one lead's state stays a few hundred bytes whatever its history.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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
    seen_ids: tuple[str, ...] = ()  # ring of recent event ids (dedupe)
    timers: tuple[Timer, ...] = ()  # pending timers, sorted by due
    timer_seq: int = 0  # makes timer ids unique per lead for its life


def encode_state(state: LeadState) -> bytes:
    """Compact bytes for RocksDB / the changelog. ``decode_state(encode_state(s)) == s``."""
    timers = [(t.due, t.timer_id, t.kind) for t in state.timers]
    return orjson.dumps([CODEC_VERSION, *state[:-2], timers, state.timer_seq])


def _pairs(items: list[Any]) -> tuple[Any, ...]:
    return tuple(tuple(x) for x in items)


def decode_state(data: bytes) -> LeadState:
    """Inverse of :func:`encode_state`. Raises ValueError on bytes it did not write."""
    v = orjson.loads(data)
    if not isinstance(v, list) or not v or v[0] != CODEC_VERSION or len(v) != 34:
        raise ValueError("not an encoded LeadState (unknown codec version or shape)")
    return LeadState(
        v[1],
        v[2],
        v[3],
        v[4],
        v[5],
        v[6],
        v[7],
        v[8],
        v[9],
        v[10],
        v[11],
        v[12],
        v[13],
        v[14],
        v[15],
        v[16],
        v[17],
        v[18],
        v[19],
        _pairs(v[20]),
        _pairs(v[21]),
        v[22],
        v[23],
        tuple(v[24]),
        tuple(v[25]),
        _pairs(v[26]),
        _pairs(v[27]),
        _pairs(v[28]),
        tuple(v[29]),
        tuple(v[30]),
        tuple(v[31]),
        tuple(Timer(d, i, k) for d, i, k in v[32]),
        v[33],
    )
