"""Unit tests of the core's building blocks: codec, windows, ICP tiers, ids."""

from __future__ import annotations

import itertools
import random
from typing import get_args

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.config import load_config, load_config_text
from stream.core.icp import icp_tier
from stream.core.ids import action_id, holdout_bucket
from stream.core.model import DAY_MS, Timer
from stream.core.state import LeadState, decode_state, encode_state, peek_program, seen_list
from stream.core.synth import drive, stream
from stream.core.windows import count_in, insert_sorted, max_in_window_containing, with_item

CFG = load_config()


FULL = LeadState(
    lead_id="L-1",
    account_id="A-1",
    icp_tier="high",
    company_size=120,
    industry="SaaS",
    program="trial_nurture",
    program_state="activated",
    program_entered_at=5,
    program_version="v1",
    holdout=True,
    reengage_context="trial",
    watermark=99,
    last_activity_at=98,
    last_movement_at=97,
    score=55,
    mql_reached=True,
    sales_contacted=False,
    customer=True,
    email_blocked="unsubscribed",
    score_events=((1, 15), (2, 10)),
    signal_events=((3, "d:pricing"), (4, "c:comparison")),
    trial_start=7,
    activated_at=8,
    features=("a", "b"),
    sessions=(9, 10),
    checkpoints=(("48h", "activated"),),
    limits=(("seats", 20.0), ("api_calls", 1000.0)),
    usage=(("seats", 11, 16.0),),
    expansion_fired=("seats:20",),
    send_times=(12, 13),
    seen_ids="\x1fe-1\x1fe-2\x1f",
    timers=(Timer(100, "trial.7d@5", "trial.7d"), Timer(200, "silence#3@200", "silence")),
    timer_seq=4,
)


def test_codec_round_trips_every_field_exactly() -> None:
    back = decode_state(encode_state(FULL))
    assert back == FULL and type(back) is LeadState
    assert type(back.timers[0]) is Timer and back.score_events[0] == (1, 15)
    assert type(back.features) is tuple and type(back.usage[0]) is tuple
    assert decode_state(encode_state(LeadState("x"))) == LeadState("x")


def test_codec_interns_the_small_vocabulary() -> None:
    """A million decoded leads share their tier, program, state and kind strings."""
    a, b = decode_state(encode_state(FULL)), decode_state(encode_state(FULL))
    assert a.program is b.program and a.program_state is b.program_state
    assert a.signal_events[0][1] is b.signal_events[0][1]
    assert a.timers[0].kind is b.timers[0].kind and a.checkpoints[0][1] is b.checkpoints[0][1]


#: a state as the version-1 codec (orjson array, NamedTuple era) stored it
V1_BYTES = (
    b'[1,"L-1","A-1","high",120,"saas","trial_nurture","activated",5,"v1",true,"trial",99,98,'
    b'97,55,true,false,true,"unsubscribed",[[1,15]],[[3,"d:pricing"]],7,8,["api"],[9],'
    b'[["48h","activated"]],[["seats",20.0]],[["seats",11,16.0]],["seats:20"],[12],'
    b'["e-1","e-2"],[[100,"trial.7d@5","trial.7d"]],4]'
)


def test_codec_still_reads_version_1_states() -> None:
    """Stores written before the msgspec record keep working after an upgrade."""
    s = decode_state(V1_BYTES)
    assert s.lead_id == "L-1" and s.program == "trial_nurture" and s.holdout is True
    assert s.signal_events == ((3, "d:pricing"),) and s.checkpoints == (("48h", "activated"),)
    assert s.usage == (("seats", 11, 16.0),) and s.features == ("api",)
    assert seen_list(s) == ["e-1", "e-2"]
    assert s.timers == (Timer(100, "trial.7d@5", "trial.7d"),) and s.timer_seq == 4
    assert decode_state(encode_state(s)) == s  # written back in the current layout


def test_codec_rejects_foreign_bytes() -> None:
    for junk in (b"[]", b"{}", b"[2, 1]", b'"x"', b"\x92\x07\x90", b"\xc1", b"[1,2]"):
        with pytest.raises(ValueError):
            decode_state(junk)


def test_state_stays_small_whatever_the_history() -> None:
    """Bounded windows: a lead with a long, busy history is still a few hundred bytes."""
    states: dict[str, LeadState] = {}
    for _ in drive(stream(3, 40, 300), CFG, states):
        pass
    sizes = sorted(len(encode_state(s)) for s in states.values())
    assert sizes[-1] < 3000, sizes[-5:]
    for s in states.values():
        assert len(seen_list(s)) <= CFG.dedupe.max_event_ids
        assert len(s.signal_events) <= CFG.signals.max_events
        assert len(s.score_events) <= CFG.score.max_contributions
        assert len(s.sessions) <= CFG.trial.max_sessions_tracked


