"""The demo's terminal view: consumes ``nurture.transitions`` and ``nurture.actions`` and shows
recent transitions, recent actions, program occupancy and counters (rich ``Live``).

:class:`LiveState` is the pure part (fed records, renders tables); :func:`watch` is the Kafka
loop. When the output is not a terminal (``plain=True``, e.g. the smoke test) each transition is
printed as one ``TRANSITION ...`` line instead of the redrawn screen, plus a final summary.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from topics.outputs import PROGRAMS

PROGRAM_ORDER = PROGRAMS


@dataclass
class LiveState:
    """Counters and recent records; ``occupancy`` counts leads per current program."""

    recent_transitions: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=14)
    )
    recent_actions: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=10)
    )
    where: dict[str, str] = field(default_factory=dict)
    occupancy: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    action_types: collections.Counter[str] = field(default_factory=collections.Counter)
    transitions: int = 0
    actions: int = 0
    started: float = field(default_factory=time.monotonic)

    def add_transition(self, record: dict[str, Any]) -> None:
        self.transitions += 1
        self.recent_transitions.appendleft(record)
        lead = str(record.get("lead_id"))
        old = self.where.get(lead)
        if old is not None:
            self.occupancy[old] -= 1
        new = str(record.get("to_program"))
        self.where[lead] = new
        self.occupancy[new] += 1
        self.reasons[str(record.get("reason"))] += 1

    def add_action(self, record: dict[str, Any]) -> None:
        self.actions += 1
        self.recent_actions.appendleft(record)
        self.action_types[f"{record.get('type')}/{record.get('channel')}"] += 1

    def render(self, header: str = "", width: int = 160) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        top = Table.grid(padding=(0, 3))
        top.add_row(
            f"[bold]{self.transitions}[/] transitions",
            f"[bold]{self.actions}[/] actions",
            f"[bold]{len(self.where)}[/] leads",
            f"{self.transitions / elapsed if elapsed else 0:.0f} transitions/s",
        )
        kinds = "  ".join(f"{k} [bold]{v}[/]" for k, v in sorted(self.action_types.items()))
        narrow = width < 130
        n_trans, n_acts = (7, 4) if narrow else (14, 10)
        occ = Table(title="program occupancy", expand=True)
        occ.add_column("program")
        occ.add_column("leads", justify="right")
        occ.add_column("", width=24, no_wrap=True)
        peak = max(self.occupancy.values(), default=1) or 1
        for program in sorted(self.occupancy, key=_order):
            n = self.occupancy[program]
            occ.add_row(program, str(n), "[cyan]" + "█" * int(22 * n / peak))
        trans = Table(title="recent transitions", expand=True)
        cols = ("at", "lead", "to", "reason") if narrow else ("at", "lead", "from", "to", "reason")
        for col in cols:
            trans.add_column(
                col, overflow="ellipsis", no_wrap=True, min_width={"at": 8, "lead": 9}.get(col)
            )
        for r in list(self.recent_transitions)[:n_trans]:
            cells = {
                "at": str(r.get("at", ""))[11:19],
                "lead": str(r.get("lead_id")),
                "from": _where(r.get("from_program"), r.get("from_state")),
                "to": "[bold]" + _where(r.get("to_program"), r.get("to_state")) + "[/]",
                "reason": str(r.get("reason")),
            }
            trans.add_row(*(cells[c] for c in cols))
        acts = Table(title="recent actions", expand=True)
        for col in ("lead", "type", "channel", "template / reason"):
            acts.add_column(col, overflow="ellipsis", no_wrap=True)
        for a in list(self.recent_actions)[:n_acts]:
            acts.add_row(
                str(a.get("lead_id")),
                str(a.get("type")) + (f" ({a['skip_reason']})" if a.get("skip_reason") else ""),
                str(a.get("channel")),
                str(a.get("template") or a.get("reason")),
            )
        title = header or "nurture-stream live"
        kinds_line = kinds or "no actions yet"
        if narrow:  # stack the tables
            return Panel(Group(top, kinds_line, occ, trans, acts), title=title)
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1)
        grid.add_column(ratio=2)
        grid.add_row(occ, trans)
        return Panel(Group(top, kinds_line, grid, acts), title=title)

    def summary(self) -> str:
        occ = ", ".join(f"{p}={self.occupancy[p]}" for p in sorted(self.occupancy, key=_order))
        acts = ", ".join(f"{k}={v}" for k, v in sorted(self.action_types.items()))
        return (
            f"{self.transitions} transitions, {self.actions} actions, {len(self.where)} leads\n"
            f"occupancy: {occ}\nactions: {acts}"
        )


def _where(program: Any, state: Any) -> str:
    if program is None:
        return "(new)"
    return f"{program}/{state}" if state is not None else str(program)


def _order(program: str) -> tuple[int, str]:
    return (PROGRAM_ORDER.index(program) if program in PROGRAM_ORDER else 99, program)


def format_transition(r: dict[str, Any]) -> str:
    return (
        f"TRANSITION {r.get('at')} {r.get('lead_id')} "
        f"{r.get('from_program')}/{r.get('from_state')} -> "
        f"{r.get('to_program')}/{r.get('to_state')} ({r.get('reason')})"
    )


async def watch(
    bootstrap: str,
    transitions_topic: str,
    actions_topic: str,
    *,
    stop: asyncio.Event,
    header: str = "",
    plain: bool = False,
    from_end: bool = False,
    out: Callable[[str], None] = print,
) -> LiveState:
    """Consume both output topics (from the beginning, or from their end with ``from_end``)
    until ``stop`` is set; returns the state."""
    import sys

    from aiokafka import AIOKafkaConsumer
    from rich.console import Console
    from rich.live import Live

    state = LiveState()
    flush = sys.stdout.flush
    consumer = AIOKafkaConsumer(
        transitions_topic,
        actions_topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest" if from_end else "earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    live: Live | None = None
    console = Console()
    if not plain:
        live = Live(state.render(header, console.width), console=console, refresh_per_second=4)
        live.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=250, max_records=2000)
            for tp, messages in batch.items():
                for msg in messages:
                    try:
                        record = orjson.loads(msg.value or b"null")
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(record, dict):
                        continue
                    if tp.topic == transitions_topic:
                        state.add_transition(record)
                        if plain:
                            out(format_transition(record))
                            flush()
                    else:
                        state.add_action(record)
            if live is not None:
                live.update(state.render(header, console.width))
    finally:
        if live is not None:
            live.update(state.render(header, console.width))
            live.stop()
        await consumer.stop()
    return state
