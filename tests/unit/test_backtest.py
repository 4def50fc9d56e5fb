"""Backtest: two configs differing in one threshold move results in the expected direction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream.core.config import DEFAULT_RULES, load_config, load_config_text
from stream.offline.backtest import backtest_file
from stream.offline.replay import replay_file
from stream.offline.simulate import generate, write_file


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bt") / "events.jsonl"
    write_file(path, generate(800, 30, seed=4))
    return path


def _rules(threshold: int) -> str:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    assert "mql_threshold: 50" in text
    return text.replace("mql_threshold: 50", f"mql_threshold: {threshold}")


def test_lower_mql_threshold_gives_more_mql_entries_and_explains_the_difference(
    sim_file: Path,
) -> None:
    a = load_config(None)
    b = load_config_text(_rules(35))
    doc = backtest_file(sim_file, a, b, sample=5)
    entries_a = doc["entries"]["A"]["mql_nurture"]
    entries_b = doc["entries"]["B"]["mql_nurture"]
    assert entries_b > entries_a > 0
    assert doc["differing_leads"] > 0 and len(doc["sample"]) == 5
    # every sampled difference names a rule and its signals; the MQL rule shows up
    reasons = set()
    for item in doc["sample"]:
        for side in ("A", "B"):
            if item[side] is not None:
                assert item[side]["reason"] and isinstance(item[side]["signals"], dict)
                reasons.add(item[side]["reason"])
    assert "mql.score_threshold" in reasons
    # the contribution rows carry both configs; mql rows differ in entries
    mql_rows = [r for r in doc["contribution"] if r["program"] == "mql_nurture"]
    assert sum(r["b_entries"] for r in mql_rows) == entries_b
    assert sum(r["a_entries"] for r in mql_rows) == entries_a


def test_same_config_twice_has_no_difference_and_matches_replay(
    sim_file: Path, tmp_path: Path
) -> None:
    config = load_config(None)
    doc = backtest_file(sim_file, config, config)
    assert doc["differing_leads"] == 0 and doc["sample"] == []
    assert doc["transitions"]["A"] == doc["transitions"]["B"]
    stats = replay_file(sim_file, tmp_path / "r", config, html=False)
    assert doc["transitions"]["A"] == stats.transitions
    assert doc["actions"]["A"] == stats.actions
    assert all(r["rate_delta"] in (0, None) for r in doc["contribution"])


def test_cli_backtest_prints_tables_and_writes_json(sim_file: Path, tmp_path: Path) -> None:
    rules_b = tmp_path / "b.yaml"
    rules_b.write_text(_rules(35), encoding="utf-8")
    out = tmp_path / "bt.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "backtest",
            str(sim_file),
            "--config",
            "default",
            "--config",
            str(rules_b),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pipeline contribution per program and ICP tier" in proc.stdout
    assert "leads take a different path" in proc.stdout
    doc = orjson.loads(out.read_bytes())
    assert doc["entries"]["B"]["mql_nurture"] > doc["entries"]["A"]["mql_nurture"]
