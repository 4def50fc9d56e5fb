"""Declarative program rules: one YAML file, validated by pydantic at load.

``load_config(None)`` reads the packaged ``rules.yaml``. A bad file raises :class:`ConfigError`
whose message names every bad field path, the value given and what is allowed.

Versioning: every program entry records ``config.version`` in the lead's state. A running
system that changes the rules keeps the older versions reachable with :func:`with_history`;
the engine then evaluates a lead mid-program with the version it entered under
(:meth:`RulesConfig.for_version`), and only new entrants get the new rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from stream.accounts.config import AccountRules

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_DAY = 86_400_000


class ConfigError(ValueError):
    """Unreadable or invalid rules; the message names each field, its value and what's allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IcpRules(_Section):
    out_below_employees: int = Field(default=10, ge=0)
    excluded_industries: tuple[str, ...] = ("consumer", "education", "government", "non-profit")
    high_min_employees: int = Field(default=50, ge=0)
    high_max_employees: int = Field(default=5000, ge=0)
    target_industries: tuple[str, ...] = (
        "software",
        "saas",
        "fintech",
        "ecommerce",
        "healthcare tech",
    )

    @field_validator("excluded_industries", "target_industries", mode="after")
    @classmethod
    def _lower(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(x.strip().lower() for x in v)

    @model_validator(mode="after")
    def _ordered(self) -> IcpRules:
        if self.high_max_employees < self.high_min_employees:
            raise ValueError("high_max_employees must be >= high_min_employees")
        return self


class FitPoints(_Section):
    high: int = Field(default=40, ge=0)
    medium: int = Field(default=20, ge=0)
    out: int = Field(default=0, ge=0)
    unknown: int = Field(default=0, ge=0)


class ScoreRules(_Section):
    fit_points: FitPoints = FitPoints()
    page_points: dict[str, int] = Field(
        default_factory=lambda: {"pricing": 15, "case_study": 10, "comparison": 10, "webinar": 10}
    )
    content_download_points: int = Field(default=10, ge=0)
    email_click_points: int = Field(default=5, ge=0)
    decay_days: float = Field(default=30, gt=0)
    mql_threshold: int = Field(default=50, ge=1)
    max_contributions: int = Field(default=32, ge=1, le=1024)


class SignalRules(_Section):
    window_days: float = Field(default=7, gt=0)
    max_events: int = Field(default=32, ge=2, le=1024)
    decision_pages: tuple[str, ...] = ("pricing",)
    consideration_pages: tuple[str, ...] = (
        "comparison",
        "alternatives",
        "case_study",
        "roi_calculator",
    )
    decision_downloads: tuple[str, ...] = ("comparison", "case_study")
    decision_reply_intents: tuple[str, ...] = ("demo_request",)


class MqlTemplates(_Section):
    awareness: str = Field(default="mql_nurture.problem", min_length=1)
    consideration: str = Field(default="mql_nurture.solution", min_length=1)
    decision: str = Field(default="mql_nurture.proof", min_length=1)


class MqlRules(_Section):
    handoff_min_decision_signals: int = Field(default=2, ge=1, le=64)
    handoff_window_days: float = Field(default=7, gt=0)
    stale_after_days: float = Field(default=90, gt=0)
    silence_days: float = Field(default=30, gt=0)
    templates: MqlTemplates = MqlTemplates()


class TrialTemplates(_Section):
    welcome: str = Field(default="trial_nurture.welcome", min_length=1)
    activated: str = Field(default="trial_nurture.feature_depth", min_length=1)
    engaged_not_activated: str = Field(default="trial_nurture.activation_friction", min_length=1)
    checkpoint_7d: str = Field(default="trial_nurture.week_one", min_length=1)
    checkpoint_14d: str = Field(default="trial_nurture.conversion_decision", min_length=1)


class TrialRules(_Section):
    checkpoint_48h_hours: float = Field(default=48, gt=0)
    checkpoint_7d_hours: float = Field(default=168, gt=0)
    checkpoint_14d_hours: float = Field(default=336, gt=0)
    silence_days_after_checkpoint: float = Field(default=7, gt=0)
    engagement_window_days: float = Field(default=7, gt=0)
    handoff_min_features: int = Field(default=3, ge=1)
    max_features_tracked: int = Field(default=32, ge=1, le=1024)
    max_sessions_tracked: int = Field(default=32, ge=1, le=1024)
    templates: TrialTemplates = TrialTemplates()

    @model_validator(mode="after")
    def _ordered(self) -> TrialRules:
        if not (self.checkpoint_48h_hours < self.checkpoint_7d_hours < self.checkpoint_14d_hours):
            raise ValueError(
                "checkpoints must be strictly increasing: "
                "checkpoint_48h_hours < checkpoint_7d_hours < checkpoint_14d_hours"
            )
        return self


class ReengagementRules(_Section):
    email_interval_days: float = Field(default=4, gt=0)
    inactive_after_days: float = Field(default=4, gt=0)
    templates: tuple[str, ...] = Field(
        default=(
            "re_engagement.direct_question",
            "re_engagement.walkthrough_offer",
            "re_engagement.last_note",
        ),
        min_length=1,
        max_length=10,
    )


class ExpansionTemplates(_Section):
    usage_summary: str = Field(default="expansion_nurture.usage_summary", min_length=1)
    milestone: str = Field(default="expansion_nurture.milestone", min_length=1)


class ExpansionRules(_Section):
    usage_threshold: float = Field(default=0.8, gt=0, le=1)
    threshold_metrics: tuple[str, ...] = ("seats", "api_calls", "data_volume")
    milestones: dict[str, float] = Field(
        default_factory=lambda: {"records": 1000.0, "integrations": 3.0}
    )
    projection_window_days: float = Field(default=30, gt=0)
    max_samples_per_metric: int = Field(default=8, ge=2, le=256)
    templates: ExpansionTemplates = ExpansionTemplates()


class EmailRules(_Section):
    frequency_cap: int = Field(default=3, ge=1)
    frequency_window_days: float = Field(default=7, gt=0)
    holdout_pct: float = Field(default=5.0, ge=0, le=100)


class QuietHoursRules(_Section):
    """No email or in-app message reaches a lead inside its local quiet hours: a send decided
    then carries ``deliver_after``, the next allowed local time (stream/core/quiet.py). On by
    default (issue 12); ``enabled: false`` sends at any hour."""

    enabled: bool = True
    start: str = Field(default="21:00", pattern=_HH_MM)  # local wall time, 24h "HH:MM"
    end: str = Field(default="08:00", pattern=_HH_MM)
    weekends: bool = False  # Saturday and Sunday quiet all day (local)
    default_timezone: str = Field(default="UTC", min_length=1)  # IANA name, for leads without

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}: use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return v

    @model_validator(mode="after")
    def _window(self) -> QuietHoursRules:
        if self.start == self.end:
            raise ValueError("start and end must differ (set enabled: false for no quiet hours)")
        return self

    @cached_property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @cached_property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


