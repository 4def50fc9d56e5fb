"""ICP fit tier from firmographics: the first segmentation variable, a gate."""

from __future__ import annotations

from stream.core.config import IcpRules


def icp_tier(company_size: int | None, industry: str | None, rules: IcpRules) -> str:
    """``out`` below the size floor or in an excluded industry; ``high`` inside the size band in
    a target industry; ``medium`` otherwise; ``unknown`` when no firmographics are known yet."""
    if company_size is None and industry is None:
        return "unknown"
    ind = industry.strip().lower() if industry else None
    if company_size is not None and company_size < rules.out_below_employees:
        return "out"
    if ind is not None and ind in rules.excluded_industries:
        return "out"
    if (
        company_size is not None
        and rules.high_min_employees <= company_size <= rules.high_max_employees
        and ind is not None
        and ind in rules.target_industries
    ):
        return "high"
    return "medium"
