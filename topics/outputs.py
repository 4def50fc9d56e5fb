"""Output records: actions, transitions and dead letters (DESIGN.md section 2)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Program = Literal[
    "prospect",
    "low_touch",
    "mql_nurture",
    "trial_nurture",
    "re_engagement",
    "expansion_nurture",
    "sales",
    "customer",
    "csm",
    "inactive",
    "unsubscribed",
]
#: every program, in the order reports and views list them
PROGRAMS: tuple[str, ...] = get_args(Program)
STRUCTURED_PROGRAMS: tuple[str, ...] = (
    "mql_nurture",
    "trial_nurture",
    "re_engagement",
    "expansion_nurture",
)


class TransitionRecord(BaseModel):
    """On ``nurture.transitions``: a lead moved; ``reason`` names the rule, ``signals`` why."""

    model_config = ConfigDict(extra="allow", frozen=True)

    lead_id: str
    from_program: Program | None
    from_state: str | None
    to_program: Program
    to_state: str | None
    reason: str = Field(min_length=1)
    signals: dict[str, Any]
    caused_by: str = Field(description="event_id, or 'timer:<timer_id>' for a timer firing")
    at: AwareDatetime


class ActionRecord(BaseModel):
    """On ``nurture.actions``. Consumers dedupe on ``action_id`` and act only on their types.

    ``skipped`` records a withheld send (``skip_reason``: frequency_cap, unsubscribed, holdout).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    action_id: str = Field(description="deterministic: same cause, same id")
    lead_id: str
    type: Literal["send", "handoff", "enroll", "exit", "suppress", "skipped"]
    channel: Literal["email", "in_app", "sales_task", "csm_task", "none"]
    program: Program
    template: str | None
    reason: str
    context: dict[str, Any]
    caused_by: str
    at: AwareDatetime
    skip_reason: Literal["frequency_cap", "unsubscribed", "hard_bounced", "holdout"] | None = None


class DeadLetterRecord(BaseModel):
    """On ``nurture.dead-letter``, keyed by the original key: a message that was not processed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    reason: str = Field(description="machine code, e.g. invalid_json, missing_field:lead_id")
    detail: str = Field(description="human-readable explanation")
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(None, description="original key, base64")
    original: str = Field(description="original message bytes, base64")
    original_text: str | None = Field(None, description="original bytes as UTF-8, if they were")
