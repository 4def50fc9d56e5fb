"""The reference sender against a real SMTP server (aiosmtpd) and the real broker.

The actions are the pure core's own for a scenario of trial leads (the oracle), each published
twice as the worker's at-least-once re-send would, plus non-send actions, plus a send inside an
aborted transaction (read_committed must never see it). Every send must reach the mailbox exactly
once, also across a SIGKILL of the sender after a delivery and before its offset commit.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import orjson

from stream.core.model import HOUR_MS, ms_to_rfc3339
from tests.support.leads import trial_leads
from tests.support.reference import core_outputs
from tests.support.rules import quiet_hours_off_config
from tests.support.sender import SenderProcess, SmtpSink, wait_group_caught_up
from tests.support.worker import consume_all, produce_raw, run

if TYPE_CHECKING:
    from stream.settings import Settings

KILL_AFTER = 3


def scenario_actions(n_leads: int, seed: int) -> list[dict[str, Any]]:
    """The core's actions for trial leads whose checkpoints are all due already (quiet hours
    off: the sends are due now at any hour; the hold has its own test)."""
    now = int(time.time() * 1000)
    events = trial_leads(n_leads, now - 10 * HOUR_MS, HOUR_MS, random.Random(seed))
    _, actions = core_outputs(events, until=now, config=quiet_hours_off_config())
    return actions


def action_records(settings: Settings, actions: list[dict[str, Any]]) -> list[Any]:
    return [(settings.topic_actions, str(a["lead_id"]).encode(), orjson.dumps(a)) for a in actions]


async def _aborted_send(settings: Settings, action: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, transactional_id="sender-test-abort"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(
            settings.topic_actions, orjson.dumps(action), key=str(action["lead_id"]).encode()
        )
        await producer.abort_transaction()
    finally:
        await producer.stop()


def sender_for(settings: Settings, smtp: SmtpSink, **env: str) -> SenderProcess:
    base = {
        "NURTURE_SENDER_TRANSPORT": "smtp",
        "NURTURE_SENDER_SMTP_HOST": "127.0.0.1",
        "NURTURE_SENDER_SMTP_PORT": str(smtp.port),
    }
    return SenderProcess.from_settings(settings, env={**base, **env})


def test_each_send_arrives_once_across_a_kill_between_delivery_and_commit(
    kafka_settings: Settings,
) -> None:
    actions = scenario_actions(12, seed=5)
    sends = {a["action_id"]: a for a in actions if a["type"] == "send"}
    assert len(sends) >= 2 * KILL_AFTER and len(sends) < len(actions), "scenario too small"
    fake = dict(next(iter(sends.values())), action_id="aborted-send-1")
    run(_aborted_send(kafka_settings, fake))
    produce_raw(kafka_settings.kafka_bootstrap_servers, action_records(kafka_settings, actions))
    # the at-least-once re-send: every action again, same action_id
    produce_raw(kafka_settings.kafka_bootstrap_servers, action_records(kafka_settings, actions))

    with SmtpSink() as smtp:
        first = sender_for(kafka_settings, smtp, NURTURE_SENDER_FAULT_KILL_AFTER=str(KILL_AFTER))
        first.start()
        assert first.wait_exit() == -9, first.log_tail()
        assert len(smtp.message_ids()) == KILL_AFTER
        log = first.log_tail(100_000)
        killed_at = log.split("fault injection: SIGKILL after delivering ", 1)[1].split(",")[0]
        assert killed_at in sends

        with sender_for(kafka_settings, smtp) as second:
            second.wait_ready()
            wait_group_caught_up(
                kafka_settings.kafka_bootstrap_servers,
                f"{kafka_settings.app_id}-sender",
                kafka_settings.topic_actions,
            )
            smtp.wait_for(len(sends))
            delivered = second.outcome("delivered")
            duplicates = second.outcome("duplicate")
            ignored = second.outcome("ignored")
        # the action killed between delivery and commit came back and was skipped by its marker
        assert f"duplicate action {killed_at} skipped" in second.log_tail(1_000_000)

    counts = smtp.counts()
    assert set(counts) == set(sends), "exactly the oracle's sends, nothing aborted or extra"
    assert max(counts.values()) == 1, f"delivered twice: {[k for k, c in counts.items() if c > 1]}"
    assert delivered == len(sends) - KILL_AFTER
    assert duplicates >= len(sends)  # every re-sent copy, plus re-reads after the kill
    assert ignored > 0
    by_id = {r.action_id: r for r in smtp.received}
    sample = sends[killed_at]
    assert by_id[killed_at].message_id == f"<{killed_at}@nurture-stream>"
    assert by_id[killed_at].to == f"{sample['lead_id']}@example.invalid"
    assert by_id[killed_at].subject and sample["action_id"] in by_id[killed_at].body

    # email.sent closes the loop: one per delivered action, keyed by lead, action_id + template
    sent = consume_all(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_email_events,
        until=lambda r: len(r) >= len(sends),
        timeout=30,
    )
    got = [(r["key"], r["value"]["properties"]["action_id"]) for r in sent]
    assert sorted(got) == sorted((a["lead_id"], aid) for aid, a in sends.items())
    templates = {
        r["value"]["properties"]["action_id"]: r["value"]["properties"]["template"] for r in sent
    }
    assert templates == {aid: a["template"] for aid, a in sends.items()}


def test_held_action_survives_a_restart_and_waits_for_deliver_after(
    kafka_settings: Settings,
) -> None:
    actions = [a for a in scenario_actions(3, seed=8) if a["type"] == "send"]
    now_sends = actions[1:]
    with SmtpSink() as smtp:
        with sender_for(kafka_settings, smtp) as first:
            first.wait_ready()
            # due 20 s after the sender is ready: room for a loaded machine to hold it first
            due = int(time.time() * 1000) + 20_000
            held = dict(actions[0], deliver_after=ms_to_rfc3339(due))
            produce_raw(
                kafka_settings.kafka_bootstrap_servers,
                action_records(kafka_settings, [held, *now_sends]),
            )
            smtp.wait_for(len(now_sends))
            wait_group_caught_up(
                kafka_settings.kafka_bootstrap_servers,
                f"{kafka_settings.app_id}-sender",
                kafka_settings.topic_actions,
            )
            assert first.metric_sum("nurture_sender_held") == 1
            first.kill()  # the hold's offset is committed: only the store remembers it
            assert time.time() * 1000 < due, "too slow to show the hold before it fell due"
        assert held["action_id"] not in smtp.message_ids()
        with sender_for(kafka_settings, smtp) as second:
            second.wait_ready()
            assert "1 held" in second.log_tail(100_000)
            smtp.wait_for(len(now_sends) + 1, timeout=60)
            assert second.metric_sum("nurture_sender_held") == 0
    counts = smtp.counts()
    assert counts[held["action_id"]] == 1
    assert set(counts) == {a["action_id"] for a in actions}
    arrival = next(r.at for r in smtp.received if r.action_id == held["action_id"])
    assert arrival * 1000 >= due


def test_transport_failure_retries_then_dead_letters(kafka_settings: Settings) -> None:
    action = next(a for a in scenario_actions(2, seed=1) if a["type"] == "send")
    produce_raw(kafka_settings.kafka_bootstrap_servers, action_records(kafka_settings, [action]))
    with SmtpSink() as smtp:
        port = smtp.port
    env = {  # nothing listens on the port any more: every attempt fails
        "NURTURE_SENDER_TRANSPORT": "smtp",
        "NURTURE_SENDER_SMTP_HOST": "127.0.0.1",
        "NURTURE_SENDER_SMTP_PORT": str(port),
        "NURTURE_SENDER_MAX_ATTEMPTS": "3",
        "NURTURE_SENDER_BACKOFF_SECONDS": "0.05",
    }
    with SenderProcess.from_settings(kafka_settings, env=env) as sender:
        sender.wait_ready()
        dead = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_dead_letter,
            until=lambda r: len(r) >= 1,
            timeout=30,
        )
        assert sender.metric_sum("nurture_sender_attempt_failures_total") == 3
        assert sender.outcome("dead_lettered") == 1
    assert len(dead) == 1
    record = dead[0]["value"]
    assert record["reason"] == "delivery_failed"
    assert "3 attempts over smtp" in record["detail"]
    assert orjson.loads(record["original_text"])["action_id"] == action["action_id"]
    assert dead[0]["key"] == action["lead_id"]
    sent = consume_all(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_email_events, idle=1
    )
    assert sent == []
