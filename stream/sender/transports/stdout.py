"""Deliver by printing one JSON line per message (a dry run, or a pipe into another tool)."""

from __future__ import annotations

import sys

import orjson

from stream.sender.transports.base import Outbound, Transport


class StdoutTransport(Transport):
    name = "stdout"

    async def deliver(self, message: Outbound) -> None:
        line = orjson.dumps(
            {
                "action_id": message.action_id,
                "to": message.recipient,
                "from": message.sender,
                "template": message.template,
                "subject": message.subject,
                "body": message.body,
            }
        )
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.buffer.flush()
