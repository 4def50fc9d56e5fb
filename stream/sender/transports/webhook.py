"""Deliver by HTTP POST of a JSON document, with the action_id as ``Idempotency-Key``.

Any 2xx answer is a delivery; anything else (or no answer) is a failure the sender retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from stream.sender.transports.base import Outbound, Transport, TransportError

if TYPE_CHECKING:
    from stream.settings import Settings


class WebhookTransport(Transport):
    name = "webhook"

    def __init__(self, settings: Settings) -> None:
        assert settings.sender_webhook_url is not None  # checked by Settings
        self.url = settings.sender_webhook_url
        self.timeout = aiohttp.ClientTimeout(total=settings.sender_timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def deliver(self, message: Outbound) -> None:
        if self._session is None:
            await self.start()
        assert self._session is not None
        document = {
            "action_id": message.action_id,
            "lead_id": message.lead_id,
            "template": message.template,
            "to": message.recipient,
            "from": message.sender,
            "subject": message.subject,
            "body": message.body,
            "action": dict(message.action),
        }
        try:
            async with self._session.post(
                self.url, json=document, headers={"Idempotency-Key": message.action_id}
            ) as response:
                if not 200 <= response.status < 300:
                    text = (await response.text())[:200]
                    raise TransportError(f"webhook {self.url} answered {response.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"webhook {self.url}: {exc}") from exc

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
