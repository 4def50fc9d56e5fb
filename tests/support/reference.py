"""What the core says the worker must output: the pure engine run directly over the same input.

``core_outputs(events, until)`` runs each lead's events through ``stream.core.engine.step`` in
the order given, with the worker's timer rule for inputs whose timers are not yet due on the
wall clock while they are processed: before and after each event, the lead's timers with
``due <= event.at`` fire (in due order); after the lead's last event, timers with
``due <= until`` fire (the wall-clock ticks of the live worker). Outputs are the contract records
(``to_record()``), so they compare with what the worker publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from stream.core.config import RulesConfig, load_config
from stream.core.engine import step
from stream.core.model import TimerFired
from topics.parse import InvalidEvent, parse_event


def _fire(st: Any, lead_id: str, until: int, cfg: RulesConfig, tr: list[Any], ac: list[Any]) -> Any:
    for _ in range(64):
        if st is None or not st.timers:
            return st
        timer = min(st.timers)
        if timer.due > until:
            return st
        res = step(st, TimerFired(lead_id, timer.timer_id, timer.due), cfg)
        tr.extend(t.to_record() for t in res.transitions)
        ac.extend(a.to_record() for a in res.actions)
        st = res.state
    return st


def core_outputs(
    events: Iterable[Mapping[str, Any]],
    until: int | None = None,
    config: RulesConfig | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(transition records, action records) the core produces; invalid events are skipped."""
    cfg = config or load_config(None)
    states: dict[str, Any] = {}
    tr: list[dict[str, Any]] = []
    ac: list[dict[str, Any]] = []
    for doc in events:
        raw = orjson.dumps(doc)
        try:
            ev = parse_event(raw, str(doc.get("lead_id")).encode(), key_required=True)
        except InvalidEvent:
            continue
        st = _fire(states.get(ev.lead_id), ev.lead_id, ev.at, cfg, tr, ac)
        res = step(st, ev, cfg)
        tr.extend(t.to_record() for t in res.transitions)
        ac.extend(a.to_record() for a in res.actions)
        states[ev.lead_id] = _fire(res.state, ev.lead_id, ev.at, cfg, tr, ac)
    if until is not None:
        for lead_id, st in states.items():
            states[lead_id] = _fire(st, lead_id, until, cfg, tr, ac)
    return tr, ac


def replay_outputs(
    events: Iterable[Mapping[str, Any]],
    until: int | None = None,
    config: RulesConfig | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(transition records, action records) of ``nurture replay`` over the same events: the
    event-time runner of :mod:`stream.offline.replay` over the valid events sorted by
    ``occurred_at`` (stable), timers fired on its watermark, then up to ``until`` (default:
    the last event time). The oracle for the worker's stream-time semantics."""
    from stream.offline.replay import EventTimeRunner

    cfg = config or load_config(None)
    tr: list[dict[str, Any]] = []
    ac: list[dict[str, Any]] = []

    def sink(result: Any) -> None:
        tr.extend(t.to_record() for t in result.transitions)
        ac.extend(a.to_record() for a in result.actions)

    parsed = []
    for doc in events:
        try:
            parsed.append(parse_event(orjson.dumps(doc), str(doc.get("lead_id")).encode()))
        except InvalidEvent:
            continue
    parsed.sort(key=lambda e: e.at)
    runner = EventTimeRunner(cfg, sink)
    for event in parsed:
        runner.process(event)
    runner.finish(until)
    return tr, ac


def by_lead(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r["lead_id"]), []).append(dict(r))
    return out


def dedupe_actions(records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], int]:
    """Actions by action_id (first copy kept) and the number of raw duplicates dropped."""
    seen: dict[str, dict[str, Any]] = {}
    dups = 0
    for r in records:
        if r["action_id"] in seen:
            dups += 1
            assert seen[r["action_id"]] == dict(r), f"same action_id, different action: {r}"
            continue
        seen[r["action_id"]] = dict(r)
    return seen, dups


def dedupe_transitions(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Transitions with exact repeats removed (a re-sent transition is byte-identical), keeping
    each lead's order; and how many repeats were dropped."""
    seen: set[bytes] = set()
    out: list[dict[str, Any]] = []
    dups = 0
    for r in records:
        key = orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        out.append(dict(r))
    return out, dups
