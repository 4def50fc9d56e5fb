"""The simulator's nurture effect per email template (issue 11, part 3): the rules' own sends
decide who receives a template, and only those leads' opportunities move.

Oracle: the replay of the simulated file (its ``actions.jsonl``) says who was sent the
template; the simulator's closed loop must agree with it.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.commands.simulate import parse_effect
from stream.core.config import load_config_text
from stream.offline.personas import NurtureEffect
from stream.offline.replay import replay_file
from stream.offline.simulate import generate, write_file
from tests.unit.test_report_stats import _lift, _rules

TEMPLATE = "trial_nurture.feature_depth"  # the 48h checkpoint's email to activated trials


def _opportunity_leads(path: Path) -> set[str]:
    leads = set()
    for line in path.read_bytes().splitlines():
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("type") == "opportunity.created":
            leads.add(doc["lead_id"])
    return leads


def _sent(folder: Path, template: str) -> set[str]:
    return {
        record["lead_id"]
        for record in map(orjson.loads, (folder / "actions.jsonl").read_bytes().splitlines())
        if record["type"] == "send" and record["template"] == template
    }


def test_a_template_effect_moves_only_the_leads_the_rules_sent_it(tmp_path: Path) -> None:
    none = NurtureEffect(lift={})
    big = NurtureEffect(lift={}, templates={TEMPLATE: 3.0})
    write_file(tmp_path / "none.jsonl", generate(600, 40, seed=4, effect=none))
    write_file(tmp_path / "big.jsonl", generate(600, 40, seed=4, effect=big))
    before, after = (_opportunity_leads(tmp_path / n) for n in ("none.jsonl", "big.jsonl"))
    gained = after - before
    assert before <= after  # the same draws: an effect only adds opportunities
    assert len(gained) >= 10, gained
    replay_file(tmp_path / "big.jsonl", tmp_path / "out", load_config_text(_rules(5.0)), html=False)
    receivers = _sent(tmp_path / "out", TEMPLATE)
    assert gained <= receivers, gained - receivers  # every gain was sent the template
    assert receivers - after  # and not every receiver converted: a chance, not a rule


@pytest.fixture(scope="module")
def template_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A large effect of one trial template and none anywhere else, a 25% holdout (the rules
    the closed loop runs are the replay's)."""
    folder = tmp_path_factory.mktemp("template-effect")
    rules = load_config_text(_rules(25.0))
    effect = NurtureEffect(lift={}, holdout_pct=25.0, templates={TEMPLATE: 2.0}, rules=rules)
    write_file(folder / "events.jsonl", generate(1200, 60, seed=5, effect=effect))
    replay_file(folder / "events.jsonl", folder / "out", rules, html=False)
    doc: dict[str, object] = orjson.loads((folder / "out" / "report.json").read_bytes())
    return doc


def test_a_large_template_effect_shows_as_the_programs_lift_and_no_effect_does_not(
    template_report: dict[str, object],
) -> None:
    """The holdout is never sent the template, so its effect is the program's randomised lift;
    MQL nurture has no effect at all."""
    trial = _lift(template_report, "trial_nurture", "high")
    mql = _lift(template_report, "mql_nurture", "high")
    assert min(trial["treated_entries"], mql["control_entries"]) >= 30  # type: ignore[type-var]
    assert trial["status"] == "significant", trial
    assert trial["difference"]["low"] > 0  # type: ignore[index]
    assert mql["status"] == "not_significant", mql


def test_template_rows_carry_their_interval(template_report: dict[str, object]) -> None:
    rows = template_report["pipeline"]["templates"]["trial_nurture"][TEMPLATE]  # type: ignore[index]
    high = rows["high"]
    assert high["interval"]["treated_entries"] == high["receivers"] >= 30
    assert high["interval"]["status"] in {"significant", "not_significant"}


@pytest.mark.parametrize(
    ("item", "program", "template"),
    [
        ("trial_nurture=1.5", {"trial_nurture": 1.5}, {}),
        ("trial_nurture.week_one=0.8", {}, {"trial_nurture.week_one": 0.8}),
    ],
)
def test_effect_option_takes_a_program_or_a_template(
    item: str, program: dict[str, float], template: dict[str, float]
) -> None:
    effect = parse_effect([item])
    assert {k: effect.lift[k] for k in program} == program
    assert dict(effect.templates) == template


@pytest.mark.parametrize("item", ["trial_nurture.nope=0.5", "nowhere=1", "trial_nurture=-2"])
def test_effect_option_names_a_bad_item(item: str) -> None:
    with pytest.raises(SystemExit, match="PROGRAM=LIFT or TEMPLATE=LIFT"):
        parse_effect([item])
