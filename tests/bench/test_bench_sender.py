"""Sender throughput (make bench): sends per second through the real broker and a real SMTP
server (aiosmtpd on loopback), and through the stdout transport (no mail server in the way:
what the store, the offset commits and the ``email.sent`` producer cost).

``NURTURE_BENCH_SENDS`` (default 3,000) distinct send actions are produced up front; the
sender is timed from its readiness to the last mail received (SMTP) or to its group's last
offset commit (stdout). Asserts only that everything was delivered; prints the figures and
``uptime``.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from tests.support.sender import SenderProcess, SmtpSink, wait_group_caught_up
from tests.support.worker import produce_raw

if TYPE_CHECKING:
    from stream.settings import Settings

pytestmark = pytest.mark.bench

SENDS = int(os.environ.get("NURTURE_BENCH_SENDS", "3000"))


def send_actions(n: int, run: str) -> list[dict[str, Any]]:
    return [
        {
            "action_id": f"bench{run}-{i:07d}",
            "lead_id": f"L-{i % 997:05d}",
            "type": "send",
            "channel": "email",
            "program": "trial_nurture",
            "template": "trial_nurture.activation_friction",
            "reason": "trial.checkpoint_48h",
            "context": {"features_used": 1},
            "caused_by": f"e-{i}",
            "at": "2026-11-20T10:00:00Z",
        }
        for i in range(n)
    ]


def produce(settings: Settings, suffix: str) -> Settings:
    from stream.topics_admin import catalog_from_settings, ensure_topics

    settings = settings.model_copy(
        update={
            "app_id": settings.app_id + suffix,
            "data_dir": settings.data_dir / suffix,
            "topic_actions": settings.topic_actions + suffix,
            "topic_email_events": settings.topic_email_events + suffix,
        }
    )
    ensure_topics(settings.kafka_bootstrap_servers, catalog_from_settings(settings))
    produce_raw(
        settings.kafka_bootstrap_servers,
        [
            (settings.topic_actions, str(a["lead_id"]).encode(), orjson.dumps(a))
            for a in send_actions(SENDS, suffix)
        ],
    )
    return settings


def timed(settings: Settings, sender: SenderProcess, smtp: SmtpSink | None) -> float:
    with sender:
        sender.wait_ready(timeout=120)
        began = time.monotonic()
        if smtp is not None:
            smtp.wait_for(SENDS, timeout=1800)
        wait_group_caught_up(
            settings.kafka_bootstrap_servers,
            f"{settings.app_id}-sender",
            settings.topic_actions,
            timeout=1800,
        )
        took = time.monotonic() - began
        assert sender.outcome("delivered") == SENDS
    return took


def test_sender_sends_per_second(kafka_settings: Settings) -> None:
    rows = []
    with SmtpSink() as smtp:
        settings = produce(kafka_settings, "-smtp")
        env = {
            "NURTURE_SENDER_TRANSPORT": "smtp",
            "NURTURE_SENDER_SMTP_HOST": "127.0.0.1",
            "NURTURE_SENDER_SMTP_PORT": str(smtp.port),
        }
        took = timed(settings, SenderProcess.from_settings(settings, env=env), smtp)
        assert len(set(smtp.message_ids())) == SENDS
        rows.append(("smtp (aiosmtpd)", took))
    settings = produce(kafka_settings, "-stdout")
    env = {"NURTURE_SENDER_TRANSPORT": "stdout"}
    rows.append(("stdout", timed(settings, SenderProcess.from_settings(settings, env=env), None)))
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"\nsender, {SENDS} distinct sends each (uptime: {load.strip()})")
    for name, took in rows:
        print(f"  {name:16s} {SENDS / took:8.0f} sends/s ({took:.1f} s)")
