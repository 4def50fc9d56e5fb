"""The core's input and output types: the seam between the pure engine and everything else.

Times inside the core are event time as integer epoch milliseconds. Nothing here reads a clock.
The runtime (Kafka worker) and replay both build :class:`Event` / :class:`TimerFired` values and
call ``stream.core.engine.step``; both serialise :class:`Transition` / :class:`Action` with
``to_record()`` into the contract shapes of DESIGN.md section 2.

Every type is a frozen ``msgspec.Struct``: built in C (the hot path builds several per step),
compared and printed field by field. ``gc=False``: their fields hold only scalars, tuples and
plain-data dicts, which can never refer back to them, so the cycle collector need not track them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

import msgspec

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


@lru_cache(maxsize=16384)
def ms_to_rfc3339(ms: int) -> str:
    """Render epoch milliseconds as RFC 3339 UTC (``2026-11-20T10:00:00Z``, ms kept if non-zero).

    Cached: the transitions and actions of one step share their ``at``. The date comes from
    ``time.strftime`` once per day (cached), the time of day from integer arithmetic: the
    same text as ``strftime`` of the whole instant, a third faster on a cache miss.
    """
    day, rest = divmod(ms, DAY_MS)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if millis:
        return f"{_date(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
    return f"{_date(day)}{hours:02d}:{minutes:02d}:{seconds:02d}Z"


@lru_cache(maxsize=4096)
def _date(day: int) -> str:
    """``YYYY-MM-DDT`` of the UTC day ``day`` (days since the epoch)."""
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))


def rfc3339_to_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp with offset into epoch milliseconds. Raises ValueError."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return (dt - _EPOCH) // _ONE_MS


class Event(msgspec.Struct, frozen=True, gc=False):
    """A validated contract event (see topics.events for the wire model)."""

    event_id: str
    type: str
    lead_id: str
    at: int  # occurred_at, epoch ms, event time
    account_id: str | None = None
    properties: Mapping[str, Any] = msgspec.field(default_factory=dict)


class TimerFired(msgspec.Struct, frozen=True, gc=False):
    """A pending timer of the lead has come due. ``at`` is the timer's due time (event time)."""

    lead_id: str
    timer_id: str
    at: int


Input = Event | TimerFired


class Timer(msgspec.Struct, frozen=True, order=True, gc=False, array_like=True):
    """A durable per-lead timer. ``timer_id`` is unique per lead for the life of the lead.

    Ordered by (due, timer_id, kind); stored inside the lead state as ``[due, timer_id, kind]``.
    """

    due: int  # epoch ms, event time
    timer_id: str
    kind: str


class Transition(msgspec.Struct, frozen=True, gc=False):
    lead_id: str
    from_program: str | None
    from_state: str | None
    to_program: str
    to_state: str | None
    reason: str
    signals: Mapping[str, Any]
    caused_by: str
    at: int

    def to_record(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "from_program": self.from_program,
            "from_state": self.from_state,
            "to_program": self.to_program,
            "to_state": self.to_state,
            "reason": self.reason,
            "signals": dict(self.signals),
            "caused_by": self.caused_by,
            "at": ms_to_rfc3339(self.at),
        }


class Action(msgspec.Struct, frozen=True, gc=False):
    """An action for downstream consumers. ``type`` is send|handoff|enroll|exit|suppress|skipped.

    ``skipped`` actions record a send that was withheld; ``skip_reason`` says why
    (``frequency_cap``, ``unsubscribed``, ``holdout``, ...). Senders must only act on ``send``.
    ``deliver_after`` (epoch ms) is set on a send decided inside the lead's quiet hours: the
    sender holds it until then.
    """

    action_id: str
    lead_id: str
    type: str
    channel: str
    program: str
    template: str | None
    reason: str
    context: Mapping[str, Any]
    caused_by: str
    at: int
    skip_reason: str | None = None
    deliver_after: int | None = None

    def to_record(self) -> dict[str, Any]:
        return action_record(self)


class ActionFields(Protocol):
    """What an action record is built from (a lead's :class:`Action`, an account's
    :class:`stream.accounts.model.AccountAction`)."""

    @property
    def action_id(self) -> str: ...
    @property
    def lead_id(self) -> str | None: ...
    @property
    def type(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def program(self) -> str: ...
    @property
    def template(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def context(self) -> Mapping[str, Any]: ...
    @property
    def caused_by(self) -> str: ...
    @property
    def at(self) -> int: ...
    @property
    def skip_reason(self) -> str | None: ...
    @property
    def deliver_after(self) -> int | None: ...


def action_record(a: ActionFields) -> dict[str, Any]:
    """The contract record of an action (``topics.outputs.ActionRecord``)."""
    record: dict[str, Any] = {
        "action_id": a.action_id,
        "lead_id": a.lead_id,
        "type": a.type,
        "channel": a.channel,
        "program": a.program,
        "template": a.template,
        "reason": a.reason,
        "context": dict(a.context),
        "caused_by": a.caused_by,
        "at": ms_to_rfc3339(a.at),
    }
    if a.skip_reason is not None:
        record["skip_reason"] = a.skip_reason
    if a.deliver_after is not None:
        record["deliver_after"] = ms_to_rfc3339(a.deliver_after)
    return record
