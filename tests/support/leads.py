"""Generated inputs for worker tests: trial leads whose 48 h checkpoints fall due on the wall
clock in a chosen window, with all of a lead's events on one topic (product events) so that
Kafka keeps their order."""

from __future__ import annotations

import random
from typing import Any

from stream.core.model import HOUR_MS, ms_to_rfc3339


def trial_leads(
    n: int, first_due_ms: int, window_ms: int, rng: random.Random, prefix: str = "lead"
) -> list[dict[str, Any]]:
    """Events of ``n`` trial leads; each lead's 48 h checkpoint is due in
    ``[first_due_ms, first_due_ms + window_ms)``. Leads are interleaved at random; each lead's
    own events stay in order."""
    per_lead: list[list[dict[str, Any]]] = []
    for i in range(n):
        lead = f"{prefix}-{i:05d}"
        due = first_due_ms + int(rng.random() * window_ms)
        start = due - 48 * HOUR_MS
        steps: list[tuple[str, int, dict[str, Any]]] = [("trial.started", 0, {})]
        if rng.random() < 0.7:
            steps.append(("session.started", HOUR_MS, {}))
        if rng.random() < 0.5:
            steps.append(("feature.used", 2 * HOUR_MS, {"feature": rng.choice("abc")}))
        if rng.random() < 0.3:
            steps.append(("activation.completed", 3 * HOUR_MS, {}))
        if rng.random() < 0.3:
            steps.append(("page.viewed", 4 * HOUR_MS, {"page": "pricing"}))
        per_lead.append(
            [
                {
                    "event_id": f"{lead}-{k}",
                    "type": etype,
                    "lead_id": lead,
                    "occurred_at": ms_to_rfc3339(start + offset),
                    "properties": props,
                }
                for k, (etype, offset, props) in enumerate(steps)
            ]
        )
    slots = [i for i, evs in enumerate(per_lead) for _ in evs]
    rng.shuffle(slots)
    cursor = [0] * n
    out = []
    for i in slots:
        out.append(per_lead[i][cursor[i]])
        cursor[i] += 1
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]
