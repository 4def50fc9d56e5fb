"""Sender templates: the names come from the rules file; a missing one stops start-up."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import orjson
import pytest
import yaml

from stream.core.config import DEFAULT_RULES, load_config, load_config_text
from stream.offline.simulate import generate
from stream.sender.templates import BUILTIN_DIR, SUFFIX, TemplateError, Templates, template_names
from tests.support.reference import core_outputs


def test_names_come_from_the_rules_and_each_has_a_builtin_file() -> None:
    rules = load_config()
    names = template_names(rules)
    doc = yaml.safe_load(DEFAULT_RULES.read_text())
    assert set(doc["trial"]["templates"].values()) <= set(names)
    assert set(doc["reengagement"]["templates"]) <= set(names)
    files = {p.name.removesuffix(SUFFIX) for p in BUILTIN_DIR.glob(f"*{SUFFIX}")}
    assert set(names) == files


def test_every_template_the_core_emits_on_simulated_traffic_renders() -> None:
    """Independent of the rules walk: run the core over simulated leads, render each send."""
    rules = load_config()
    templates = Templates(rules)
    events = []
    for e in generate(300, 60, seed=4):
        with contextlib.suppress(orjson.JSONDecodeError):  # the simulator's deliberate junk
            events.append(orjson.loads(e.line))
    _, actions = core_outputs(events, config=rules)
    sent = {a["template"] for a in actions if a["type"] == "send"}
    assert len(sent) >= 8, sent
    for action in actions:
        if action["type"] == "send":
            assert templates.render(action["template"], action).subject


def test_every_builtin_template_renders_a_subject_and_the_action() -> None:
    templates = Templates(load_config())
    for name in templates.names:
        action = {
            "action_id": "a-1",
            "lead_id": "L-1",
            "program": name.split(".")[0],
            "template": name,
            "context": {"features_used": 2},
        }
        mail = templates.render(name, action)
        assert mail.subject, name
        assert "a-1" in mail.body and "features_used=2" in mail.body, name


def test_a_template_the_rules_gain_is_a_startup_error_naming_it(tmp_path: Path) -> None:
    doc = yaml.safe_load(DEFAULT_RULES.read_text())
    doc["trial"]["templates"]["welcome"] = "trial_nurture.welcome_v2"
    rules = load_config_text(yaml.safe_dump(doc))
    with pytest.raises(TemplateError, match=r"trial_nurture\.welcome_v2\.txt\.j2"):
        Templates(rules)
    folder = tmp_path / "tpl"
    shutil.copytree(BUILTIN_DIR, folder)
    (folder / f"trial_nurture.welcome_v2{SUFFIX}").write_text('{% set subject = "Hi" %}Body\n')
    assert Templates(rules, folder).render("trial_nurture.welcome_v2", {}).subject == "Hi"


def test_a_prefix_family_serves_the_names_built_from_it() -> None:
    templates = Templates(load_config())
    assert "adoption.nudge" in templates.families
    mail = templates.render("adoption.nudge.reports", {"action_id": "a", "program": "adoption"})
    assert mail.subject == "A feature your team has not tried yet"


def test_unknown_template_and_no_subject_fail_clearly(tmp_path: Path) -> None:
    templates = Templates(load_config())
    with pytest.raises(TemplateError, match="unknown template 'nope'"):
        templates.render("nope", {})
    folder = tmp_path / "tpl"
    shutil.copytree(BUILTIN_DIR, folder)
    (folder / f"mql_nurture.proof{SUFFIX}").write_text("no subject here {{ missing_var }}\n")
    broken = Templates(load_config(), folder)
    with pytest.raises(TemplateError, match="does not render"):
        broken.render("mql_nurture.proof", {})
