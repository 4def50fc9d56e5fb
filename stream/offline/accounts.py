"""Replay over accounts: the events that carry an ``account_id`` (and a type the account folds)
go through :func:`stream.accounts.engine.step_account` in event time with the account timers,
beside the lead replay. Writes ``account_transitions.jsonl`` and ``account_actions.jsonl``
(contract records, byte-identical run to run) and the post-sale report section."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from stream.accounts.driver import AccountDriver
from stream.accounts.model import AccountStep
from stream.core.config import RulesConfig
from stream.core.model import Event
from stream.report.postsale import postsale_report


class AccountReplay:
    """Use as a context manager around a replay; ``feed`` every parsed event in file order."""

    def __init__(self, out_dir: Path, config: RulesConfig) -> None:
        self.config = config
        self.out_dir = out_dir
        self.transitions = 0
        self.actions = 0
        self._t: IO[bytes] | None = None
        self._a: IO[bytes] | None = None
        self.driver = AccountDriver(config, sink=self._write)

    def __enter__(self) -> AccountReplay:
        self._t = open(self.out_dir / "account_transitions.jsonl", "wb", buffering=1 << 20)
        self._a = open(self.out_dir / "account_actions.jsonl", "wb", buffering=1 << 20)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for fh in (self._t, self._a):
            if fh is not None:
                fh.close()

    def _write(self, _account_id: str, result: AccountStep) -> None:
        assert self._t is not None and self._a is not None
        for t in result.transitions:
            self._t.write(orjson.dumps(t.to_record(), option=orjson.OPT_APPEND_NEWLINE))
        for a in result.actions:
            self._a.write(orjson.dumps(a.to_record(), option=orjson.OPT_APPEND_NEWLINE))
        self.transitions += len(result.transitions)
        self.actions += len(result.actions)

    def feed(self, event: Event) -> None:
        self.driver.feed(event)

    def finish(self, horizon: int | None) -> dict[str, Any]:
        """Fire account timers up to ``horizon``; the report section (``post_sale``)."""
        self.driver.finish(horizon)
        states = [run.state for run in self.driver.accounts.values() if run.state is not None]
        report = postsale_report(states, horizon, self.config.accounts)
        report["accounts"] = len(states)
        report["transitions"] = self.transitions
        report["actions"] = self.actions
        report["timers_fired"] = self.driver.timers_fired
        return report
