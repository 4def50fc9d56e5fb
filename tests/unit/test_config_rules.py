"""The declarative rules file: defaults, validation messages, versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stream.core.config import (
    DEFAULT_RULES,
    ConfigError,
    RulesConfig,
    load_config,
    load_config_text,
    with_history,
)


def test_packaged_default_holds_the_design_defaults() -> None:
    c = load_config()
    assert c.version
    assert c.icp.out_below_employees == 10
    assert set(c.icp.excluded_industries) == {"consumer", "education", "government", "non-profit"}
    assert (c.icp.high_min_employees, c.icp.high_max_employees) == (50, 5000)
    assert "healthcare tech" in c.icp.target_industries
    fp = c.score.fit_points
    assert (fp.high, fp.medium, fp.out) == (40, 20, 0)
    assert c.score.page_points["pricing"] == 15 and c.score.page_points["case_study"] == 10
    assert c.score.content_download_points == 10 and c.score.email_click_points == 5
    assert c.score.decay_days == 30 and c.score.mql_threshold == 50
    assert c.mql.handoff_min_decision_signals == 2 and c.mql.handoff_window_days == 7
    assert c.mql.stale_after_days == 90 and c.mql.silence_days == 30
    assert (c.trial.checkpoint_48h_hours, c.trial.checkpoint_7d_hours) == (48, 168)
    assert c.trial.checkpoint_14d_hours == 336 and c.trial.handoff_min_features == 3
    assert c.trial.silence_days_after_checkpoint == 7
    assert c.reengagement.email_interval_days == 4 and c.reengagement.inactive_after_days == 4
    assert len(c.reengagement.templates) == 3
    assert c.expansion.usage_threshold == 0.8
    assert c.expansion.milestones == {"records": 1000, "integrations": 3}
    assert (c.emails.frequency_cap, c.emails.frequency_window_days) == (3, 7)
    assert c.emails.holdout_pct == 5


def test_yaml_file_and_model_defaults_agree() -> None:
    """Every value in rules.yaml equals the model's own default (one source of truth twice)."""
    from_file = load_config(DEFAULT_RULES)
    from_model = RulesConfig(version=from_file.version)
    assert from_file == from_model


def test_every_key_in_the_file_is_known() -> None:
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    data["score"]["mql_treshold"] = 40
    with pytest.raises(ConfigError) as err:
        load_config_text(yaml.safe_dump(data))
    msg = str(err.value)
    assert "score.mql_treshold" in msg and "40" in msg and "unknown field" in msg


@pytest.mark.parametrize(
    ("text", "path", "value", "allowed"),
    [
        ("version: x\nscore: {mql_threshold: -5}", "score.mql_threshold", "-5", "greater than"),
        ("version: x\nemails: {holdout_pct: 140}", "emails.holdout_pct", "140", "less than"),
        (
            "version: x\nmql: {handoff_window_days: soon}",
            "mql.handoff_window_days",
            "soon",
            "number",
        ),
        ("version: x\nexpansion: {usage_threshold: 1.5}", "expansion.usage_threshold", "1.5", "1"),
        ("version: x\nreengagement: {templates: []}", "reengagement.templates", "[]", "at least 1"),
        ("score: {}", "version", "", "required"),
        ("version: ''", "version", "''", "at least 1"),
        (
            "version: x\ntrial: {checkpoint_48h_hours: 200}",
            "trial",
            "200",
            "checkpoint_48h_hours < checkpoint_7d_hours",
        ),
    ],
)
def test_bad_values_name_field_value_and_what_is_allowed(
    text: str, path: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "rules-test.yaml")
    msg = str(err.value)
    assert "rules-test.yaml" in msg
    line = next(ln for ln in msg.splitlines() if ln.strip().startswith(path + ":"))
    assert value in line and "allowed:" in line and allowed in line


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text("version: x\nscore: {mql_threshold: 0, decay_days: -1}")
    assert "2 error(s)" in str(err.value)


def test_not_yaml_not_a_mapping_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_text("version: [unclosed")
    with pytest.raises(ConfigError, match="a YAML mapping"):
        load_config_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    assert issubclass(ConfigError, ValueError)


def test_load_from_path(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text("version: exp-7\nscore: {mql_threshold: 60}\n")
    c = load_config(str(p))
    assert c.version == "exp-7" and c.score.mql_threshold == 60
    assert c.trial.handoff_min_features == 3  # untouched sections keep their defaults


def test_config_is_frozen() -> None:
    c = load_config()
    with pytest.raises(ValueError):
        c.version = "other"  # type: ignore[misc]


def test_history_resolves_entry_versions() -> None:
    v1 = load_config_text("version: v1\nreengagement: {email_interval_days: 4}")
    v2 = load_config_text("version: v2\nreengagement: {email_interval_days: 2}")
    v3 = with_history(load_config_text("version: v3"), v2, v1)
    assert v3.known_versions == ("v3", "v1", "v2")
    assert v3.for_version("v1").reengagement.email_interval_days == 4
    assert v3.for_version("v2").reengagement.email_interval_days == 2
    assert v3.for_version("v3") is v3 and v3.for_version(None) is v3
    assert v3.for_version("unknown") is v3
    assert with_history(load_config_text("version: v4"), v3).for_version("v1").version == "v1"
