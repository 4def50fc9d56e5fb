"""Crash recovery for accounts: the worker is SIGKILLed at random points while the customer
personas' events stream in (re-keyed to the account topic and folded into the ``accounts``
table, account timers firing on event time), and restarted each time (same RocksDB dir).

Shown: after dedup (actions by action_id, transitions by content) the account transitions and
actions read from the output topics equal replaying the input file (the pure account core over
each account's events in event time): nothing lost, nothing stepped twice, and the event-time
order restored after every restart. The account topic holds re-sent forwards (the lead runner
forwards a re-delivered input again; counted: the path under test ran only if some were
re-sent), which the worker drops by the per-origin offsets in the account's record; the raw
duplicate outputs (at-least-once re-sends) are printed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from stream.runtime.accounts import account_topic_name
from tests.support.account_stream import (
    as_records,
    build_input,
    core_outputs,
    file_order,
    forwards,
    live_outputs,
    origin_of,
    read_account_outputs,
)
from tests.support.worker import WorkerProcess, _lag, consume_all, produce_raw, run

if TYPE_CHECKING:
    from stream.settings import Settings

SEED = 5
CHUNKS = 5


def _wait_all_consumed(settings: Settings, timeout: float) -> None:
    """Input topics and the account topic committed to their ends (lag 0), or raise."""
    topics = [*settings.input_topics, account_topic_name(settings)]
    deadline = time.monotonic() + timeout
    lags: dict[str, int] = {}
    while time.monotonic() < deadline:
        bootstrap, group = settings.kafka_bootstrap_servers, settings.app_id
        lags = {t: int(run(_lag(bootstrap, group, [t]))) for t in topics}
        if not any(lags.values()):
            return
        time.sleep(0.5)  # poll interval of a condition with a deadline
    raise TimeoutError(f"lag per topic still {lags} after {timeout}s")


@pytest.mark.xfail(
    strict=False,
    reason=(
        "account outputs sometimes differ from replaying the file after the kills (1 of 4 runs "
        "on 9811270: extra exec_briefing sends at AC-00006's daily timers); not yet explained. "
        "The restart stall (a false gap after recovery's seek: commits crawling, or passing "
        "buffered inputs) is fixed in 9811270: 4 of 4 runs consumed all their input."
    ),
)
def test_sigkill_during_account_processing_loses_nothing(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    settings = kafka_settings.model_copy(
        update={"accounts_enabled": True, "max_task_idle_ms": 10_000}
    )
    events = build_input(tmp_path / "events.jsonl", seed=SEED)
    want = core_outputs(file_order(events))
    n_want = sum(len(v) for v in want.values())
    records = as_records(settings, events)
    bootstrap = settings.kafka_bootstrap_servers
    kills = 0
    worker = WorkerProcess.from_settings(settings).start()
    try:
        size = len(records) // CHUNKS + 1
        for c in range(CHUNKS):
            worker.wait_ready()
            start = worker.processed()
            produce_raw(bootstrap, records[c * size : (c + 1) * size])
            if c in (1, 2, 3):
                # kill once the worker is busy with this chunk, after a random extra delay
                deadline = time.monotonic() + 120
                while worker.processed() <= start and time.monotonic() < deadline:
                    time.sleep(0.02)  # poll interval of a condition with a deadline
                time.sleep(rng.uniform(0.0, 1.5))  # a random kill point, not a synchronisation
                worker.kill()
                kills += 1
                worker = WorkerProcess.from_settings(settings, web_port=worker.web_port).start()
        worker.wait_ready()
        try:
            _wait_all_consumed(settings, timeout=300)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{worker.log_tail()}") from exc
        forwarded = forwards(consume_all(bootstrap, account_topic_name(settings), idle=5))
        got = read_account_outputs(settings, n_want, timeout=300)
    finally:
        log = worker.log_tail()
        worker.stop()

    live = live_outputs(got)
    raw = sum(1 for r in got if isinstance(r["value"], dict) and r["value"].get("account_id"))
    events = len({r["value"]["event"]["event_id"] for r in forwarded})
    resent = len(forwarded) - len({origin_of(r) for r in forwarded})
    print(
        f"\naccount crash test: {len(want)} accounts, {events} account events "
        f"({len(forwarded)} forwarded incl. {resent} re-sent after a kill), {kills} SIGKILLs; "
        f"account outputs {raw} raw / {sum(len(v) for v in live.values())} unique"
    )
    assert kills == 3 and resent > 0, log
    assert set(live) == set(want), log
    for account, records_ in want.items():
        assert live[account] == records_, f"{account} differs\n{log}"
