"""``replay_file`` / ``nurture replay`` with the real engine: outputs, determinism, gzip, dead
letters with line numbers, the --until horizon."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream.core.config import load_config
from stream.core.model import DAY_MS, HOUR_MS, ms_to_rfc3339, rfc3339_to_ms
from stream.offline.replay import replay_file
from stream.offline.simulate import generate, write_file

OUTPUTS = ("transitions.jsonl", "actions.jsonl", "dead_letter.jsonl", "report.json", "report.html")


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    write_file(path, generate(600, 30, seed=9))
    return path


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_same_input_gives_byte_identical_outputs_and_gzip_reads_the_same(
    sim_file: Path, tmp_path: Path
) -> None:
    config = load_config(None)
    a = replay_file(sim_file, tmp_path / "a", config)
    b = replay_file(sim_file, tmp_path / "b", config)
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(sim_file.read_bytes()))
    c = replay_file(gz, tmp_path / "c", config)
    assert a.transitions > 500 and a.actions > 500 and a.timers_fired > 50
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
    assert a == b == c
    report = orjson.loads((tmp_path / "a" / "report.json").read_bytes())
    assert report["replay"]["transitions"] == len(_lines(tmp_path / "a" / "transitions.jsonl"))
    assert report["pipeline"]["records"]["actions"] == a.actions
    assert set(report["pipeline"]["programs"]) >= {"mql_nurture", "trial_nurture"}


def test_dead_letters_carry_line_number_and_reason(tmp_path: Path) -> None:
    good = {
        "event_id": "e1",
        "type": "lead.created",
        "lead_id": "L1",
        "occurred_at": "2026-11-20T10:00:00Z",
        "properties": {"company_size": 200, "industry": "saas"},
    }
    lines = [
        orjson.dumps(good),
        b"",  # blank lines are skipped, not dead-lettered
        b"{not json",
        orjson.dumps({**good, "event_id": "e2", "type": "page.viewed", "properties": {"page": 3}}),
        orjson.dumps({k: v for k, v in good.items() if k != "lead_id"}),
        b"\xff\xfe",
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats = replay_file(path, tmp_path / "out", load_config(None), html=False)
    dead = _lines(tmp_path / "out" / "dead_letter.jsonl")
    assert [(d["line"], d["reason"]) for d in dead] == [
        (3, "invalid_json"),
        (4, "bad_properties:page.viewed"),
        (5, "missing_field:lead_id"),
        (6, "invalid_json"),
    ]
    assert dead[0]["original_text"] == "{not json"
    assert "original" in dead[3] and "original_text" not in dead[3]  # not UTF-8: base64
    assert stats.events == 1 and stats.dead_letters == 4
    assert not (tmp_path / "out" / "report.html").exists()


def _trial_lead(lead: str, t0: int) -> list[bytes]:
    events = [
        ("lead.created", 0, {"company_size": 300, "industry": "software"}),
        ("trial.started", 60_000, {}),
        ("session.started", 3 * HOUR_MS, {}),
        # sessions every few days keep the lead in trial nurture (no re-engagement for
        # silence), so each of the three checkpoints moves it and shows in the transitions
        *(("session.started", day * DAY_MS, {}) for day in (4, 8, 11, 13)),
    ]
    return [
        orjson.dumps(
            {
                "event_id": f"{lead}-{i}",
                "type": t,
                "lead_id": lead,
                "occurred_at": ms_to_rfc3339(t0 + off),
                "properties": props,
            }
        )
        for i, (t, off, props) in enumerate(events)
    ]


def test_until_is_a_horizon_for_timers_and_events(tmp_path: Path) -> None:
    t0 = rfc3339_to_ms("2026-11-02T00:00:00Z")
    path = tmp_path / "in.jsonl"
    later = orjson.dumps(
        {
            "event_id": "late-1",
            "type": "session.started",
            "lead_id": "L-other",
            "occurred_at": ms_to_rfc3339(t0 + 20 * DAY_MS),
        }
    )
    path.write_bytes(b"\n".join([*_trial_lead("L-a", t0), later]) + b"\n")
    config = load_config(None)
    # default horizon = last event (day 20): the 48 h, 7 d and 14 d checkpoints all fire
    full = replay_file(path, tmp_path / "full", config, html=False)
    reasons = [t["reason"] for t in _lines(tmp_path / "full" / "transitions.jsonl")]
    # a horizon one day in: no checkpoint yet, and the day-20 event is skipped
    cut = replay_file(path, tmp_path / "cut", config, until=t0 + DAY_MS, html=False)
    assert cut.after_until == 5 and cut.events == 3  # the sessions from day 4 on, day 20
    assert cut.timers_fired == 0 < full.timers_fired
    assert cut.pending_timers_at_end > 0
    checkpoints = [r for r in reasons if r.startswith("trial.checkpoint_")]
    assert checkpoints == [
        "trial.checkpoint_48h",
        "trial.checkpoint_7d",
        "trial.checkpoint_14d",
    ], reasons
    # past the last event, an explicit horizon still fires the timers due before it
    longer = replay_file(path, tmp_path / "longer", config, until=t0 + 60 * DAY_MS, html=False)
    assert longer.timers_fired >= full.timers_fired
    assert longer.until == ms_to_rfc3339(t0 + 60 * DAY_MS)


def test_cli_replay_prints_throughput_and_writes_outputs(sim_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", str(sim_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "events/s" in proc.stderr and "peak RSS" in proc.stderr
    assert proc.stdout.strip().endswith("report.html")
    for name in OUTPUTS:
        assert (out / name).exists(), name


def test_cli_jobs_default_is_the_cores_this_process_may_run_on() -> None:
    """A process pinned to one core (as a container's cpuset or taskset pins it) defaults to
    --jobs 1, whatever the machine's core count."""
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from stream.cli import build_parser; "
        "print(build_parser().parse_args(['replay', 'x.jsonl', '--out', 'o']).jobs)"
    )
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == "1"
