"""The transport seam: everything the sender needs from a delivery channel.

A transport delivers one :class:`Outbound` message or raises :class:`TransportError`; the sender
owns retries, backoff, dead-lettering and dedupe. Every transport passes the ``action_id`` on as
its idempotency key (SMTP ``Message-ID``, webhook ``Idempotency-Key``), so a receiver can drop
a repeat the sender could not rule out (a crash between the receiver's accept and the marker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class TransportError(RuntimeError):
    """A delivery attempt failed; the sender retries it with backoff, then dead-letters it."""


@dataclass(frozen=True, slots=True)
class Outbound:
    action_id: str
    lead_id: str
    template: str
    sender: str
    recipient: str
    subject: str
    body: str
    action: Mapping[str, Any]


class Transport:
    """Base class: ``start`` once, ``deliver`` many times (one at a time), ``close`` once."""

    name = "base"

    async def start(self) -> None:
        return None

    async def deliver(self, message: Outbound) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None
