"""The ``accounts:`` section of rules.yaml: design defaults and start-up errors naming the field."""

from __future__ import annotations

import pytest
import yaml

from stream.core.config import (
    DEFAULT_RULES,
    ConfigError,
    RulesConfig,
    load_config,
    load_config_text,
)


def test_packaged_rules_hold_the_post_sale_design_defaults() -> None:
    a = load_config().accounts
    w = a.health.weights
    assert (w.usage, w.support, w.sentiment, w.billing) == (40, 20, 20, 20)
    assert (a.health.bands.red_max, a.health.bands.yellow_max) == (50, 75)
    assert a.flags.usage_drop_pct == 20 and a.flags.urgent_tickets_min == 2
    assert a.flags.detractor_max_nps == 6 and set(a.flags.detractor_roles) == {"admin", "executive"}
    assert a.stages.onboarding_max_days == 90 and a.stages.renewal_window_days == 120
    assert a.onboarding.kickoff_due_days == 14 and a.onboarding.first_value_days == 30
    assert a.executive.interval_days == 90
    assert a.risk_renewal.touchpoint_days == (120, 90, 60, 30)
    assert (a.advocacy.min_nps, a.advocacy.min_tenure_days, a.advocacy.interval_days) == (
        9,
        180,
        180,
    )
    assert a == RulesConfig(version="x").accounts  # the file spells out the code's defaults


def _with(path: list[str], value: object) -> str:
    doc = yaml.safe_load(DEFAULT_RULES.read_text())
    node = doc["accounts"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["health", "weights", "usage"], 50, "accounts.health.weights"),
        (["health", "bands", "red_max"], 80, "accounts.health.bands"),
        (["flags", "usage_drop_pct"], 0, "accounts.flags.usage_drop_pct"),
        (["risk_renewal", "touchpoint_days"], [30, 60], "accounts.risk_renewal"),
        (["risk_renewal", "by_band"], {"red": ["csm_task"]}, "accounts.risk_renewal"),
        (["risk_renewal", "by_band"], {"red": ["fax"], "yellow": [], "green": []}, "by_band.red"),
        (["advocacy", "kinds"], ["tweet"], "accounts.advocacy.kinds"),
        (["stages", "renewal_window_days"], 60, "accounts"),
        (["max_users"], 0, "accounts.max_users"),
        (["onboarding", "templates", "admin"], "", "accounts.onboarding.templates.admin"),
        (["health", "weight"], {}, "accounts.health.weight"),
    ],
)
def test_bad_account_rules_fail_at_load_naming_the_field(
    path: list[str], value: object, named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(_with(path, value), "rules.yaml")
    assert named in str(info.value)
