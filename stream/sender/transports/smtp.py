"""Deliver over SMTP with aiosmtplib (one connection, reopened after a failure).

``Message-ID`` is ``<action_id@nurture-stream>``: the same action always carries the same id,
so a mail system can recognise a repeat.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING

import aiosmtplib

from stream.sender.transports.base import Outbound, Transport, TransportError

if TYPE_CHECKING:
    from stream.settings import Settings

MESSAGE_ID_DOMAIN = "nurture-stream"


def message_id(action_id: str) -> str:
    return f"<{action_id}@{MESSAGE_ID_DOMAIN}>"


def build_message(message: Outbound) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = message.sender
    mail["To"] = message.recipient
    mail["Subject"] = message.subject
    mail["Message-ID"] = message_id(message.action_id)
    mail["X-Nurture-Action-Id"] = message.action_id
    mail["X-Nurture-Template"] = message.template
    mail.set_content(message.body)
    return mail


class SmtpTransport(Transport):
    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        assert settings.sender_smtp_host is not None  # checked by Settings
        self.host = settings.sender_smtp_host
        self.port = settings.sender_smtp_port
        self.username = settings.sender_smtp_username
        self.password = settings.sender_smtp_password
        self.starttls = settings.sender_smtp_starttls
        self.timeout = settings.sender_timeout_seconds
        self._client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            start_tls=self.starttls,
            username=self.username,
            password=self.password,
        )
        await client.connect()
        return client

    async def deliver(self, message: Outbound) -> None:
        try:
            if self._client is None or not self._client.is_connected:
                self._client = await self._connect()
            errors, _response = await self._client.send_message(build_message(message))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            raise TransportError(f"smtp {self.host}:{self.port}: {exc}") from exc
        if errors:
            raise TransportError(f"smtp refused recipients: {errors}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
