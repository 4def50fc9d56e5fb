"""EventTimeRunner's time model with a scripted fake engine (no rules involved)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.core.model import HOUR_MS, Event, Timer, TimerFired
from stream.offline.replay import EventTimeRunner


@dataclass
class FakeResult:
    state: Any
    transitions: list[Any] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)


def fake_step(state: dict[str, Any] | None, inp: Event | TimerFired, config: Any) -> FakeResult:
    """Each 'start' event schedules a timer 'cp-<n>' 48 h later; 'cancel' drops all timers;
    'move' reschedules every timer to 1 h after the event. Log what the lead saw."""
    st: dict[str, Any] = dict(state or {"timers": {}, "seen": []})
    timers = dict(st["timers"])
    if isinstance(inp, TimerFired):
        if inp.timer_id not in timers:
            return FakeResult(st, timers=sorted(Timer(d, t, "cp") for t, d in timers.items()))
        del timers[inp.timer_id]
        st["seen"] = [*st["seen"], f"timer:{inp.timer_id}@{inp.at}"]
    else:
        st["seen"] = [*st["seen"], f"{inp.type}@{inp.at}"]
        if inp.type == "start":
            timers[f"cp-{len(timers)}"] = inp.at + 48 * HOUR_MS
        elif inp.type == "cancel":
            timers = {}
        elif inp.type == "move":
            timers = {t: inp.at + HOUR_MS for t in timers}
    st["timers"] = timers
    return FakeResult(st, timers=sorted(Timer(d, t, "cp") for t, d in timers.items()))


def ev(lead: str, kind: str, hour: float) -> Event:
    return Event(f"{lead}-{kind}-{hour}", kind, lead, int(hour * HOUR_MS))


def run(events: list[Event], until: int | None = None) -> tuple[EventTimeRunner, list[str]]:
    order: list[str] = []
    runner: EventTimeRunner

    def sink(result: FakeResult) -> None:  # type: ignore[override]
        order.append(result.state["seen"][-1] if result.state["seen"] else "?")

    runner = EventTimeRunner(config=None, sink=sink, step=fake_step)  # type: ignore[arg-type]
    for e in events:
        runner.process(e)
    runner.finish(until)
    return runner, order


def test_timers_fire_across_leads_in_due_order_before_later_events() -> None:
    runner, order = run([ev("B", "start", 0), ev("A", "start", 1), ev("C", "other", 100)])
    assert order == [
        "start@0",
        f"start@{HOUR_MS}",
        f"timer:cp-0@{48 * HOUR_MS}",  # B's first (due 48 h), then A's (49 h), then the event
        f"timer:cp-0@{49 * HOUR_MS}",
        f"other@{100 * HOUR_MS}",
    ]
    assert runner.states["B"]["seen"][-1] == f"timer:cp-0@{48 * HOUR_MS}"
    assert runner.timers_fired == 2


def test_event_exactly_at_due_time_sees_the_timer_first() -> None:
    _, order = run([ev("A", "start", 0), ev("A", "ping", 48)])
    assert order == ["start@0", f"timer:cp-0@{48 * HOUR_MS}", f"ping@{48 * HOUR_MS}"]


def test_cancelled_and_rescheduled_timers_do_not_fire_stale() -> None:
    runner, order = run(
        [ev("A", "start", 0), ev("A", "cancel", 1), ev("B", "start", 0), ev("B", "move", 2)],
        until=100 * HOUR_MS,
    )
    # A's timer was cancelled; B's moved from 48 h to 3 h: fires once, at 3 h, at the end
    assert [o for o in order if o.startswith("timer")] == [f"timer:cp-0@{3 * HOUR_MS}"]
    assert runner.timers_fired == 1
    assert runner.pending_timers == 0


def test_default_until_is_the_latest_event_time_and_explicit_until_extends() -> None:
    runner, order = run([ev("A", "start", 0), ev("B", "other", 10)])
    assert runner.timers_fired == 0 and runner.pending_timers == 1
    runner, order = run([ev("A", "start", 0), ev("B", "other", 10)], until=48 * HOUR_MS)
    assert runner.timers_fired == 1 and order[-1] == f"timer:cp-0@{48 * HOUR_MS}"


def test_late_event_does_not_move_the_clock_back_and_past_due_timers_fire_next() -> None:
    # clock reaches 100 h; a late 'start' at 10 h schedules 58 h: already past, fires before
    # the next input even though that input is earlier still (the watermark rules)
    _, order = run([ev("B", "other", 100), ev("A", "start", 10), ev("C", "other", 20)])
    assert order == [
        f"other@{100 * HOUR_MS}",
        f"start@{10 * HOUR_MS}",
        f"timer:cp-0@{58 * HOUR_MS}",
        f"other@{20 * HOUR_MS}",
    ]
