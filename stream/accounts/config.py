"""The ``accounts:`` section of rules.yaml: health weights, bands, risk flags and the six plays.

Defaults are DESIGN.md "Post-sale: accounts, health and plays". The root model
(:class:`stream.core.config.RulesConfig`) holds this section as ``accounts``, so one file and one
``version`` govern leads and accounts alike, and a bad value fails at load naming its path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["admin", "end_user", "executive"]
Band = Literal["red", "yellow", "green"]
TouchChannel = Literal["email", "csm_task", "exec_briefing", "webinar", "community"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HealthWeights(_Section):
    """Points each component is worth at full value; they must add up to 100."""

    usage: float = Field(default=40, ge=0, le=100)
    support: float = Field(default=20, ge=0, le=100)
    sentiment: float = Field(default=20, ge=0, le=100)
    billing: float = Field(default=20, ge=0, le=100)

    @model_validator(mode="after")
    def _total(self) -> HealthWeights:
        total = self.usage + self.support + self.sentiment + self.billing
        if abs(total - 100) > 1e-9:
            raise ValueError(
                f"weights must add up to 100 (usage+support+sentiment+billing={total})"
            )
        return self


class HealthBands(_Section):
    """``red`` <= red_max < ``yellow`` <= yellow_max < ``green``."""

    red_max: float = Field(default=50, ge=0, le=100)
    yellow_max: float = Field(default=75, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> HealthBands:
        if self.red_max >= self.yellow_max:
            raise ValueError("bands need red_max < yellow_max")
        return self


class UsageHealth(_Section):
    """usage = wau_share x min(1, WAU/seats / wau_target_ratio) + (1 - wau_share) x trend."""

    active_window_days: float = Field(default=7, gt=0)
    wau_target_ratio: float = Field(default=0.6, gt=0, le=1)
    wau_share: float = Field(default=0.5, ge=0, le=1)
    trend_window_days: int = Field(default=30, ge=1, le=180)


class SupportHealth(_Section):
    """support = 1 - per_ticket x tickets opened in the window - per_urgent x open urgent."""

    window_days: float = Field(default=30, gt=0)
    per_ticket_penalty: float = Field(default=0.1, ge=0, le=1)
    per_open_urgent_penalty: float = Field(default=0.3, ge=0, le=1)


class SentimentHealth(_Section):
    """Mean over users of their latest answer (NPS / 10 or (CSAT - 1) / 4); neutral if none."""

    neutral: float = Field(default=0.5, ge=0, le=1)


class BillingHealth(_Section):
    active: float = Field(default=1.0, ge=0, le=1)
    past_due: float = Field(default=0.5, ge=0, le=1)
    payment_failed: float = Field(default=0.0, ge=0, le=1)
    suspended: float = Field(default=0.0, ge=0, le=1)


class HealthRules(_Section):
    weights: HealthWeights = HealthWeights()
    bands: HealthBands = HealthBands()
    usage: UsageHealth = UsageHealth()
    support: SupportHealth = SupportHealth()
    sentiment: SentimentHealth = SentimentHealth()
    billing: BillingHealth = BillingHealth()


class FlagRules(_Section):
    payment_failed_statuses: tuple[str, ...] = ("payment_failed", "suspended")
    usage_drop_pct: float = Field(default=20, gt=0, lt=100)
    usage_drop_clear_pct: float = Field(default=10, ge=0, lt=100)
    usage_drop_min_baseline_sessions: int = Field(default=10, ge=1)
    # the drop must also be unlikely from chance (health.drop_p_value): small accounts' noise
    usage_drop_max_p_value: float = Field(default=0.01, gt=0, le=1)
    urgent_tickets_min: int = Field(default=2, ge=1)
    detractor_max_nps: int = Field(default=6, ge=0, le=10)
    detractor_roles: tuple[Role, ...] = ("admin", "executive")

    @model_validator(mode="after")
    def _hysteresis(self) -> FlagRules:
        if self.usage_drop_clear_pct > self.usage_drop_pct:
            raise ValueError("usage_drop_clear_pct must be <= usage_drop_pct")
        return self


class StageRules(_Section):
    onboarding_max_days: float = Field(default=90, gt=0)
    renewal_window_days: float = Field(default=120, gt=0)


class OnboardingTemplates(_Section):
    admin: str = Field(default="onboarding.admin_setup", min_length=1)
    end_user: str = Field(default="onboarding.end_user_first_steps", min_length=1)
    executive: str = Field(default="onboarding.executive_success_plan", min_length=1)
    kickoff_task: str = Field(default="onboarding.kickoff", min_length=1)
    blocker_task: str = Field(default="onboarding.blocker_removal", min_length=1)


class OnboardingRules(_Section):
    kickoff_due_days: float = Field(default=14, gt=0)
    first_value_days: float = Field(default=30, gt=0)
    templates: OnboardingTemplates = OnboardingTemplates()


class AdoptionRules(_Section):
    """Nudges name the first feature of ``features`` the account's users have not adopted and
    that has had fewer than ``max_nudges_per_feature`` nudges; when none is left, the play ends."""

    features: tuple[str, ...] = Field(
        default=("reports", "integrations", "automations", "dashboards"), min_length=1
    )
    nudge_interval_days: float = Field(default=14, gt=0)
    max_nudges_per_feature: int = Field(default=3, ge=1, le=100)
    max_email_recipients: int = Field(default=5, ge=1, le=100)
    template_prefix: str = Field(default="adoption.nudge", min_length=1)


class ExecutiveRules(_Section):
    interval_days: float = Field(default=90, gt=0)
    template: str = Field(default="executive.briefing", min_length=1)


def _default_by_band() -> dict[Band, tuple[TouchChannel, ...]]:
    return {"green": ("email",), "yellow": ("email", "csm_task"), "red": ("csm_task",)}


class RiskRenewalRules(_Section):
    touchpoint_days: tuple[int, ...] = (120, 90, 60, 30)
    by_band: dict[Band, tuple[TouchChannel, ...]] = Field(default_factory=_default_by_band)
    risk_task: str = Field(default="risk_renewal.save_plan", min_length=1)
    touchpoint_prefix: str = Field(default="risk_renewal.renewal", min_length=1)

    @model_validator(mode="after")
    def _touchpoints(self) -> RiskRenewalRules:
        days = self.touchpoint_days
        if not days or any(d <= 0 for d in days) or list(days) != sorted(set(days), reverse=True):
            raise ValueError("touchpoint_days must be distinct positive days, largest first")
        missing = {"red", "yellow", "green"} - set(self.by_band)
        if missing:
            raise ValueError(f"by_band needs every band; missing {sorted(missing)}")
        return self


class AdvocacyRules(_Section):
    min_nps: int = Field(default=9, ge=0, le=10)
    min_tenure_days: float = Field(default=180, ge=0)
    interval_days: float = Field(default=180, gt=0)
    ask_open_days: float = Field(default=30, gt=0)
    kinds: tuple[Literal["review", "reference", "case_study"], ...] = Field(
        default=("review", "reference", "case_study"), min_length=1
    )
    template_prefix: str = Field(default="advocacy.ask", min_length=1)


class AccountExpansionRules(_Section):
    """Thresholds and milestones come from the root ``expansion`` section (as for leads)."""

    handoff_task: str = Field(default="expansion_nurture.csm_handoff", min_length=1)


class AccountRules(_Section):
    max_users: int = Field(default=500, ge=1, le=100_000)
    max_event_ids: int = Field(default=64, ge=1, le=4096)
    max_tickets: int = Field(default=64, ge=2, le=4096)
    health: HealthRules = HealthRules()
    flags: FlagRules = FlagRules()
    stages: StageRules = StageRules()
    onboarding: OnboardingRules = OnboardingRules()
    adoption: AdoptionRules = AdoptionRules()
    executive: ExecutiveRules = ExecutiveRules()
    risk_renewal: RiskRenewalRules = RiskRenewalRules()
    advocacy: AdvocacyRules = AdvocacyRules()
    expansion: AccountExpansionRules = AccountExpansionRules()

    @model_validator(mode="after")
    def _windows(self) -> AccountRules:
        if self.risk_renewal.touchpoint_days[0] > self.stages.renewal_window_days:
            raise ValueError("risk_renewal.touchpoint_days must fall inside renewal_window_days")
        return self
