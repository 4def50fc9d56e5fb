"""Replay over accounts with the simulator's customer personas: byte-identical outputs, each
persona's signature, the contract shape of the records, and the post-sale report section."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.config import load_config
from stream.offline.customers import CUSTOMER_PERSONAS, customer_persona
from stream.offline.replay import replay_file
from stream.offline.simulate import generate, write_file
from topics.outputs import AccountTransitionRecord, ActionRecord

ACCOUNT_OUTPUTS = ("account_transitions.jsonl", "account_actions.jsonl", "report.json")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("customers")
    events = root / "events.jsonl"
    write_file(events, generate(60, 90, seed=3, customers=2 * len(CUSTOMER_PERSONAS)))
    config = load_config()
    replay_file(events, root / "a", config)
    replay_file(events, root / "b", config)
    return events, root / "a", root / "b"


def _records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_account_replay_is_byte_identical(replayed: tuple[Path, Path, Path]) -> None:
    _events, a, b = replayed
    for name in ACCOUNT_OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert len(_records(a / "account_transitions.jsonl")) > 50


def test_account_records_match_the_contract(replayed: tuple[Path, Path, Path]) -> None:
    _events, a, _b = replayed
    for record in _records(a / "account_transitions.jsonl"):
        AccountTransitionRecord.model_validate(record)
    for record in _records(a / "account_actions.jsonl"):
        parsed = ActionRecord.model_validate(record)
        assert parsed.account_id is not None


SIGNATURES: dict[str, set[str]] = {
    "healthy_advocate": {"play_entered:advocacy", "advocacy.completed", "band:green"},
    "silent_after_golive": {"flag_raised:usage_drop"},
    "payment_failure": {"flag_raised:payment_failed", "play_entered:risk_renewal"},
    "urgent_ticket_burst": {"flag_raised:urgent_tickets", "flag_cleared:urgent_tickets"},
    "seats_growing": {"play_entered:expansion_nurture"},
    "renews": {"stage:renewal", "stage.renewed"},
    "cancels": {"stage:churned", "flag_raised:detractor"},
}


def test_each_customer_persona_shows_its_story(replayed: tuple[Path, Path, Path]) -> None:
    _events, a, _b = replayed
    seen: dict[str, set[str]] = defaultdict(set)
    for t in _records(a / "account_transitions.jsonl"):
        value = t["to_value"] if t["to_value"] is not None else t["from_value"]
        seen[t["account_id"]] |= {f"{t['kind']}:{value}", t["reason"]}
    assert set(SIGNATURES) == {name for name, _ in CUSTOMER_PERSONAS}
    for index in range(2 * len(CUSTOMER_PERSONAS)):
        account = f"AC-{index:05d}"
        persona = customer_persona(index)
        missing = SIGNATURES[persona] - seen[account]
        if persona == "healthy_advocate" and "advocacy.completed" in missing:
            # a holdout account is never asked; it shows the gate opening (play entered)
            missing.discard("advocacy.completed")
        assert not missing, f"{account} ({persona}) lacks {sorted(missing)}"


def test_report_has_the_post_sale_section(replayed: tuple[Path, Path, Path]) -> None:
    _events, a, _b = replayed
    doc = orjson.loads((a / "report.json").read_bytes())
    post = doc["post_sale"]
    assert post["accounts"] >= 2 * len(CUSTOMER_PERSONAS)
    rows = post["rows"]
    assert rows and {r["group"] for r in rows} <= {"nurtured", "holdout"}
    nurtured = post["totals"]["nurtured"]
    for key in ("activation_pct", "grr_pct", "nrr_pct", "churn_pct", "advocacy_rate_pct"):
        assert nurtured[key] is not None, key
    assert nurtured["churn_pct"] > 0 and nurtured["expansion_arr"] > 0
    page = (a / "report.html").read_text()
    assert page.count('class="postsale-row"') == len(rows)
