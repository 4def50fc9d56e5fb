"""The AsyncAPI 3.0 document of the topics (``topics/asyncapi.yaml``), built from the code.

One source of truth: channels come from the topic catalog (:func:`topics.catalog.catalog`:
names, keys, partitions, retention and cleanup policy), message payloads are the JSON Schemas
of the pydantic contract models (the same ones ``topics/schemas/*.json`` holds), one message per
event type, per action type, per lead transition target program and per account
transition kind. ``nurture schemas export``
writes the file; a test fails when the committed file differs from what this module builds, and
``@asyncapi/cli validate`` checks it in ``make test``.

The document describes the worker as the application: it *receives* from the input topics and
*sends* to the output topics; each channel names the systems on the other side
(``x-written-by`` / ``x-read-by``, from the catalog).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from topics.catalog import INPUT_TOPIC_OF_SOURCE, TopicSpec, catalog
from topics.events import EVENT_TYPES
from topics.export import typed_event_model
from topics.outputs import (
    AccountTransitionRecord,
    ActionRecord,
    DeadLetterRecord,
    TransitionRecord,
)

ASYNCAPI_PATH = Path(__file__).parent / "asyncapi.yaml"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CONTRACT_VERSION = "1.0.0"  # the v1 event types (DESIGN.md section 2)
_SCHEMA_REF = "#/components/schemas/{model}"

ACTIONS_TOPIC = "nurture.actions"
TRANSITIONS_TOPIC = "nurture.transitions"
DEAD_LETTER_TOPIC = "nurture.dead-letter"


def channel_id(topic: str) -> str:
    """``nurture.product-events`` -> ``nurtureProductEvents``."""
    first, *rest = re.split(r"[^A-Za-z0-9]+", topic)
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def message_id(kind: str, name: str) -> str:
    """``("event", "page.viewed")`` -> ``event_page_viewed`` (a valid component key)."""
    return f"{kind}_" + re.sub(r"[^A-Za-z0-9]+", "_", name)


class _Schemas:
    """Collects the models' ``$defs`` into ``components.schemas`` (one definition per name)."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def payload(self, model: type[BaseModel], title: str) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_SCHEMA_REF)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        schema["title"] = title
        return schema

    def component(self, model: type[BaseModel], title: str) -> str:
        """Put the model's schema itself into ``components.schemas``; return its name."""
        self._add(model.__name__, self.payload(model, title))
        return model.__name__

    def _add(self, name: str, definition: dict[str, Any]) -> None:
        known = self.defs.setdefault(name, definition)
        if known != definition:
            raise ValueError(f"two different contract schemas are named {name!r}")


def _narrowed(base: str, field: str, value: str) -> dict[str, Any]:
    """The record schema ``base`` with one literal field fixed to ``value`` (one message each)."""
    return {
        "allOf": [
            {"$ref": _SCHEMA_REF.format(model=base)},
            {"properties": {field: {"const": value}}},
        ]
    }


def _literal_values(model: type[BaseModel], field: str) -> tuple[str, ...]:
    annotation = model.model_fields[field].annotation
    values = tuple(v for v in get_args(annotation) if isinstance(v, str))
    if not values:
        raise ValueError(f"{model.__name__}.{field} is not a Literal of strings")
    return values


