"""Accounts in the worker: the re-keying of account events and the account processor.

Events that carry an ``account_id`` and a type the account folds
(:data:`stream.accounts.engine.ACCOUNT_EVENT_TYPES`) are forwarded, as the lead runner parsed
them, to the internal topic ``<app_id>-account-events`` keyed by ``account_id``; that topic is
co-partitioned with the ``accounts`` table, so each account is folded by exactly one worker
and never read from another partition. No side cache of accounts exists besides the
processor's bounded LRU in front of the table.

Each forward (:class:`Forward`, MessagePack) holds the parsed event and its origin, the input
topic, partition and offset the lead runner read it from: the account runner decodes it
without parsing and validating the event's JSON again (0.7 against 4.7 us per forward, and
155 against 231 bytes, on simulated input). Forwards written by earlier workers, a JSON
envelope around the original bytes (:func:`forward_envelope`), are still read, and
``NURTURE_ACCOUNT_FORWARD_FORMAT=json`` writes them for a rolling upgrade. The lead runner
forwards every event of a batch, also one it does not step again after a restart (its first
forward may not have reached the broker), so the account topic holds a re-sent copy of every
forward whose input was not committed when a worker died. The account record keeps, per
origin, the highest origin offset applied (one entry per input topic partition: exact and
bounded); a forward at or below it is not stepped again. Per origin the forwards reach the
account topic in offset order (one producer, one partition per account), so this drops exactly
the re-sends, whatever the account core's event-id window holds.

The account processor is the lead processor (:class:`stream.runtime.processor.LeadProcessor`)
with the account core plugged in: the same record layout (state + applied offsets + outbox +
history), the same at-least-once recovery (a re-delivered input re-sends its outputs from the
outbox instead of stepping again), the same due index, stream time and ticks. It keys by
``lead_id`` of its input, so an account input is wrapped in :class:`AccountInput` whose
``lead_id`` is the account id and whose ``origin`` is the applied key of its origin; the wrapped
event keeps the person's ``lead_id`` for the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from stream.accounts.engine import ACCOUNT_EVENT_TYPES, step_account
from stream.accounts.model import AccountState, AccountStep, AccountTimerFired, decode_state
from stream.accounts.model import encode_state as encode_account
from stream.core.model import Event, TimerFired
from stream.runtime.batch import Committed, PartitionStore, never_committed, now_ms
from stream.runtime.processor import LeadProcessor

if TYPE_CHECKING:
    from collections.abc import Callable

    from stream.core.config import RulesConfig
    from stream.runtime.sender import Record
    from stream.settings import Settings


def account_topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-account-events"


def account_key(event: Event) -> bytes | None:
    """The repartition key of an event the account needs, else None (not forwarded)."""
    if event.account_id is None or event.type not in ACCOUNT_EVENT_TYPES:
        return None
    return event.account_id.encode()


class Forward(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The account-topic value of a forward: the event as the lead runner parsed and validated
    it, and where the lead runner read it (its origin)."""

    topic: str
    partition: int
    offset: int
    event: Event


FORWARD_MARK = 0x94  # the first byte of a Forward (a MessagePack array of 4); JSON starts "{"
_encode_forward = msgspec.msgpack.Encoder().encode
_decode_forward = msgspec.msgpack.Decoder(Forward).decode


def forward_value(event: Event, topic: str, partition: int, offset: int) -> bytes:
    """The account-topic value of a forward of ``event``, read at ``topic``/``partition``/
    ``offset``."""
    return _encode_forward(Forward(topic, partition, offset, event))


def open_forward(value: bytes) -> Forward | None:
    """The forward in ``value``, or None if it is not one (a progress marker, a JSON envelope
    of an earlier worker, or anything else)."""
    if not value or value[0] != FORWARD_MARK:
        return None
    try:
        return _decode_forward(value)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None


_EVENT_FIELD = b',"event":'


def forward_envelope(raw: bytes, topic: str, partition: int, offset: int) -> bytes:
    """The account-topic value of a forward as workers before :class:`Forward` wrote it:
    ``{"src": [topic, partition, offset], "event": <the original bytes>}`` (still read, see
    :func:`open_envelope`; written with ``NURTURE_ACCOUNT_FORWARD_FORMAT=json``)."""
    return orjson.dumps({"src": [topic, partition, offset]})[:-1] + _EVENT_FIELD + raw + b"}"


def open_envelope(value: bytes) -> tuple[bytes, str, int, int] | None:
    """(the original event bytes, the origin topic, partition and offset), or None if ``value``
    is not a forward envelope."""
    cut = value.find(_EVENT_FIELD)
    if not value.startswith(b'{"src":') or cut < 0 or not value.endswith(b"}"):
        return None
    try:
        topic, partition, offset = orjson.loads(value[:cut] + b"}")["src"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if not (isinstance(topic, str) and type(partition) is int and type(offset) is int):
        return None
    return value[cut + len(_EVENT_FIELD) : -1], topic, partition, offset


def account_forward(
    topic: str, message: Any, event: Event, json_envelope: bool = False
) -> Record | None:
    """The account-topic record of a parsed input (keyed by account), or None. With
    ``json_envelope`` (``NURTURE_ACCOUNT_FORWARD_FORMAT=json``) it is the JSON envelope that
    workers before :class:`Forward` wrote and read: a rolling upgrade from such a worker keeps
    it until every worker runs this version."""
    key = account_key(event)
    if key is None:
        return None
    if json_envelope:
        value = forward_envelope(message.value, message.topic, message.partition, message.offset)
    else:
        value = forward_value(event, message.topic, message.partition, message.offset)
    return (topic, None, key, value)


@dataclass(frozen=True, slots=True)
class AccountInput:
    """An account event as the processor sees it: keyed (``lead_id``) by the account,
    deduplicated by its ``origin`` (applied key ``topic:partition``, origin offset; see the
    module doc); ``source`` is the lead partition it came from (the event-time merge's queue,
    :mod:`stream.runtime.account_merge`)."""

    lead_id: str  # the account id: the processor's key
    at: int
    event: Event
    origin: tuple[str, int] | None = None
    source: int = 0


def as_account_input(
    event: Event, topic: str | None = None, partition: int = 0, offset: int = 0
) -> AccountInput:
    """The processor's input for a forward of ``topic``/``partition``/``offset`` (no topic:
    not a forward, deduplicated by the account topic offset like a lead input)."""
    assert event.account_id is not None
    origin = None if topic is None else (f"{topic}:{partition}", offset)
    return AccountInput(event.account_id, event.at, event, origin, partition)


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
    committed: Committed = never_committed,
    cache_size: int = 20_000,
) -> LeadProcessor:
    """The processor of the ``accounts`` table (its inputs carry an :class:`AccountInput`).
    The account runner reads the account topic in event time (its merge over the lead
    partitions, :mod:`stream.runtime.account_merge`), so account timers fire on the partition's
    stream time like lead timers (the wall clock only once caught up): a backlog gives replay's
    outputs. (On ``max(wall clock, the account's event)`` instead, a backlog older than the
    wall clock fired every account's daily timers up to now before its first event.)"""
    return LeadProcessor(
        config,
        store,
        cache_size=cache_size,
        clock=clock,
        committed=committed,
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
        "last_transitions": [h.view() for h in rec.history],
    }
    if now is not None:
        view["health"] = health(s, now, processor.config.accounts, processor.config.version)
        view["health"] = view["health"].to_record()
    return view
