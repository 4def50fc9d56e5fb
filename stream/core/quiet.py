"""Quiet hours in the lead's time zone: when may an email or in-app message reach the lead?

A send decided at an instant inside the lead's local quiet hours (by default 21:00-08:00, and
all of Saturday and Sunday when ``weekends`` is on) is held until the next allowed local
instant, its ``deliver_after``. Pure and deterministic: the answer depends on the instant (event
time, epoch ms), the IANA zone name and the rules only; the zone rules come from ``zoneinfo``
(the system tz database or the ``tzdata`` package), so a daylight-saving change moves the
local hours, not the logic. A lead without a zone (or with a zone the database does not know,
which the contract boundary already rejects) uses ``quiet_hours.default_timezone``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.core.config import QuietHoursRules

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_SATURDAY = 5


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The zone for an IANA name, or None when the tz database does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def is_valid_zone(name: str) -> bool:
    return zone(name) is not None


def local_time(at_ms: int, tz: ZoneInfo) -> datetime:
    """The local wall-clock time of an instant (exact to the millisecond)."""
    return (_EPOCH + at_ms * _ONE_MS).astimezone(tz)


def is_quiet(local: datetime, rules: QuietHoursRules) -> bool:
    """Is this local time inside quiet hours?"""
    return _quiet(local, rules.start_time, rules.end_time, rules.weekends)


def _quiet(local: datetime, start: time, end: time, weekends: bool) -> bool:
    if weekends and local.weekday() >= _SATURDAY:
        return True
    t = local.time()  # naive (datetime.time() drops the zone; timetz() would keep it)
    if start < end:  # a window inside one day, e.g. 12:00-14:00
        return start <= t < end
    return t >= start or t < end  # across midnight, e.g. 21:00-08:00


def deliver_after(at_ms: int, timezone: str | None, rules: QuietHoursRules) -> int | None:
    """None when a send at ``at_ms`` may go at once; else the first allowed instant after it
    (epoch ms): the end of quiet hours on the first local day where that end is allowed."""
    if not rules.enabled:
        return None
    tz = (zone(timezone) if timezone else None) or zone(rules.default_timezone)
    if tz is None:  # the config validator rejects an unknown default zone
        raise ValueError(f"unknown time zone {rules.default_timezone!r}")
    local = local_time(at_ms, tz)
    start, end, weekends = rules.start_time, rules.end_time, rules.weekends
    if not _quiet(local, start, end, weekends):
        return None
    for allowed in _allowed_ends(local.date(), tz, start, end, weekends):
        if allowed > at_ms:
            return allowed
    raise AssertionError("no allowed time within 9 days")  # unreachable: weekdays exist


@lru_cache(maxsize=4096)
def _allowed_ends(
    day: date, tz: ZoneInfo, start: time, end: time, weekends: bool
) -> tuple[int, ...]:
    """The ends of quiet hours on ``day`` and the eight local days after it that are allowed
    instants themselves (not quiet), in day order: a send decided at a quiet instant of ``day``
    is held until the first of them after it. A function of the local day, the zone and the
    rules only, so the sends of one zone and day share it (cached)."""
    ends = (_instant(day + timedelta(days=k), end, tz) for k in range(9))
    return tuple(e for e in ends if not _quiet(local_time(e, tz), start, end, weekends))


def _instant(day: date, wall: time, tz: ZoneInfo) -> int:
    """Epoch ms of a local wall time. A wall time skipped by a daylight-saving jump resolves
    to the instant just after the jump (fold=0 uses the offset before it)."""
    return (datetime.combine(day, wall, tzinfo=tz) - _EPOCH) // _ONE_MS
