"""Deterministic ids and buckets: stable across processes (never Python's salted ``hash``)."""

from __future__ import annotations

from hashlib import blake2b


def action_id(lead_id: str, caused_by: str, action_type: str, key: str) -> str:
    """Same cause, same id: a hash of (lead, cause, action type, template or reason)."""
    raw = f"{lead_id}\x1f{caused_by}\x1f{action_type}\x1f{key}".encode()
    return blake2b(raw, digest_size=12).hexdigest()


def holdout_bucket(lead_id: str, program: str) -> float:
    """A stable percentile in [0, 100) for (lead, program); below ``holdout_pct`` = holdout."""
    digest = blake2b(f"{lead_id}\x1f{program}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % 10_000) / 100.0


def in_holdout(lead_id: str, program: str, holdout_pct: float) -> bool:
    return holdout_pct > 0 and holdout_bucket(lead_id, program) < holdout_pct
