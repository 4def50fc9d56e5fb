"""Accounts in the worker: the re-keying of account events and the account processor.

Events that carry an ``account_id`` and a type the account folds
(:data:`stream.accounts.engine.ACCOUNT_EVENT_TYPES`) are forwarded, with their original bytes,
to the internal topic ``<app_id>-account-events`` keyed by ``account_id``; that topic is
co-partitioned with the ``accounts`` table, so each account is folded by exactly one worker
and never read from another partition. No side cache of accounts exists besides the
processor's bounded LRU in front of the table.

The account processor is the lead processor (:class:`stream.runtime.processor.LeadProcessor`)
with the account core plugged in: the same record layout (state + applied offsets + outbox +
history), the same at-least-once recovery (a re-delivered input re-sends its outputs from the
outbox instead of stepping again), the same due index, stream time and ticks. It keys by
``lead_id`` of its input, so an account input is wrapped in :class:`AccountInput` whose
``lead_id`` is the account id; the wrapped event keeps the person's ``lead_id`` for the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stream.accounts.engine import ACCOUNT_EVENT_TYPES, step_account
from stream.accounts.model import AccountState, AccountStep, AccountTimerFired, decode_state
from stream.accounts.model import encode_state as encode_account
from stream.core.model import Event, TimerFired
from stream.runtime.processor import Committed, LeadProcessor, PartitionStore, _never, now_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from stream.core.config import RulesConfig
    from stream.settings import Settings


def account_topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-account-events"


def account_key(event: Event) -> bytes | None:
    """The repartition key of an event the account needs, else None (not forwarded)."""
    if event.account_id is None or event.type not in ACCOUNT_EVENT_TYPES:
        return None
    return event.account_id.encode()


@dataclass(frozen=True, slots=True)
class AccountInput:
    """An account event as the processor sees it: keyed (``lead_id``) by the account."""

    lead_id: str  # the account id: the processor's key
    at: int
    event: Event


def as_account_input(event: Event) -> AccountInput:
    assert event.account_id is not None
    return AccountInput(event.account_id, event.at, event)


def account_step(
    state: AccountState | None, inp: AccountInput | TimerFired, config: RulesConfig
) -> AccountStep:
    if isinstance(inp, TimerFired):
        return step_account(state, AccountTimerFired(inp.lead_id, inp.timer_id, inp.at), config)
    return step_account(state, inp.event, config)


def account_processor(
    config: RulesConfig,
    store: PartitionStore,
    *,
    clock: Callable[[], int] = now_ms,
    committed: Committed = _never,
    cache_size: int = 20_000,
) -> LeadProcessor:
    """The processor of the ``accounts`` table (its inputs carry an :class:`AccountInput`)."""
    return LeadProcessor(
        config,
        store,
        cache_size=cache_size,
        clock=clock,
        committed=committed,
        key_clock=True,  # the account topic is not in event time (see LeadProcessor)
        step=account_step,
        encode=encode_account,
        decode=decode_state,
    )


def account_view(processor: LeadProcessor, account_id: str) -> dict[str, Any] | None:
    """``GET /accounts/{id}``: score, components, flags, open plays, pending timers and the last
    transitions (None if the account is unknown)."""
    from stream.accounts.health import health
    from stream.core.model import ms_to_rfc3339

    rec = processor.peek(None, account_id)
    if rec is None or rec.state is None:
        return None
    s: AccountState = rec.state
    now = s.watermark
    view: dict[str, Any] = {
        "account_id": account_id,
        "stage": s.stage,
        "converted_at": None if s.converted_at is None else ms_to_rfc3339(s.converted_at),
        "renewal_at": None if s.renewal_at is None else ms_to_rfc3339(s.renewal_at),
        "arr": s.arr,
        "icp_tier": s.icp_tier,
        "holdout": s.holdout,
        "open_plays": [{"play": p, "since": ms_to_rfc3339(at)} for p, at in s.plays],
        "pending_timers": [
            {"timer_id": t.timer_id, "kind": t.kind, "due": ms_to_rfc3339(t.due)} for t in s.timers
        ],
        "users": len(s.users),
        "last_transitions": rec.history,
    }
    if now is not None:
        view["health"] = health(s, now, processor.config.accounts, processor.config.version)
        view["health"] = view["health"].to_record()
    return view
