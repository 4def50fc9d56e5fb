"""The Faust side of accounts: the ``accounts`` table, the batch runner over
``<app_id>-account-events`` and its tick topic, and ``GET /accounts/{account_id}``.

:func:`install_accounts` adds all of it to the worker app; the lead runner forwards each event
an account needs (:func:`stream.runtime.accounts.account_forward`: the parsed event and its
origin), keyed by account, in the same batch as the lead outputs (so
before its offsets are acked). The account runner is the lead runner
(:class:`stream.runtime.agent.LeadRunner`: per-partition batches, stream time, outbox, ticks,
due-index rebuild after assignment) over one input topic with the account processor; only
parsing (the envelope, the key is the account) and the metrics differ.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any, cast

import orjson

from stream.runtime.account_merge import OriginMerge, Progress, open_progress
from stream.runtime.accounts import (
    account_processor,
    account_topic_name,
    account_view,
    as_account_input,
    open_envelope,
    open_forward,
)
from stream.runtime.agent import BUFFER_LOW, LeadRunner
from stream.runtime.tablestore import TableStore, table_options
from topics.parse import InvalidEvent, parse_event, parse_forward

if TYPE_CHECKING:
    import faust

    from stream.core.config import RulesConfig
    from stream.core.model import Event
    from stream.metrics import Metrics
    from stream.runtime.batch import BatchResult, Committed
    from stream.runtime.merge import Slot
    from stream.settings import Settings
    from topics.catalog import TopicSpec

log = logging.getLogger("nurture.accounts")


def account_tick_topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-account-ticks"


def account_topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """The repartition topic (keyed by account, co-partitioned with the ``accounts`` table)
    and the account tick topic."""
    from topics.catalog import TopicSpec

    n = settings.topic_partitions
    return (
        TopicSpec(
            account_topic_name(settings),
            "account_id",
            "internal",
            "worker (lead runner re-keys events that carry an account_id)",
            "worker (account runner)",
            n,
            {"retention.ms": str(7 * 86_400_000), "cleanup.policy": "delete"},
        ),
        TopicSpec(
            account_tick_topic_name(settings),
            "none (explicit partition)",
            "internal",
            "worker account runner",
            "worker",
            n,
            {"retention.ms": str(6 * 3600 * 1000), "cleanup.policy": "delete"},
        ),
        # Created up front (not left to Faust's declare at start-up): a run where the worker's
        # first batch wrote to this changelog before it existed stalled the producer on its
        # metadata refresh and wedged the rebalance (found by the worker bench).
        TopicSpec(
            f"{settings.app_id}-accounts-changelog",
            "account_id",
            "internal",
            "worker (accounts table)",
            "worker (table recovery)",
            n,
            {"cleanup.policy": "compact"},
        ),
    )


class AccountRunner(LeadRunner):
    """Batches of the account partitions this worker owns, in event time over the lead
    partitions that feed them (:class:`stream.runtime.account_merge.OriginMerge`)."""

    lead: LeadRunner | None = None  # the lead runner of this worker (see idle_clock)
    # account records are not leads: rebuilding partition p's nurture_leads share from them
    # replaced the lead runner's count of p with nothing when the account runner went second
    counts_occupancy = False

    def new_merge(self) -> OriginMerge:
        return OriginMerge(self.input_topics[0], range(self.settings.topic_partitions))

    def parse(self, message: Any) -> tuple[Any, InvalidEvent | None]:
        value = message.value or b""
        progress = open_progress(value)
        if progress is not None:  # lead partitions' progress: no input, acked in its batch
            merges: dict[int, Any] = self.merges
            merge = merges.get(message.partition)
            if merge is None:
                merge = merges[message.partition] = self.new_merge()
            for origin, stream_time in progress:
                merge.advance(origin, stream_time, message.offset)
            return None, None
        opened = _open_forward(value)
        if isinstance(opened, InvalidEvent):  # the lead runner forwards only valid events
            return None, opened
        event, topic, partition, offset = opened
        if event.account_id is None or message.key != event.account_id.encode():
            return None, InvalidEvent("key_mismatch", "account key != account_id")
        # keyed by account, deduplicated by origin (see runtime.accounts)
        return as_account_input(event, topic, partition, offset), None

    def idle_clock(self) -> float:
        """Both runners share the event loop: a long lead batch is not the origins' silence."""
        lead_busy = 0.0 if self.lead is None else self.lead.busy_s
        return super().idle_clock() - lead_busy

    def _resume_fetching(self, p: int, merge: Any) -> None:
        tp = (self.input_topics[0], p)
        if tp in self.paused and merge.buffered() <= BUFFER_LOW:
            self.paused.pop(tp)()

    def observe_series(self, m: Metrics, result: BatchResult, slots: list[Slot]) -> None:
        """The lead series (transitions by program, timer lag) stay the leads' own."""


