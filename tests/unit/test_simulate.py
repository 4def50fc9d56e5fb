"""The simulator: deterministic per seed, contract-valid except the deliberate bad lines."""

from __future__ import annotations

import collections
from pathlib import Path

from stream.core.model import DAY_MS, rfc3339_to_ms
from stream.offline.simulate import DEFAULT_START, generate, persona_of, write_file
from topics.events import source_of
from topics.parse import InvalidEvent, parse_event


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write_file(a, generate(300, 20, seed=7))
    write_file(b, generate(300, 20, seed=7))
    write_file(c, generate(300, 20, seed=8))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_lines_parse_except_a_small_malformed_share_and_shapes_are_present() -> None:
    events = list(generate(2000, 30, seed=3))
    start = rfc3339_to_ms(DEFAULT_START)
    bad = 0
    types: collections.Counter[str] = collections.Counter()
    ids: collections.Counter[str] = collections.Counter()
    late = 0
    watermark = 0
    for sim in events:
        try:
            event = parse_event(sim.line, sim.lead_id.encode())
        except InvalidEvent:
            bad += 1
            continue
        assert sim.source == source_of(event.type)
        assert start <= event.at < start + 30 * DAY_MS
        types[event.type] += 1
        ids[event.event_id] += 1
        late += event.at < watermark - 3_600_000
        watermark = max(watermark, event.at)
    n = len(events)
    assert 5 * 2000 < n < 12 * 2000  # documented: ~6.8 lines per lead
    assert 0 < bad < 0.01 * n
    assert 0 < late < 0.02 * n  # out of order on purpose, but rare
    duplicates = sum(c - 1 for c in ids.values() if c > 1)
    assert 0 < duplicates < 0.03 * n
    # the playbook's shapes all occur
    for t in (
        "lead.created",
        "trial.started",
        "activation.completed",
        "page.viewed",
        "usage.reported",
        "email.unsubscribed",
        "email.bounced",
        "opportunity.created",
        "subscription.converted",
        "sales.contacted",
    ):
        assert types[t] > 0, t
    created = {e for e in ids if e.endswith("-000")}  # a lead's first event is its creation
    assert len(created) >= 1990  # (a few first lines are deliberately malformed)


def test_file_is_roughly_in_time_order_and_personas_have_documented_shares() -> None:
    events = list(generate(1000, 30, seed=5))
    deliver = [e.deliver_at for e in events]
    assert deliver == sorted(deliver)
    shares = collections.Counter(persona_of(5, i) for i in range(4000))
    assert abs(shares["researcher"] / 4000 - 0.18) < 0.03
    assert abs(shares["trial_early"] / 4000 - 0.16) < 0.03


def test_silent_signups_have_no_session_in_first_48h_and_early_trials_activate() -> None:
    by_lead: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    broken: set[str] = set()
    for sim in generate(1500, 30, seed=11):
        try:
            event = parse_event(sim.line)
        except InvalidEvent:
            broken.add(sim.lead_id)
            continue
        by_lead[event.lead_id].append((event.at, event.type))
    checked_silent = checked_early = 0
    for i in range(1500):
        lead = f"L-{i:07d}"
        events = sorted(by_lead.get(lead, []))
        if lead in broken or not events:
            continue
        created = events[0][0]
        early = {t for at, t in events if at - created < 48 * 3_600_000}
        persona = persona_of(11, i)
        if persona == "silent_signup":
            assert "session.started" not in early
            checked_silent += 1
        elif persona == "trial_early" and events[-1][0] - created > 48 * 3_600_000:
            assert "activation.completed" in early
            checked_early += 1
    assert checked_silent > 50 and checked_early > 50


def test_time_scale_compresses_offsets_toward_start() -> None:
    start = 1_800_000_000_000
    lines = [e for e in generate(50, 10, seed=2, start=start, time_scale=864.0)]
    times = []
    for sim in lines:
        try:
            times.append(parse_event(sim.line).at)
        except InvalidEvent:
            continue
    assert min(times) >= start
    assert max(times) <= start + 10 * DAY_MS / 864 + 1  # ten days in ~1000 s
    assert max(times) - min(times) > 500_000


def test_kafka_mode_routes_each_source_to_its_configured_input_topic() -> None:
    from stream.commands.simulate import topic_for
    from stream.settings import Settings

    settings = Settings(
        topic_product_events="p.topic", topic_email_events="e.topic", topic_crm_events="c.topic"
    )
    assert topic_for("product", settings) == "p.topic"
    assert topic_for("email", settings) == "e.topic"
    assert topic_for("crm", settings) == "c.topic"
    seen = {sim.source for sim in generate(200, 10, seed=1)}
    assert seen == {"product", "email", "crm"}
