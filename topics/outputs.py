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
#: account programs (post-sale plays, DESIGN.md "Post-sale: accounts, health and plays")
AccountProgram = Literal[
    "onboarding", "adoption", "executive", "risk_renewal", "advocacy", "expansion_nurture"
]
ACCOUNT_PROGRAMS: tuple[str, ...] = get_args(AccountProgram)
#: an account's lifecycle stage
AccountStage = Literal["onboarding", "adoption", "renewal", "churned"]
HealthBand = Literal["red", "yellow", "green"]
RiskFlag = Literal["payment_failed", "usage_drop", "urgent_tickets", "detractor"]
Channel = Literal[
    "email",
    "in_app",
    "sales_task",
    "csm_task",
    "exec_briefing",
    "community",
    "webinar",
    "none",
]
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
    An account-level action carries ``account_id`` and is keyed by it; its ``lead_id`` names
    the person it addresses, or is null when it addresses the account (a CSM task).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    action_id: str = Field(description="deterministic: same cause, same id")
    lead_id: str | None = Field(description="null only on an account-level action")
    account_id: str | None = Field(None, description="set on account-level actions (the key)")
    type: Literal["send", "handoff", "enroll", "exit", "suppress", "skipped"]
    channel: Channel
    program: Program | AccountProgram
    template: str | None
    reason: str
    context: dict[str, Any]
    caused_by: str
    at: AwareDatetime
    skip_reason: (
        Literal["frequency_cap", "unsubscribed", "hard_bounced", "holdout", "no_recipient"] | None
    ) = None
    deliver_after: AwareDatetime | None = Field(
        None,
        description="on an email or in_app send decided inside the lead's local quiet hours: "
        "the next allowed time; the sender holds the action until then",
    )


class HealthComponent(BaseModel):
    """One weighted part of the health score: ``points`` = ``value`` (0-1) x ``weight``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    value: float = Field(ge=0, le=1, description="the component's normalised value")
    weight: float = Field(ge=0, description="its weight (points at value 1)")
    points: float = Field(ge=0, description="its contribution to the score")
    inputs: dict[str, Any] = Field(description="the raw figures it was computed from")


class HealthRecord(BaseModel):
    """An account's health, explainable: the components' points sum to ``score``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    score: float = Field(ge=0, le=100)
    band: HealthBand
    flags: list[RiskFlag]
    components: dict[str, HealthComponent]
    config_version: str


class AccountTransitionRecord(BaseModel):
    """On ``nurture.transitions``, keyed by ``account_id``: an account's stage, health band,
    risk flag or play changed. Every one carries the full ``health`` that explains it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    account_id: str
    kind: Literal["stage", "band", "flag_raised", "flag_cleared", "play_entered", "play_exited"]
    from_value: str | None = Field(description="previous stage / band, or the play or flag")
    to_value: str | None = Field(description="new stage / band, or the play or flag")
    reason: str = Field(min_length=1)
    signals: dict[str, Any]
    health: HealthRecord
    caused_by: str = Field(description="event_id, or 'timer:<timer_id>' for a timer firing")
    at: AwareDatetime


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
