"""Everything the engine emits for realistic traffic validates against the published contract."""

from __future__ import annotations

from pathlib import Path

import orjson

from stream.core.config import load_config
from stream.offline.replay import replay_file
from stream.offline.simulate import generate, write_file
from topics.outputs import AccountTransitionRecord, ActionRecord, TransitionRecord


def test_replayed_outputs_validate_against_the_contract_models(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_file(events, generate(leads=300, days=45, seed=11))
    out = tmp_path / "out"
    replay_file(events, out, load_config(), html=False)
    transitions = (out / "transitions.jsonl").read_bytes().splitlines()
    actions = (out / "actions.jsonl").read_bytes().splitlines()
    assert len(transitions) > 300 and len(actions) > 300
    programs = set()
    for line in transitions:
        record = TransitionRecord.model_validate(orjson.loads(line))
        programs.add(record.to_program)
    for line in actions:
        ActionRecord.model_validate(orjson.loads(line))
    # realistic traffic reaches every structured program and the main exits; expansion of a
    # customer whose users belong to an account (every simulated lead) is the account's play
    assert {"mql_nurture", "trial_nurture", "re_engagement"} <= programs
    assert {"low_touch", "sales", "customer"} <= programs
    assert "expansion_nurture" not in programs
    plays = set()
    for line in (out / "account_transitions.jsonl").read_bytes().splitlines():
        t = AccountTransitionRecord.model_validate(orjson.loads(line))
        if t.kind == "play_entered":
            plays.add(t.to_value)
    assert "expansion_nurture" in plays
