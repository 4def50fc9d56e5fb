"""Delivery transports behind one seam (:class:`.base.Transport`), built from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.sender.transports.base import Outbound, Transport, TransportError

if TYPE_CHECKING:
    from stream.settings import Settings

__all__ = ["Outbound", "Transport", "TransportError", "create_transport"]


def create_transport(settings: Settings) -> Transport:
    """The transport ``NURTURE_SENDER_TRANSPORT`` names, configured from the settings."""
    if settings.sender_transport == "smtp":
        from stream.sender.transports.smtp import SmtpTransport

        return SmtpTransport(settings)
    if settings.sender_transport == "webhook":
        from stream.sender.transports.webhook import WebhookTransport

        return WebhookTransport(settings)
    from stream.sender.transports.stdout import StdoutTransport

    return StdoutTransport()
