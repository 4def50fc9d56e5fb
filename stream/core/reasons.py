"""Every rule name a transition can carry (``Transition.reason``), with what it means.

Reports and audits can rely on this catalog; the property tests check that the engine never
emits a reason that is not listed here.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "icp.tier_assigned": "first routing of an in-ICP (or not yet known) lead: program prospect",
    "icp.out_of_icp": "ICP tier out (size/industry): low_touch, never a structured program",
    "mql.score_threshold": "score reached the MQL threshold, no prior sales contact",
    "mql.stage_changed": "buying stage (awareness/consideration/decision) changed in MQL nurture",
    "mql.decision_signals": "SQL handoff: enough decision signals in one window",
    "mql.stale": "no buying-stage movement for stale_after_days (flag; stays in the program)",
    "crm.sales_contacted": "sales contacted a prospect / MQL: handed to sales",
    "trial.started": "trial started: trial nurture with 48h/7d/14d checkpoints",
    "trial.checkpoint_48h": "48h checkpoint verdict: activated / engaged_not_activated / silent",
    "trial.checkpoint_7d": "7d checkpoint verdict",
    "trial.checkpoint_14d": "14d checkpoint verdict",
    "trial.checkpoint_48h_revised": "a late activation/session from before 48h changed its verdict",
    "trial.upgrade_intent": "upgrade CTA click or pricing visit after activation: to sales",
    "trial.converted_handoff": "paid with activation and enough features: customer + CSM task",
    "crm.subscription_converted": "paid: customer",
    "crm.subscription_upgraded": "plan upgraded: back to customer from expansion / csm",
    "crm.opportunity_created": "sales-accepted opportunity (to sales unless already a customer)",
    "reengage.mql_silence": "MQL context: silence_days without activity: re-engagement",
    "reengage.trial_silence": "trial context: days without activity after a checkpoint",
    "reengage.trial_silent_48h": "silent at the 48h checkpoint: re-engagement",
    "reengage.cadence": "next re-engagement email (email_2, email_3, ...)",
    "reengage.no_response": "no response after the last email: inactive, suppressed",
    "reengage.responded": "login, reply or walkthrough booking: re-routed by current state",
    "expansion.usage_threshold": "a plan metric crossed its usage threshold: usage summary",
    "expansion.milestone": "usage milestone (e.g. 1,000th record, 3rd integration)",
    "expansion.hard_limit": "usage reached the plan limit: CSM/AE handoff",
    "expansion.upgrade_requested": "customer asked to upgrade: CSM/AE handoff",
    "expansion.upgrade_cta": "customer clicked the tier-upgrade CTA: CSM/AE handoff",
    "email.unsubscribed": "unsubscribed: no email action ever again",
    "email.hard_bounced": "hard bounce: no email action ever again",
}