def _open_forward(value: bytes) -> tuple[Event, str, int, int] | InvalidEvent:
    """The event and origin (topic, partition, offset) of a forward, or why it is invalid."""
    forward = open_forward(value)  # the event as the lead runner parsed it
    if forward is not None:
        return forward.event, forward.topic, forward.partition, forward.offset
    try:  # a JSON envelope, as workers before Forward wrote them
        parsed = parse_forward(value)  # one pass over envelope and event
        if parsed is not None:
            event, (topic, partition, offset) = parsed
            return event, topic, partition, offset
        opened = open_envelope(value)  # an event of another shape than that one pass reads
        if opened is None:
            return InvalidEvent("bad_envelope", "not a forward envelope of the lead runner")
        raw, topic, partition, offset = opened
        return parse_event(raw), topic, partition, offset
    except InvalidEvent as exc:
        return exc


def install_accounts(
    app: faust.App,
    settings: Settings,
    rules: RulesConfig,
    metrics: Metrics | None,
    committed: Committed,
) -> AccountRunner:
    """Add the accounts table, runner, rebalance hooks and HTTP view to ``app``."""
    from faust.web import Request, Response, View

    n = settings.topic_partitions
    table = app.Table(
        "accounts",
        partitions=n,
        key_type=bytes,
        value_type=bytes,
        options=table_options(settings.state_write_buffer_mb, settings.state_block_cache_mb),
    )
    store = TableStore(table)
    processor = account_processor(rules, store, committed=committed)
    runner = AccountRunner(
        app,
        settings,
        processor,
        store,
        metrics,
        inputs=(account_topic_name(settings),),
        tick_topic=account_tick_topic_name(settings),
    )
    topic = runner.topic()
    topic.subscribe()
    fast_path: dict[str, Any] = getattr(app, "fast_path", {})
    app.fast_path = {  # type: ignore[attr-defined]
        **fast_path,
        **{name: runner.deliver for name in topic.topics},
    }
    app.task(runner.run)
    topics = {account_topic_name(settings), runner.tick_topic}

    async def _revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await runner.on_revoked({tp.partition for tp in revoked if tp.topic in topics})

    async def _assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        await runner.on_assigned({tp.partition for tp in assigned if tp.topic in topics})

    app.on_partitions_revoked.connect(cast(Any, _revoked))
    app.on_partitions_assigned.connect(cast(Any, _assigned))
    token = settings.web_token

    @app.page("/accounts/{account_id}")
    async def account(self: View, request: Request, account_id: str) -> Response:
        header = request.headers.get("Authorization", "")
        if token and not hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
            return self.json({"error": "unauthorized"}, status=401)
        doc = None if account_id.startswith("__") else account_view(processor, account_id)
        if doc is None:
            return self.json({"error": "unknown account (or not on this worker)"}, status=404)
        return self.bytes(orjson.dumps(doc), content_type="application/json")

    return runner


def connect_accounts(lead: LeadRunner, accounts: AccountRunner, settings: Settings) -> None:
    """The lead runner forwards account events and reports its progress to the account topic;
    the account runner knows the lead runner's busy time."""
    topic = account_topic_name(settings)
    lead.account_topic = topic
    combined = settings.account_forward_format == "msgpack"  # json: what earlier workers read
    lead.progress = Progress(topic, settings.topic_partitions, combined=combined)
    accounts.lead = lead
