"""The webhook transport against a real HTTP server (aiohttp on a loopback port): one POST per
send with the action_id as Idempotency-Key; a 503 is retried with the same key."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from tests.integration.test_sender_smtp import action_records, scenario_actions
from tests.support.sender import SenderProcess, wait_group_caught_up
from tests.support.worker import consume_all, free_port, produce_raw

if TYPE_CHECKING:
    from stream.settings import Settings


class Hook:
    """Records every POST; answers 503 to the first request of ``flaky`` keys, else 200."""

    def __init__(self, flaky: set[str]) -> None:
        self.port = free_port()
        self.flaky = set(flaky)
        self.requests: list[tuple[str, dict[str, Any], int]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        body = await request.json()
        status = 503 if key in self.flaky else 200
        self.flaky.discard(key)
        self.requests.append((key, body, status))
        return web.Response(status=status, text="ok" if status == 200 else "busy")

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def hook_factory() -> Iterator[Any]:
    hooks: list[Hook] = []

    def make(flaky: set[str]) -> Hook:
        hook = Hook(flaky)
        threading.Thread(target=hook.serve, daemon=True).start()
        assert hook.ready.wait(10)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.stop()


def test_webhook_posts_each_send_once_with_its_idempotency_key(
    kafka_settings: Settings, hook_factory: Any
) -> None:
    actions = scenario_actions(4, seed=11)
    sends = {a["action_id"]: a for a in actions if a["type"] == "send"}
    flaky = next(iter(sends))
    hook = hook_factory({flaky})
    records = action_records(kafka_settings, actions)
    produce_raw(kafka_settings.kafka_bootstrap_servers, records + records)
    env = {
        "NURTURE_SENDER_TRANSPORT": "webhook",
        "NURTURE_SENDER_WEBHOOK_URL": f"http://127.0.0.1:{hook.port}/hook",
        "NURTURE_SENDER_BACKOFF_SECONDS": "0.05",
    }
    with SenderProcess.from_settings(kafka_settings, env=env) as sender:
        sender.wait_ready()
        wait_group_caught_up(
            kafka_settings.kafka_bootstrap_servers,
            f"{kafka_settings.app_id}-sender",
            kafka_settings.topic_actions,
        )
        assert sender.metric_sum("nurture_sender_attempt_failures_total") == 1
        assert sender.outcome("delivered") == len(sends)
    accepted = [key for key, _body, status in hook.requests if status == 200]
    assert sorted(accepted) == sorted(sends)
    assert [key for key, _b, status in hook.requests if status == 503] == [flaky]
    for key, body, _status in hook.requests:
        assert body["action_id"] == key and body["subject"] and body["body"]
        assert body["action"] == sends[key]
    sent = consume_all(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_email_events,
        until=lambda r: len(r) >= len(sends),
        timeout=30,
    )
    assert sorted(r["value"]["properties"]["action_id"] for r in sent) == sorted(sends)
