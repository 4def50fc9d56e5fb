"""The shipped rules with quiet hours off, for tests whose scenarios run on the wall clock.

Quiet hours ship on (21:00-08:00 in the lead's time zone). A test that builds its events from
``time.time()`` and waits for the sender to deliver them would, at night, wait for sends held
until 08:00; a test with events dated a year ahead would wait a year. Such tests pin these rules
(the worker through ``NURTURE_RULES_FILE``, in-process oracles through the config) so their
outcome does not depend on the hour they run at. Everything else is the shipped file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from stream.core.config import DEFAULT_RULES, RulesConfig, load_config_text


def _text() -> str:
    data = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    data["quiet_hours"]["enabled"] = False
    return str(yaml.safe_dump(data, sort_keys=False))


def quiet_hours_off_config() -> RulesConfig:
    """The shipped rules, validated, with quiet hours off (an in-process oracle's config)."""
    config = load_config_text(_text(), "shipped rules, quiet hours off")
    assert not config.quiet_hours.enabled
    return config


def quiet_hours_off_file(folder: Path) -> Path:
    """Write the shipped rules with ``quiet_hours.enabled: false`` into ``folder`` (for the
    worker's ``NURTURE_RULES_FILE``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules-quiet-hours-off.yaml"
    path.write_text(_text(), encoding="utf-8")
    return path