class DedupeRules(_Section):
    max_event_ids: int = Field(default=32, ge=1, le=4096)


class ReportRules(_Section):
    """How reports judge nurtured-against-holdout comparisons (stream/report/stats.py); the
    engine does not read it."""

    min_group_entries: int = Field(default=30, ge=1)  # fewer in a group: "not enough data"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000)
    bootstrap_seed: int = Field(default=0, ge=0)


@dataclass(frozen=True, slots=True)
class Derived:
    """Values the hot path needs in epoch milliseconds, computed once per config."""

    fit_points: dict[str, int]
    score_decay_ms: int
    signal_window_ms: int
    signal_retention_ms: int
    frequency_window_ms: int


class RulesConfig(_Section):
    """The whole rule set. Frozen; ``version`` is recorded by every program entry."""

    version: str = Field(min_length=1, max_length=100)
    icp: IcpRules = IcpRules()
    score: ScoreRules = ScoreRules()
    signals: SignalRules = SignalRules()
    mql: MqlRules = MqlRules()
    trial: TrialRules = TrialRules()
    reengagement: ReengagementRules = ReengagementRules()
    expansion: ExpansionRules = ExpansionRules()
    emails: EmailRules = EmailRules()
    quiet_hours: QuietHoursRules = QuietHoursRules()
    dedupe: DedupeRules = DedupeRules()
    accounts: AccountRules = AccountRules()
    report: ReportRules = ReportRules()

    _history: dict[str, RulesConfig] = PrivateAttr(default_factory=dict)

    @cached_property
    def ms(self) -> Derived:
        """Derived millisecond values, computed on first use (then a plain attribute read)."""
        fit = self.score.fit_points
        width = max(self.signals.window_days, self.mql.handoff_window_days)
        return Derived(
            fit_points={
                "high": fit.high,
                "medium": fit.medium,
                "out": fit.out,
                "unknown": fit.unknown,
            },
            score_decay_ms=int(self.score.decay_days * _DAY),
            signal_window_ms=int(self.signals.window_days * _DAY),
            signal_retention_ms=2 * int(width * _DAY),
            frequency_window_ms=int(self.emails.frequency_window_days * _DAY),
        )

    def for_version(self, version: str | None) -> RulesConfig:
        """The rules a lead entered its program under (this config if unknown or None)."""
        if version is None or version == self.version:
            return self
        return self._history.get(version, self)

    @property
    def known_versions(self) -> tuple[str, ...]:
        return (self.version, *sorted(self._history))


def with_history(current: RulesConfig, *older: RulesConfig) -> RulesConfig:
    """A copy of ``current`` that can still evaluate leads that entered under ``older`` versions."""
    merged = current.model_copy()
    history: dict[str, RulesConfig] = dict(current._history)
    for cfg in older:
        history.update(cfg._history)
        history[cfg.version] = cfg
    history.pop(current.version, None)
    merged._history = history
    return merged


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid rules config {source}: {err.error_count()} error(s)"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        allowed = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = "unknown field (not allowed); check the spelling against rules.yaml"
        lines.append(f"  {path}: got {value!r}; allowed: {allowed}")
    return "\n".join(lines)


def _validate(data: Any, source: str) -> RulesConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid rules config {source}: <root>: got {type(data).__name__}; "
            "allowed: a YAML mapping with at least `version`"
        )
    try:
        return RulesConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config_text(text: str, source: str = "<text>") -> RulesConfig:
    """Parse and validate rules YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid rules config {source}: not valid YAML: {err}") from None
    return _validate(data, source)


def load_config(path: str | Path | None = None) -> RulesConfig:
    """Load and validate a rules file (``None``: the packaged default ``rules.yaml``)."""
    p = DEFAULT_RULES if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read rules config {p}: {err.strerror or err}") from None
    return load_config_text(text, str(p))