def _message(
    name: str, title: str, summary: str, payload: dict[str, Any], key: str
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": payload,
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"message key: {key}"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _messages_by_topic(schemas: _Schemas) -> dict[str, dict[str, dict[str, Any]]]:
    """Topic name -> message id -> message object, for every contract record type."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for event_type in sorted(EVENT_TYPES):
        source = EVENT_TYPES[event_type][0]
        if source not in INPUT_TOPIC_OF_SOURCE:
            raise ValueError(f"event source {source!r} has no topic in INPUT_TOPIC_OF_SOURCE")
        payload = schemas.payload(typed_event_model(event_type), f"event {event_type}")
        out.setdefault(INPUT_TOPIC_OF_SOURCE[source], {})[message_id("event", event_type)] = (
            _message(event_type, f"event {event_type}", f"{source} event", payload, "lead_id")
        )
    action = schemas.component(ActionRecord, "action")
    for action_type in _literal_values(ActionRecord, "type"):
        out.setdefault(ACTIONS_TOPIC, {})[message_id("action", action_type)] = _message(
            f"action.{action_type}",
            f"action {action_type}",
            ActionRecord.__doc__.splitlines()[0] if ActionRecord.__doc__ else "action",
            _narrowed(action, "type", action_type),
            "lead_id; account_id for an account-level action (account_id set)",
        )
    transition = schemas.component(TransitionRecord, "transition")
    for program in _literal_values(TransitionRecord, "to_program"):
        out.setdefault(TRANSITIONS_TOPIC, {})[message_id("transition", program)] = _message(
            f"transition.{program}",
            f"transition into {program}",
            "a lead moved into this program; reason names the rule, signals why",
            _narrowed(transition, "to_program", program),
            "lead_id",
        )
    account = schemas.component(AccountTransitionRecord, "account transition")
    for kind in _literal_values(AccountTransitionRecord, "kind"):
        out[TRANSITIONS_TOPIC][message_id("account_transition", kind)] = _message(
            f"account_transition.{kind}",
            f"account transition: {kind}",
            "an account's stage, health band, risk flag or play changed; health explains it",
            _narrowed(account, "kind", kind),
            "account_id",
        )
    out[DEAD_LETTER_TOPIC] = {
        "dead_letter": _message(
            "dead_letter",
            "dead letter",
            "an input message that was not processed, with the reason",
            schemas.payload(DeadLetterRecord, "dead letter"),
            "the original message's key",
        )
    }
    return out


def _channel(spec: TopicSpec, message_ids: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in spec.config.items():
        if key == "cleanup.policy":
            config[key] = value.split(",")
        else:
            config[key] = int(value) if value.lstrip("-").isdigit() else value
    return {
        "address": spec.name,
        "title": spec.name,
        "description": (
            f"{spec.role} topic keyed by {spec.key}; written by {spec.written_by}, "
            f"read by {spec.read_by}"
        ),
        "messages": {mid: {"$ref": f"#/components/messages/{mid}"} for mid in message_ids},
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "topicConfiguration": config,
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-key": spec.key,
        "x-role": spec.role,
        "x-written-by": spec.written_by,
        "x-read-by": spec.read_by,
    }


def build() -> dict[str, Any]:
    """The AsyncAPI document as a dict (deterministic order)."""
    schemas = _Schemas()
    by_topic = _messages_by_topic(schemas)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in catalog():
        if spec.name not in by_topic:
            raise ValueError(f"catalog topic {spec.name!r} has no messages in the AsyncAPI build")
        cid = channel_id(spec.name)
        channels[cid] = _channel(spec, list(by_topic[spec.name]))
        messages.update(by_topic[spec.name])
        receives = spec.role == "input"
        operations[("receive" if receives else "send") + cid[:1].upper() + cid[1:]] = {
            "action": "receive" if receives else "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": (
                f"the worker reads {spec.name} (written by {spec.written_by})"
                if receives
                else f"the worker writes {spec.name} (read by {spec.read_by})"
            ),
        }
    unknown = set(by_topic) - {spec.name for spec in catalog()}
    if unknown:
        raise ValueError(f"messages for topics not in the catalog: {sorted(unknown)}")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "nurture-stream topics",
            "version": CONTRACT_VERSION,
            "description": (
                "Kafka topics of nurture-stream (default names; configurable with "
                "NURTURE_TOPIC_*). Every message is one UTF-8 JSON object. Generated from "
                "topics/catalog.py and the pydantic models by `nurture schemas export`; "
                "do not edit by hand."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "your brokers (NURTURE_KAFKA_BOOTSTRAP_SERVERS)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.defs.items()))},
    }


def render(doc: dict[str, Any]) -> str:
    header = (
        "# Generated by `nurture schemas export` from topics/ (topics/asyncapi.py); do not edit.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)


def export(path: Path = ASYNCAPI_PATH) -> Path:
    path.write_text(render(build()), encoding="utf-8")
    return path