def _brute(times: list[int], t: int, width: int) -> int:
    return max(sum(1 for x in times if a <= x < a + width) for a in range(t - width + 1, t + 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(1, 10), st.data())
def test_max_in_window_containing_matches_brute_force(
    times: list[int], width: int, data: st.DataObject
) -> None:
    times.sort()
    t = data.draw(st.sampled_from(times))
    assert max_in_window_containing(times, t, width) == _brute(times, t, width)


def test_window_helpers_keep_order_and_bound() -> None:
    rng = random.Random(1)
    items: list[int] = []
    for _ in range(200):
        insert_sorted(items, rng.randrange(1000), 16)
    assert items == sorted(items) and len(items) == 16
    assert count_in([1, 2, 3, 10], 2, 10) == 2


@given(st.lists(st.integers(0, 50), max_size=60), st.integers(1, 8))
def test_with_item_equals_insert_sorted_on_a_copy(values: list[int], cap: int) -> None:
    """The tuple form the facts use gives what the list form gives, whatever the order."""
    as_list: list[int] = []
    as_tuple: tuple[int, ...] = ()
    for v in values:
        insert_sorted(as_list, v, cap)
        as_tuple = with_item(as_tuple, v, cap)
        assert as_tuple == tuple(as_list)


@pytest.mark.parametrize(
    ("size", "industry", "tier"),
    [
        (None, None, "unknown"),
        (9, "saas", "out"),
        (10, "saas", "medium"),
        (None, "government", "out"),
        (3000, " Non-Profit ", "out"),
        (50, "SaaS", "high"),
        (5000, "ecommerce", "high"),
        (5001, "ecommerce", "medium"),
        (None, "saas", "medium"),
        (800, None, "medium"),
    ],
)
def test_icp_tier(size: int | None, industry: str | None, tier: str) -> None:
    assert icp_tier(size, industry, CFG.icp) == tier


def test_icp_lists_are_case_insensitive_in_the_file() -> None:
    c = load_config_text("version: x\nicp: {target_industries: [SaaS, 'Dev Tools']}")
    assert icp_tier(100, "dev tools", c.icp) == "high"


def test_ids_are_stable_across_processes() -> None:
    # fixed values: Python's salted hash() would change these between runs
    assert action_id("L-1", "e-1", "send", "t") == "6e3f38d35aab6f0cdb6ae3eb"
    assert action_id("L-1", "e-1", "send", "t") != action_id("L-1", "e-2", "send", "t")
    assert len(action_id("L", "c", "send", "t")) == 24
    assert holdout_bucket("L-1", "mql_nurture") == holdout_bucket("L-1", "mql_nurture")
    buckets = [holdout_bucket(f"L{i}", "trial_nurture") for i in range(5000)]
    assert min(buckets) >= 0 and max(buckets) < 100
    assert 4.0 < 100 * sum(b < 5 for b in buckets) / len(buckets) < 6.0


def test_synthetic_stream_is_deterministic_and_time_ordered() -> None:
    a = list(stream(5, 20, 10))
    assert a == list(stream(5, 20, 10))
    assert all(x.at <= y.at for x, y in itertools.pairwise(a))
    assert len({e.lead_id for e in a}) == 20
    assert a[-1].at - a[0].at < 200 * DAY_MS


def test_outputs_fit_the_contract_records() -> None:
    """Every transition and action of a busy synthetic stream serialises (orjson) and
    validates against the contract models of topics.outputs."""
    import orjson

    from topics.outputs import ActionRecord, Program, TransitionRecord

    programs = set(get_args(Program))
    n_t = n_a = 0
    for r in drive(stream(9, 150, 25), CFG, {}):
        for t in r.transitions:
            rec = t.to_record()
            TransitionRecord.model_validate_json(orjson.dumps(rec))
            assert t.to_program in programs | {"prospect"}, t.to_program
            n_t += 1
        for a in r.actions:
            ActionRecord.model_validate_json(orjson.dumps(a.to_record()))
            assert a.type != "skipped" or a.skip_reason in (
                "frequency_cap",
                "unsubscribed",
                "hard_bounced",
                "holdout",
            )
            n_a += 1
    assert n_t > 300 and n_a > 300


def test_unchanged_timers_are_the_same_tuple() -> None:
    """A step that does not touch the timers returns the very same tuple (runtimes can skip
    re-indexing on identity)."""
    from stream.core.engine import step
    from stream.core.model import Event

    t0 = 1_790_000_000_000
    s = step(None, Event("a", "trial.started", "L", t0), CFG).state
    assert len(s.timers) == 3
    r = step(s, Event("b", "email.opened", "L", t0 + 1), CFG)
    assert r.timers is s.timers and r.state.timers is s.timers
    r = step(s, Event("c", "upgrade_cta.clicked", "L", t0 + 2), CFG)  # handoff: timers dropped
    assert r.timers == ()


_DIGEST = """
import hashlib, orjson
from stream.core.synth import stream, drive
from stream.core.config import load_config
from stream.core.state import encode_state
h = hashlib.sha256()
states = {}
for r in drive(stream(4, 120, 20), load_config(), states):
    for t in r.transitions: h.update(orjson.dumps(t.to_record()))
    for a in r.actions: h.update(orjson.dumps(a.to_record()))
for k in sorted(states): h.update(encode_state(states[k]))
print(h.hexdigest())
"""


def test_outputs_identical_across_processes_and_hash_seeds() -> None:
    """Replay determinism does not depend on the process (salted str hashing, set order)."""
    import os
    import subprocess
    import sys

    digests = set()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_peek_program_reads_both_codec_versions() -> None:
    assert peek_program(encode_state(FULL)) == ("trial_nurture", "activated")
    assert peek_program(V1_BYTES) == ("trial_nurture", "activated")
    assert peek_program(encode_state(LeadState("x"))) == (None, None)
    for junk in (b"\x92\x07\x90", b"\xc1", b"[1,2]"):
        with pytest.raises(ValueError):
            peek_program(junk)


def _strftime_rfc3339(ms: int) -> str:
    """The rendering ms_to_rfc3339 had (strftime of the whole instant): the oracle."""
    import time

    seconds, millis = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}Z" if millis else text + "Z"


