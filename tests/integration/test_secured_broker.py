"""A broker that refuses plaintext: SASL_SSL (SCRAM-SHA-256) with a self-signed CA made by
openssl in the test. ``nurture topics create``, the worker and the sender run a scenario
through it; a wrong password stops each of them at once with the cause and the fix."""

from __future__ import annotations

import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from stream.core.model import HOUR_MS
from stream.kafka_local import LocalKafka, SecureListener, run_sync
from stream.settings import Settings
from tests.support.leads import trial_leads
from tests.support.reference import core_outputs
from tests.support.rules import quiet_hours_off_config, quiet_hours_off_file
from tests.support.sender import SenderProcess, SmtpSink
from tests.support.tls import BrokerTls, make_broker_tls
from tests.support.worker import (
    NURTURE,
    REPO,
    WorkerProcess,
    consume_all,
    settings_env,
    topic_for_event,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

USER, PASSWORD = "alice", "alice-secret"


@pytest.fixture(scope="module")
def secure_kafka(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalKafka, BrokerTls]]:
    tls = make_broker_tls(tmp_path_factory.mktemp("tls"))
    with LocalKafka(secure=SecureListener(tls.keystore, {USER: PASSWORD})) as kafka:
        yield kafka, tls


def secure_settings(kafka: LocalKafka, tls: BrokerTls, tmp_path: Path, password: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        app_id=f"nurture-sec-{run}",
        kafka_bootstrap_servers=kafka.secure_bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
        kafka_ssl_cafile=tls.ca,
        data_dir=tmp_path / "data",
        topic_product_events=f"nurture.product-events.{run}",
        topic_email_events=f"nurture.email-events.{run}",
        topic_crm_events=f"nurture.crm-events.{run}",
        topic_actions=f"nurture.actions.{run}",
        topic_transitions=f"nurture.transitions.{run}",
        topic_dead_letter=f"nurture.dead-letter.{run}",
    )


def nurture(
    settings: Settings, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run(
        [NURTURE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


async def _produce(settings: Settings, events: Sequence[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **settings.kafka_auth()
    )
    await producer.start()
    try:
        for e in events:
            await producer.send(
                topic_for_event(e, settings), orjson.dumps(e), key=str(e["lead_id"]).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


def test_worker_and_sender_run_a_scenario_over_sasl_ssl(
    secure_kafka: tuple[LocalKafka, BrokerTls], tmp_path: Path
) -> None:
    kafka, tls = secure_kafka
    # quiet hours off (worker and oracle): the sends are due now at any hour of the run
    settings = secure_settings(kafka, tls, tmp_path, PASSWORD).model_copy(
        update={"rules_file": quiet_hours_off_file(tmp_path)}
    )
    created = nurture(settings, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert f"created  {settings.topic_actions}" in created.stdout

    now = int(time.time() * 1000)
    events = trial_leads(8, now - 10 * HOUR_MS, HOUR_MS, random.Random(2), prefix="sec")
    _, core_actions = core_outputs(events, until=now, config=quiet_hours_off_config())
    core_sends = {a["action_id"] for a in core_actions if a["type"] == "send"}
    assert len(core_sends) >= 8
    env = {"NURTURE_SENDER_TRANSPORT": "smtp", "NURTURE_SENDER_SMTP_HOST": "127.0.0.1"}
    with SmtpSink() as smtp:
        env["NURTURE_SENDER_SMTP_PORT"] = str(smtp.port)
        with (
            WorkerProcess.from_settings(settings) as worker,
            SenderProcess.from_settings(settings, env=env, data_dir=tmp_path / "sender") as sender,
        ):
            worker.wait_ready()
            sender.wait_ready()
            run_sync(_produce(settings, events))
            worker.wait_processed(len(events))
            # the worker's own sends, read back over SASL_SSL: the oracle here, since the
            # email.sent events the sender publishes are inputs too (frequency caps count them)
            smtp.wait_for(len(core_sends), timeout=90)
            worker.wait_processed(len(events) + len(smtp.message_ids()))
            published = consume_all(
                settings.kafka_bootstrap_servers,
                settings.topic_actions,
                idle=3,
                auth=settings.kafka_auth(),
            )
            sends = {r["value"]["action_id"] for r in published if r["value"]["type"] == "send"}
            smtp.wait_for(len(sends), timeout=60)
            assert sender.outcome("delivered") == len(sends)
    assert len(sends) >= len(core_sends) // 2
    counts = smtp.counts()
    assert set(counts) == sends and max(counts.values()) == 1


@pytest.mark.parametrize("command", [("topics", "create"), ("sender",), ("worker",)])
def test_a_wrong_password_fails_fast_with_the_cause(
    secure_kafka: tuple[LocalKafka, BrokerTls], tmp_path: Path, command: tuple[str, ...]
) -> None:
    kafka, tls = secure_kafka
    settings = secure_settings(kafka, tls, tmp_path, "not-the-password")
    started = time.monotonic()
    result = nurture(settings, *command)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "SaslAuthenticationFailed" in result.stderr, result.stderr[-2000:]
    assert "NURTURE_KAFKA_SASL_PASSWORD" in result.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"
