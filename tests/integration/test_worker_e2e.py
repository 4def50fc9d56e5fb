"""The worker end to end on a real broker: scenarios give what the core gives; bad input is
dead-lettered with a reason and never stops the worker; the lead view and its token.

Event times are a year in the future, so the wall clock never overtakes the partitions' stream
time: timers fire on event time only, as in replay. A lead's events span three topics; the
whole input is on the broker before the worker starts, and the worker reads each partition's
three topics merged by ``occurred_at``. The oracle is replay of the same events
(:func:`tests.support.reference.replay_outputs`); every lead ends with an event at the same
time, so every partition's stream time ends where replay's watermark does.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339, rfc3339_to_ms
from tests.support.reference import by_lead, core_outputs, dedupe_actions, replay_outputs
from tests.support.worker import WorkerProcess, consume_all, produce_events, produce_raw

if TYPE_CHECKING:
    from stream.settings import Settings

TOKEN = "s3cret-token"


def _base() -> int:
    return (int(time.time() * 1000) // DAY_MS + 365) * DAY_MS


def journeys(base: int, copies: int = 3) -> list[list[dict[str, Any]]]:
    """Lead journeys covering every program and exit; ``copies`` leads per journey."""
    out: list[list[dict[str, Any]]] = []
    for c in range(copies):

        def lead(name: str, steps: list[tuple[int, str, dict[str, Any]]], c: int = c) -> None:
            lead_id = f"{name}-{c}"
            out.append(
                [
                    {
                        "event_id": f"{lead_id}-{i}",
                        "type": etype,
                        "lead_id": lead_id,
                        "account_id": f"A-{lead_id}",
                        "occurred_at": ms_to_rfc3339(base + c * 1000 + at),
                        "properties": props,
                    }
                    for i, (at, etype, props) in enumerate(steps)
                ]
            )

        fit = {"company_size": 300, "industry": "saas", "country": "DE"}
        lead(
            "mql-sql",
            [
                (0, "lead.created", fit),
                (HOUR_MS, "page.viewed", {"page": "pricing"}),
                (2 * HOUR_MS, "content.downloaded", {"content": "case_study"}),
                (DAY_MS, "page.viewed", {"page": "comparison"}),
                (2 * DAY_MS, "page.viewed", {"page": "pricing"}),
                (3 * DAY_MS, "roi_calculator.completed", {}),
                (3 * DAY_MS + HOUR_MS, "email.replied", {"intent": "demo_request"}),
            ],
        )
        lead(
            "trial-activated",
            [
                (0, "lead.created", fit),
                (HOUR_MS, "trial.started", {}),
                (2 * HOUR_MS, "session.started", {}),
                (3 * HOUR_MS, "activation.completed", {}),
                (4 * HOUR_MS, "feature.used", {"feature": "reports"}),
                (5 * HOUR_MS, "feature.used", {"feature": "alerts"}),
                (3 * DAY_MS, "feature.used", {"feature": "api"}),
                (4 * DAY_MS, "page.viewed", {"page": "pricing"}),
                (5 * DAY_MS, "subscription.converted", {"plan": "team", "seats_limit": 10}),
            ],
        )
        lead(
            "trial-silent",
            [
                (0, "lead.created", {"company_size": 60, "industry": "fintech"}),
                (HOUR_MS, "trial.started", {}),
                (3 * DAY_MS, "email.opened", {}),
                (9 * DAY_MS, "email.opened", {}),
                (30 * DAY_MS, "email.opened", {}),
            ],
        )
        lead(
            "unsubscribed",
            [
                (0, "lead.created", fit),
                (HOUR_MS, "email.unsubscribed", {}),
                (2 * HOUR_MS, "trial.started", {}),
                (4 * DAY_MS, "session.started", {}),
            ],
        )
        lead(
            "out-of-icp",
            [
                (0, "lead.created", {"company_size": 4, "industry": "consumer"}),
                (HOUR_MS, "page.viewed", {"page": "pricing"}),
                (2 * HOUR_MS, "trial.started", {}),
            ],
        )
        lead(
            "expansion",
            [
                (0, "lead.created", fit),
                (HOUR_MS, "subscription.converted", {"plan": "team", "seats_limit": 10}),
                (DAY_MS, "usage.reported", {"metric": "seats", "value": 9, "limit": 10}),
                (2 * DAY_MS, "usage.reported", {"metric": "records", "value": 1200}),
                (3 * DAY_MS, "upgrade_cta.clicked", {"tier": "business"}),
            ],
        )
        lead(
            "duplicates",
            [
                (0, "lead.created", fit),
                (HOUR_MS, "page.viewed", {"page": "pricing"}),
            ],
        )
        out[-1].append(dict(out[-1][1]))  # the same event_id again: processed once
    return out


def as_records(settings: Settings, events: list[dict[str, Any]]) -> list[Any]:
    from tests.support.worker import topic_for_event

    return [
        (topic_for_event(e, settings), str(e["lead_id"]).encode(), json.dumps(e).encode())
        for e in events
    ]


def test_scenarios_end_to_end_match_the_core(kafka_settings: Settings) -> None:
    leads = journeys(_base())
    events = [e for j in leads for e in j]
    flush_at = max(rfc3339_to_ms(e["occurred_at"]) for e in events) + HOUR_MS
    events += [
        {
            "event_id": f"flush-{j[0]['lead_id']}",
            "type": "email.opened",
            "lead_id": j[0]["lead_id"],
            "occurred_at": ms_to_rfc3339(flush_at),
        }
        for j in leads
    ]
    events.sort(key=lambda e: rfc3339_to_ms(e["occurred_at"]))
    want_tr, want_ac = replay_outputs(events)
    assert len(want_ac) > 20 and len(want_tr) > 20  # the journeys do exercise the rules

    # the whole input is on the broker before the worker starts (a backlog over three topics)
    produce_events(kafka_settings, events)
    with WorkerProcess.from_settings(kafka_settings, env={"NURTURE_WEB_TOKEN": TOKEN}) as worker:
        worker.wait_ready()
        bootstrap = kafka_settings.kafka_bootstrap_servers
        got_ac = consume_all(
            bootstrap,
            kafka_settings.topic_actions,
            until=lambda r: len(r) >= len(want_ac),
            timeout=60,
        )
        got_tr = consume_all(
            bootstrap,
            kafka_settings.topic_transitions,
            until=lambda r: len(r) >= len(want_tr),
            timeout=60,
        )

        # the lead view: state, pending timers, last transitions with reasons; token enforced
        status, _ = worker.get("/leads/trial-silent-0")
        assert status == 401
        status, doc = worker.get("/leads/trial-silent-0", token=TOKEN)
        assert status == 200, doc
        worker.wait_processed(len(events), timeout=60)
        mine = [t for t in want_tr if t["lead_id"] == "trial-silent-0"]
        assert doc["program"] == mine[-1]["to_program"]
        shown = ("from_program", "from_state", "to_program", "to_state", "reason", "caused_by")
        assert doc["last_transitions"] == [
            {**{k: t[k] for k in shown}, "at": t["at"]} for t in mine[-10:]
        ]
        assert all(t["reason"] for t in doc["last_transitions"])
        assert isinstance(doc["pending_timers"], list)
        assert worker.get("/leads/nobody", token=TOKEN)[0] == 404
        assert worker.get("/livez")[0] == 200

    assert all(r["key"] == r["value"]["lead_id"] for r in got_ac + got_tr)
    actions, dups = dedupe_actions(r["value"] for r in got_ac)
    assert dups == 0, "a clean run re-sends nothing"
    assert actions == {a["action_id"]: a for a in want_ac}
    assert by_lead(r["value"] for r in got_tr) == by_lead(want_tr)


def malformed(settings: Settings, n: int) -> list[tuple[str, bytes | None, bytes, str]]:
    """``n`` bad messages of many shapes: (topic, key, value, expected reason prefix)."""
    topic = settings.topic_product_events
    good = {
        "event_id": "x",
        "type": "page.viewed",
        "lead_id": "bad-lead",
        "occurred_at": "2026-11-20T10:00:00Z",
        "properties": {"page": "pricing"},
    }

    def doc(**changes: Any) -> bytes:
        d = dict(good)
        for k, v in changes.items():
            if v is ...:
                d.pop(k)
            else:
                d[k] = v
        return json.dumps(d).encode()

    shapes: list[tuple[bytes | None, bytes, str]] = [
        (b"bad-lead", b"not json at all", "invalid_json"),
        (b"bad-lead", b"\xff\xfe\x00garbage", "invalid_json"),
        (b"bad-lead", b"", "invalid_json"),
        (b"bad-lead", b"[1, 2, 3]", "not_an_object"),
        (b"bad-lead", b"42", "not_an_object"),
        (b"bad-lead", doc(event_id=...), "missing_field"),
        (b"bad-lead", doc(lead_id=...), "missing_field"),
        (b"bad-lead", doc(type=...), "missing_field"),
        (b"bad-lead", doc(occurred_at=...), "missing_field"),
        (b"bad-lead", doc(event_id=17), ""),
        (b"bad-lead", doc(lead_id=["a"]), ""),
        (b"bad-lead", doc(occurred_at="yesterday"), "bad_occurred_at"),
        (b"bad-lead", doc(occurred_at="2026-11-20T10:00:00"), "bad_occurred_at"),
        (b"bad-lead", doc(type="page.exploded"), "unknown_type"),
        (b"bad-lead", doc(properties={"page": 7}), "bad_properties"),
        (b"bad-lead", doc(properties="pricing"), "bad_properties"),
        (b"bad-lead", doc(type="usage.reported", properties={"metric": "seats"}), "bad_prop"),
        (b"other-lead", doc(), "key_mismatch"),
        (None, doc(), "missing_key"),
        (b"bad-lead", doc(account_id=5), ""),
        (b"bad-lead", b'{"event_id": "big", "pad": "' + b"x" * 200_000 + b'"}', "too_large"),
        (b"bad-lead", b"{" * 100_000, ""),
    ]
    out = []
    for i in range(n):
        key, value, reason = shapes[i % len(shapes)]
        out.append((topic, key, value, reason))
    return out


def test_bad_input_is_dead_lettered_and_never_stops_the_worker(kafka_settings: Settings) -> None:
    base = _base()
    good = [
        {
            "event_id": f"g-{i}",
            "type": "lead.created" if i % 2 == 0 else "lead.updated",
            "lead_id": f"good-{i // 2}",
            "occurred_at": ms_to_rfc3339(base + i),
            # both on the CRM topic: a lead's two events keep their order
            "properties": {"company_size": 100 + i if i % 2 == 0 else 5, "industry": "saas"},
        }
        for i in range(400)
    ]
    bad = malformed(kafka_settings, 300)
    # interleave: each lead's two events stay in order on their topics; bad ones in between
    records: list[tuple[str, bytes | None, bytes | None]] = []
    g = as_records(kafka_settings, good)
    for i in range(max(len(g), len(bad))):
        if i < len(g):
            records.append(g[i])
        if i < len(bad):
            records.append(bad[i][:3])
    want_tr, _ = core_outputs(good)

    with WorkerProcess.from_settings(kafka_settings) as worker:
        worker.wait_ready()
        produce_raw(kafka_settings.kafka_bootstrap_servers, records)
        worker.wait_processed(len(records), timeout=90)
        assert worker.running()
        dead = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_dead_letter,
            until=lambda r: len(r) >= len(bad),
            timeout=60,
        )
        got_tr = consume_all(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_transitions,
            until=lambda r: len(r) >= len(want_tr),
            timeout=60,
        )
        # still alive and processing after all of that
        produce_events(kafka_settings, [dict(good[0], event_id="after", lead_id="late-lead")])
        worker.wait_processed(len(records) + 1, timeout=30)

    assert len(dead) == len(bad)
    expected = {(key, value): reason for _t, key, value, reason in bad}
    seen = []
    for rec in dead:
        v = rec["value"]
        key = rec["key"].encode() if rec["key"] is not None else None
        original = base64.b64decode(v["original"])
        assert not v.get("original_truncated")
        assert (key, original) in expected, v["reason"]
        want = expected[(key, original)]
        assert v["reason"] and v["reason"].startswith(want), (v["reason"], want)
        assert v["topic"] == kafka_settings.topic_product_events and v["offset"] >= 0
        seen.append((key, original))
    assert sorted(seen, key=repr) == sorted(((k, val) for _t, k, val, _r in bad), key=repr)
    reasons = {r["value"]["reason"].split(":")[0] for r in dead}
    assert len(reasons) >= 8, reasons
    assert by_lead(r["value"] for r in got_tr) == by_lead(want_tr)
