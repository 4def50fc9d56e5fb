"""JSON Schema export of the contract, for producers and consumers in other languages.

``nurture schemas export`` writes ``topics/schemas/*.json``; a test checks the committed files
equal what the models produce, so the schemas never drift from the code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from topics.catalog import catalog
from topics.events import EVENT_TYPES, EventEnvelope
from topics.outputs import (
    AccountTransitionRecord,
    ActionRecord,
    DeadLetterRecord,
    TransitionRecord,
)

SCHEMA_DIR = Path(__file__).parent / "schemas"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def typed_event_model(event_type: str) -> type[BaseModel]:
    """The envelope narrowed to one event type, with that type's properties model."""
    props_model = EVENT_TYPES[event_type][1]
    name = "Event_" + event_type.replace(".", "_")
    model: type[BaseModel] = create_model(
        name,
        __base__=EventEnvelope,
        __config__=None,
        type=(Literal[event_type], Field(description="event type")),  # type: ignore[arg-type]
        properties=(props_model, Field(default_factory=props_model)),
    )
    model.model_config = ConfigDict(
        extra="ignore", frozen=True, strict=True, title=f"event {event_type}"
    )
    model.model_rebuild(force=True)
    return model


def _schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["title"] = title
    return {"$schema": _DIALECT, **schema}


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every contract record."""
    out: dict[str, dict[str, Any]] = {
        "event.envelope.json": _schema(EventEnvelope, "event envelope"),
        "action.json": _schema(ActionRecord, "action"),
        "transition.json": _schema(TransitionRecord, "transition"),
        "account_transition.json": _schema(AccountTransitionRecord, "account transition"),
        "dead_letter.json": _schema(DeadLetterRecord, "dead letter"),
    }
    for event_type in sorted(EVENT_TYPES):
        out[f"event.{event_type}.json"] = _schema(
            typed_event_model(event_type), f"event {event_type}"
        )
    out["catalog.json"] = {
        "title": "topic catalog (default names)",
        "topics": [asdict(spec) for spec in catalog()],
        "event_types": {t: src for t, (src, _m) in sorted(EVENT_TYPES.items())},
    }
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in all_schemas().items():
        path = directory / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written
