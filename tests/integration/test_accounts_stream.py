"""Accounts through the real broker: the simulator's customer personas produced to the input
topics; the worker re-keys their account events to ``<app_id>-account-events`` (forward
envelopes, plus the lead partitions' progress markers) and folds them into the ``accounts``
table in event time. Checked against independent runs of the pure account core:

* every account event of the input reached the account topic once (the re-keying), keyed by
  its account;
* the worker's account transitions and actions equal replaying the input file (the core over
  each account's events in event-time order), for every persona. The account topic itself does
  not hold them in that order (an account's users are leads on different partitions, so their
  forwards interleave by processing order; counted and printed): the worker's event-time merge
  over the lead partitions (stream/runtime/account_merge.py) restores it.

Event times are a year ahead of the wall clock (the worker's clock is then the event time), and
the input ends with one flush event per account at ``T_end`` so that both sides fire the
account timers due up to ``T_end``. The input is produced before the worker starts (a backlog:
what the event-time merge is for), and the merge may wait up to 10 s for a silent lead
partition (a loaded machine must not turn a slow lead batch into an idle timeout).
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stream.runtime.accounts import account_topic_name
from tests.support.account_stream import (
    forwards,
    live_outputs,
    persona_run,
    read_account_outputs,
    topic_order,
)
from tests.support.worker import WorkerProcess, consume_all, produce_raw

if TYPE_CHECKING:
    from stream.settings import Settings


def test_customer_personas_through_kafka_equal_replaying_the_file(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    personas = persona_run(kafka_settings, tmp_path / "events.jsonl")
    settings, per_file, want, records = (
        personas.settings,
        personas.per_file,
        personas.want,
        personas.records,
    )
    n_want = personas.n_want
    n_account_events = sum(len(v) for v in per_file.values())
    bootstrap = settings.kafka_bootstrap_servers

    produce_raw(bootstrap, records)
    with WorkerProcess.from_settings(settings) as worker:
        began = time.monotonic()
        worker.wait_ready()
        worker.wait_processed(len(records), timeout=300)
        rows = consume_all(
            bootstrap,
            account_topic_name(settings),
            until=lambda r: len(forwards(r)) >= n_account_events,
            timeout=120,
        )
        got = read_account_outputs(settings, n_want, timeout=180)
        took = time.monotonic() - began
        log = worker.log_tail()
    print(f"\nworker: {len(records)} messages; account outputs read after {took:.1f} s")

    # 1. re-keying: each account event once (no worker died), keyed by its account
    forwarded = forwards(rows)
    seen = collections.Counter(r["value"]["event"]["event_id"] for r in forwarded)
    assert len(seen) == n_account_events and max(seen.values()) == 1
    assert all(r["key"] == r["value"]["event"]["account_id"] for r in forwarded)
    markers = len(rows) - len(forwarded)
    assert markers > 0  # the lead partitions reported their progress
    # 2. the worker's outputs equal replaying the file, for every persona
    live = live_outputs(got)
    per_topic = topic_order(forwarded)
    in_topic_order = [
        a
        for a in per_file
        if [e.event_id for e in per_file[a]] == [e.event_id for e in per_topic[a]]
    ]
    same = [a for a in want if live.get(a) == want[a]]
    print(
        f"{len(want)} accounts, {n_want} account outputs; {len(in_topic_order)} of {len(want)} "
        f"accounts in file order on the account topic ({markers} progress markers); "
        f"{len(same)} of {len(want)} with outputs equal to replaying the file"
    )
    assert set(live) == set(want), log
    for account, records_ in want.items():
        assert live[account] == records_, f"{account} differs from replaying the file\n{log}"
