"""The Faust side of accounts: the ``accounts`` table, the agent over
``<app_id>-account-events`` and its tick topic, the ticker and ``GET /accounts/{account_id}``.

:func:`install_accounts` adds all of it to the worker app; the lead agent forwards each event an
account needs (:func:`stream.runtime.accounts.account_key`) with its original bytes, keyed by
account. The account agent reuses the lead agent's machinery (outputs, dead letters, ticks,
due-index rebuild after assignment) with the account processor; only parsing (the key is the
account, not the lead), the output keys and the metrics differ.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any, cast

import orjson

from stream.runtime.accounts import (
    account_processor,
    account_topic_name,
    account_view,
    as_account_input,
)
from stream.runtime.agent import LeadAgent, Ticker
from stream.runtime.processor import Outcome
from topics.parse import InvalidEvent, parse_event

if TYPE_CHECKING:
    import faust

    from stream.core.config import RulesConfig
    from stream.metrics import Metrics
    from stream.runtime.processor import Committed
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
            "worker (lead agent re-keys events that carry an account_id)",
            "worker (account agent)",
            n,
            {"retention.ms": str(7 * 86_400_000), "cleanup.policy": "delete"},
        ),
        TopicSpec(
            account_tick_topic_name(settings),
            "none (explicit partition)",
            "internal",
            "worker account ticker",
            "worker",
            n,
            {"retention.ms": str(6 * 3600 * 1000), "cleanup.policy": "delete"},
        ),
    )


class AccountAgent(LeadAgent):
    """One message at a time for the account partitions this worker owns."""

    def __init__(self, app: faust.App, settings: Settings, processor: Any, metrics: Any) -> None:
        super().__init__(app, settings, processor, metrics)
        self.tick_topic = account_tick_topic_name(settings)
        self.input_topics = {account_topic_name(settings)}

    async def handle(self, msg: Any) -> None:
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        if topic == self.tick_topic:
            await self._on_tick(topic, partition, offset)
            return
        raw, key = msg.value, msg.key
        try:
            event = parse_event(raw or b"")
        except InvalidEvent as exc:  # the lead agent forwards only valid events
            await self._dead_letter(raw or b"", key, exc.reason, exc.detail, msg)
            return
        if event.account_id is None or key != event.account_id.encode():
            await self._dead_letter(raw, key, "key_mismatch", "account key != account_id", msg)
            return
        try:
            self.ensure_index(partition)
            inp: Any = as_account_input(event)  # keyed by account (see runtime.accounts)
            out = self.processor.on_event(inp, topic, partition, offset)
        except Exception as exc:  # a core bug must not stop the worker: park the message
            log.exception("account processing %s:%s:%s failed", topic, partition, offset)
            await self._dead_letter(raw, key, "processing_error", repr(exc)[:500], msg)
            return
        self.events_processed += 1
        await self._emit(key, out, topic, partition)

    async def _emit(self, key: bytes | None, out: Outcome, src: str, part: int) -> None:
        s = self.settings
        self.duplicates_resent += out.replayed
        for topic, values in (
            (s.topic_transitions, out.transition_out),
            (s.topic_actions, out.action_out),
        ):
            for value in values:
                account = key if key is not None else orjson.loads(value)["account_id"].encode()
                await self.send(topic, account, value, src, part)

    def _observe(self, out: Outcome) -> None:
        """The lead series (transitions by program, timer lag) stay the leads' own."""


def install_accounts(
    app: faust.App,
    settings: Settings,
    rules: RulesConfig,
    metrics: Metrics | None,
    committed: Committed,
) -> AccountAgent:
    """Add the accounts table, agent, ticker, rebalance hooks and HTTP view to ``app``."""
    from faust.web import Request, Response, View

    n = settings.topic_partitions
    table = app.Table(
        "accounts",
        partitions=n,
        key_type=bytes,
        value_type=bytes,
        options={"driver": "rocksdict"},
    )
    processor = account_processor(rules, table, committed=committed)
    agent = AccountAgent(app, settings, processor, metrics)
    ticker = Ticker(app, agent, settings)
    channel = app.topic(
        account_topic_name(settings),
        agent.tick_topic,
        partitions=n,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.agent(channel, name="nurture-accounts", concurrency=1)(agent)
    app.timer(min(0.05, settings.timer_tick_seconds), name="nurture-account-ticker")(ticker.tick)
    topics = {account_topic_name(settings), agent.tick_topic}

    async def _revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        agent.on_revoked({tp.partition for tp in revoked if tp.topic in topics})

    async def _assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        agent.on_assigned({tp.partition for tp in assigned if tp.topic in topics})

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

    return agent
