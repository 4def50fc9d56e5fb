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
    if rules.weekends and local.weekday() >= _SATURDAY:
        return True
    t = local.time()  # naive (datetime.time() drops the zone; timetz() would keep it)
    start, end = rules.start_time, rules.end_time
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
    if not is_quiet(local, rules):
        return None
    day: date = local.date()
    for k in range(9):  # the end of quiet hours on this day or one of the next eight
        end = _instant(day + timedelta(days=k), rules.end_time, tz)
        if end > at_ms and not is_quiet(local_time(end, tz), rules):
            return end
    raise AssertionError("no allowed time within 9 days")  # unreachable: weekdays exist


def _instant(day: date, wall: time, tz: ZoneInfo) -> int:
    """Epoch ms of a local wall time. A wall time skipped by a daylight-saving jump resolves
    to the instant just after the jump (fold=0 uses the offset before it)."""
    return (datetime.combine(day, wall, tzinfo=tz) - _EPOCH) // _ONE_MS
