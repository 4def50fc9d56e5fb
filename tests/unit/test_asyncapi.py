"""topics/asyncapi.yaml: generated from the catalog and the models, complete, and valid AsyncAPI."""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml

from stream.commands import schemas as schemas_command
from tests.support.tools import NPM_BIN, require_tool
from topics.asyncapi import ASYNCAPI_PATH, build, render
from topics.catalog import INPUT_TOPIC_OF_SOURCE, catalog
from topics.events import EVENT_TYPES
from topics.outputs import PROGRAMS, AccountTransitionRecord, ActionRecord, HealthRecord

GOOD_EVENT: dict[str, Any] = {
    "event_id": "e-1",
    "type": "page.viewed",
    "lead_id": "L-42",
    "account_id": "A-7",
    "occurred_at": "2026-11-20T10:00:00Z",
    "properties": {"page": "pricing"},
}
ACTION_TYPES: tuple[str, ...] = get_args(ActionRecord.model_fields["type"].annotation)
ACCOUNT_TRANSITION_KINDS: tuple[str, ...] = get_args(
    AccountTransitionRecord.model_fields["kind"].annotation
)


@functools.cache
def _parsed() -> dict[str, Any]:
    doc = yaml.load(ASYNCAPI_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert isinstance(doc, dict)
    return doc


def _committed() -> dict[str, Any]:
    """The committed document (a fresh copy: tests cut pieces out of it)."""
    return copy.deepcopy(_parsed())


def _channel_of(doc: dict[str, Any], topic: str) -> dict[str, Any] | None:
    return next((c for c in doc["channels"].values() if c["address"] == topic), None)


def _message_names(doc: dict[str, Any], topic: str) -> set[str]:
    channel = _channel_of(doc, topic) or {"messages": {}}
    messages = doc["components"]["messages"]
    return {messages[ref["$ref"].rsplit("/", 1)[1]]["name"] for ref in channel["messages"].values()}


def missing_from(doc: dict[str, Any]) -> list[str]:
    """What the catalog and the models have that ``doc`` lacks (independent of the generator)."""
    missing: list[str] = []
    for spec in catalog():
        channel = _channel_of(doc, spec.name)
        if channel is None:
            missing.append(f"channel {spec.name}")
            continue
        kafka = channel["bindings"]["kafka"]
        if kafka["partitions"] != spec.partitions or channel["x-key"] != spec.key:
            missing.append(f"partitions/key of {spec.name}")
        policy = spec.config.get("cleanup.policy", "delete").split(",")
        if kafka["topicConfiguration"].get("cleanup.policy") != policy:
            missing.append(f"cleanup.policy of {spec.name}")
        action = "receive" if spec.role == "input" else "send"
        if not any(
            op["action"] == action and op["channel"]["$ref"].endswith("/" + channel_key)
            for op in doc["operations"].values()
            for channel_key in [k for k, c in doc["channels"].items() if c is channel]
        ):
            missing.append(f"{action} operation on {spec.name}")
    for event_type, (source, _model) in EVENT_TYPES.items():
        if event_type not in _message_names(doc, INPUT_TOPIC_OF_SOURCE[source]):
            missing.append(f"event {event_type}")
    actions = _message_names(doc, "nurture.actions")
    missing += [f"action {t}" for t in ACTION_TYPES if f"action.{t}" not in actions]
    transitions = _message_names(doc, "nurture.transitions")
    missing += [f"transition {p}" for p in PROGRAMS if f"transition.{p}" not in transitions]
    missing += [
        f"account transition {k}"
        for k in ACCOUNT_TRANSITION_KINDS
        if f"account_transition.{k}" not in transitions
    ]
    if "dead_letter" not in _message_names(doc, "nurture.dead-letter"):
        missing.append("dead letter")
    return missing


def test_committed_asyncapi_is_what_the_generator_builds() -> None:
    assert ASYNCAPI_PATH.read_text() == render(build()), "stale: run `nurture schemas export`"


def test_every_catalog_topic_event_action_and_transition_type_is_in_the_document() -> None:
    doc = _committed()
    assert missing_from(doc) == []
    assert len(doc["channels"]) == len(catalog())
    expected = len(EVENT_TYPES) + len(ACTION_TYPES) + len(PROGRAMS)
    expected += len(ACCOUNT_TRANSITION_KINDS) + 1  # + the dead letter
    assert len(doc["components"]["messages"]) == expected


@pytest.mark.parametrize(
    ("cut", "reported"),
    [
        (("channels", "nurtureCrmEvents"), "channel nurture.crm-events"),
        (
            ("channels", "nurtureProductEvents", "messages", "event_page_viewed"),
            "event page.viewed",
        ),
        (("channels", "nurtureActions", "messages", "action_skipped"), "action skipped"),
        (("channels", "nurtureTransitions", "messages", "transition_sales"), "transition sales"),
        (
            ("channels", "nurtureTransitions", "messages", "account_transition_band"),
            "account transition band",
        ),
        (("operations", "sendNurtureDeadLetter"), "send operation on nurture.dead-letter"),
    ],
)
def test_the_completeness_check_reports_a_missing_topic_or_model(
    cut: tuple[str, ...], reported: str
) -> None:
    doc = _committed()
    parent = doc
    for key in cut[:-1]:
        parent = parent[key]
    del parent[cut[-1]]
    assert reported in missing_from(doc)


def _validator(doc: dict[str, Any], message: str) -> jsonschema.Draft202012Validator:
    payload = doc["components"]["messages"][message]["payload"]
    schema = {**payload, "components": {"schemas": doc["components"]["schemas"]}}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_payloads_accept_contract_records_and_reject_wrong_ones() -> None:
    doc = _committed()
    page_viewed = _validator(doc, "event_page_viewed")
    assert page_viewed.is_valid(GOOD_EVENT)
    assert not page_viewed.is_valid({**GOOD_EVENT, "properties": {"page": 3}})
    assert not page_viewed.is_valid({**GOOD_EVENT, "type": "feature.used"})
    assert not page_viewed.is_valid({k: v for k, v in GOOD_EVENT.items() if k != "lead_id"})
    action = ActionRecord(
        action_id="a-1",
        lead_id="L-42",
        type="send",
        channel="email",
        program="trial_nurture",
        template="trial_nurture.activation_friction",
        reason="trial.checkpoint_48h",
        context={"features_used": 1},
        caused_by="e-9",
        at="2026-11-20T10:00:00Z",  # type: ignore[arg-type]
    ).model_dump(mode="json")
    assert _validator(doc, "action_send").is_valid(action)
    assert not _validator(doc, "action_handoff").is_valid(action)
    assert not _validator(doc, "action_send").is_valid({**action, "channel": "pigeon"})
    account_action = {**action, "lead_id": None, "account_id": "A-7", "program": "onboarding"}
    assert _validator(doc, "action_send").is_valid(account_action)
    band = AccountTransitionRecord(
        account_id="A-7",
        kind="band",
        from_value="green",
        to_value="yellow",
        reason="health.band",
        signals={"score": 70},
        health=HealthRecord(score=70, band="yellow", flags=[], components={}, config_version="1"),
        caused_by="e-3",
        at="2026-11-20T10:00:00Z",  # type: ignore[arg-type]
    ).model_dump(mode="json")
    assert _validator(doc, "account_transition_band").is_valid(band)
    assert not _validator(doc, "account_transition_stage").is_valid(band)
    assert not _validator(doc, "account_transition_band").is_valid({**band, "health": {}})


def _asyncapi(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cli = require_tool("asyncapi", NPM_BIN / "asyncapi")
    metrics = tmp_path / "asyncapi-analytics.json"  # no telemetry, no write to $HOME
    metrics.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true"}))
    return subprocess.run(
        [cli, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(metrics)},
    )


def test_asyncapi_cli_validates_the_document(tmp_path: Path) -> None:
    out = _asyncapi(ASYNCAPI_PATH, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout
    assert "0 errors" in out.stdout


def test_asyncapi_cli_rejects_a_broken_document(tmp_path: Path) -> None:
    """The check bites: an AsyncAPI 2 verb in an operation is an error in 3.0."""
    doc = _committed()
    doc["operations"]["sendNurtureActions"]["action"] = "publish"
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(doc))
    out = _asyncapi(broken, tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "publish" in out.stdout + out.stderr or "action" in out.stdout + out.stderr


def test_schemas_check_reports_a_stale_asyncapi_file(tmp_path: Path) -> None:
    args = argparse.Namespace(action="export", dir=tmp_path / "s", asyncapi=tmp_path / "a.yaml")
    assert schemas_command.run(args) == 0
    check = argparse.Namespace(**{**vars(args), "action": "check"})
    assert schemas_command.run(check) == 0
    (tmp_path / "a.yaml").write_text(render(build()).replace("nurture.actions", "x.actions"))
    assert schemas_command.run(check) == 1