@settings(max_examples=2000, deadline=None)
@given(st.integers(-(10**12), 253_402_300_799_999))  # 1938 .. 9999-12-31T23:59:59.999Z
def test_rfc3339_rendering_equals_strftime_of_the_instant(ms: int) -> None:
    """Every output's ``at`` text: the per-day cached date plus arithmetic time of day gives
    strftime's text for any instant (outputs stay byte-identical)."""
    from stream.core.model import ms_to_rfc3339, rfc3339_to_ms

    assert ms_to_rfc3339(ms) == _strftime_rfc3339(ms)
    assert rfc3339_to_ms(ms_to_rfc3339(ms)) == ms


def test_rfc3339_rendering_at_day_and_second_edges() -> None:
    from stream.core.model import ms_to_rfc3339

    for ms in (0, 1, 999, 1000, DAY_MS - 1, DAY_MS, -1, -DAY_MS, 1_790_000_000_000):
        assert ms_to_rfc3339(ms) == _strftime_rfc3339(ms)
    assert ms_to_rfc3339(DAY_MS - 1) == "1970-01-01T23:59:59.999Z"
    assert ms_to_rfc3339(-1) == "1969-12-31T23:59:59.999Z"


def test_every_state_keeps_its_timers_sorted_by_due() -> None:
    """The worker reads a lead's next due timer as ``timers[0]`` (processor._next_due and
    _fire_due): every step result's state keeps its timers sorted, and so does the codec."""
    config = load_config()
    checked = 0
    for result in drive(stream(3, 300, 20), config):
        timers = result.state.timers
        assert list(timers) == sorted(timers)
        assert decode_state(encode_state(result.state)).timers == timers
        checked += len(timers) > 1
    assert checked > 100  # states with several pending timers were seen


# --- company size: the state stores an integer the codec can hold -----------------------------
@pytest.mark.parametrize(
    ("size", "kept"),
    [
        pytest.param(2500, 2500, id="a_plain_size_is_kept"),
        pytest.param(2500.0, 2500, id="an_integral_float_is_kept_as_int"),
        pytest.param(10_000_000, 10_000_000, id="the_bound_is_kept"),
        pytest.param(1.8446744073709552e19, None, id="past_2_64_is_ignored"),
        pytest.param(10**30, None, id="a_huge_int_is_ignored"),
        pytest.param(float("inf"), None, id="infinity_is_ignored"),
        pytest.param(-5, None, id="a_negative_size_is_ignored"),
    ],
)
def test_company_size_outside_the_bound_is_ignored_and_the_state_encodes(
    size: float, kept: int | None
) -> None:
    from stream.core.facts import MAX_COMPANY_SIZE, update_firmographics
    from topics.parse import InvalidEvent, parse_event

    d = LeadState(lead_id="L1")
    update_firmographics(d, {"company_size": size}, CFG)
    assert d.company_size == kept
    assert decode_state(encode_state(d)).company_size == kept  # OverflowError before the bound
    # the contract has the same bound: a message past it is dead-lettered at the boundary
    body = {
        "event_id": "e1",
        "type": "lead.created",
        "lead_id": "L1",
        "occurred_at": "2026-11-20T10:00:00Z",
        "properties": {"company_size": MAX_COMPANY_SIZE + 1},
    }
    with pytest.raises(InvalidEvent):
        parse_event(orjson.dumps(body), b"L1", key_required=True)
