"""HTTP endpoints of the worker (Faust's aiohttp web server, localhost by default).

* ``GET /livez``   liveness: the event loop answers.
* ``GET /readyz``  readiness: 200 only once table recovery has completed and no rebalance is in
  progress; 503 with the reason otherwise.
* ``GET /leads/{lead_id}``  the lead's state, pending timers and last transitions with reasons
  (only leads of partitions this worker holds; 404 otherwise). Bearer token if configured.
* (the pipeline report is served by ``nurture report-consumer``, :mod:`stream.report.consumer`,
  from the output topics: the worker keeps nothing of it.)
* ``GET /metrics`` Prometheus exposition (when a Metrics object is wired in).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from stream.core.model import ms_to_rfc3339

if TYPE_CHECKING:
    import faust

    from stream.metrics import Metrics
    from stream.runtime.agent import LeadAgent
    from stream.settings import Settings


def readiness(app: faust.App) -> tuple[bool, str]:
    tables: Any = app.tables
    recovery = tables.recovery
    if not recovery.completed.is_set():
        return False, "table recovery not completed"
    if recovery.in_recovery:
        return False, "table recovery in progress"
    if app.rebalancing:
        return False, "rebalancing"
    return True, "ready"


def lead_view(agent: LeadAgent, lead_id: str) -> dict[str, Any] | None:
    if lead_id.startswith("__"):
        return None  # runtime bookkeeping keys (tick records), not leads
    rec = agent.peek(lead_id)
    if rec is None or rec.state is None:
        return None
    state = rec.state
    doc = msgspec.structs.asdict(state)
    doc.pop("timers", None)
    doc = orjson.loads(orjson.dumps(doc))
    timers = [
        {"timer_id": t.timer_id, "kind": t.kind, "due": ms_to_rfc3339(t.due), "due_ms": t.due}
        for t in sorted(state.timers)
    ]
    return {
        "lead_id": lead_id,
        "program": state.program,
        "program_state": state.program_state,
        "icp_tier": state.icp_tier,
        "pending_timers": timers,
        "last_transitions": [h.view() for h in rec.history],
        "state": doc,
    }


def register_views(
    app: faust.App, settings: Settings, agent: LeadAgent, metrics: Metrics | None
) -> None:
    from faust.web import Request, Response, View

    token = settings.web_token

    def authorized(request: Request) -> bool:
        if not token:
            return True
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())

    @app.page("/livez")
    async def livez(self: View, request: Request) -> Response:
        return self.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        ready, why = readiness(app)
        return self.json({"ready": ready, "status": why}, status=200 if ready else 503)

    @app.page("/leads/{lead_id}")
    async def lead(self: View, request: Request, lead_id: str) -> Response:
        if not authorized(request):
            return self.json({"error": "unauthorized"}, status=401)
        doc = lead_view(agent, lead_id)
        if doc is None:
            return self.json({"error": "unknown lead (or not on this worker)"}, status=404)
        return self.bytes(orjson.dumps(doc), content_type="application/json")

    if metrics is not None:
        from stream.metrics import CONTENT_TYPE

        @app.page("/metrics")
        async def prometheus(self: View, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=CONTENT_TYPE.split(";")[0])
