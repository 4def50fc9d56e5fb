"""What the worker buffers across a rebalance, without a broker: the real app of
:func:`stream.app.create_app` (never started), its :class:`stream.runtime.drain.DrainConsumer`
and :class:`stream.runtime.agent.LeadRunner`, driven through the calls Faust makes.

The bugs these rows pin down (issue 9: the rebalance and SIGKILL reliability tests lost inputs):

* Faust's recovery calls ``app.flow_control.resume()`` after it has resumed and sought the
  stream partitions; mode clears every queue registered with flow control on resume. The
  runner's buffers were registered, so the messages delivered between the seek and that resume
  were dropped although the consumer's position was past them: never delivered again, never
  acked, and the partition's commits stopped at the hole.
* The drain waited for flow control to resume and then delivered a message fetched before the
  rebalance into the buffers of the new assignment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.app import create_app
from stream.runtime.merge import PartitionMerge, Slot
from stream.settings import Settings

PARTITION = 1


@dataclass
class Message:
    """The fields of a Faust message the worker reads."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: float = 0.0

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers="127.0.0.1:9",  # never connected: the app is not started
        data_dir=tmp_path / "data",
        topic_partitions=4,
        accounts_enabled=False,
    )


def _event(settings: Settings, offset: int, lead: str = "L-1") -> Message:
    value = orjson.dumps(
        {
            "event_id": f"e-{offset}",
            "type": "session.started",
            "lead_id": lead,
            "occurred_at": "2026-11-20T10:00:00Z",
        }
    )
    return Message(settings.topic_product_events, PARTITION, offset, lead.encode(), value)


def _noop() -> None:
    return None


def _buffered_offsets(runner: Any, topic: str) -> list[int]:
    merge = runner.merges.get(PARTITION)
    return [] if merge is None else [slot.offset for slot in merge.queues[topic]]


# --- the runner's buffers and Faust's flow control --------------------------------------------


def test_flow_control_resume_keeps_the_runner_buffers(tmp_path: Path) -> None:
    """Recovery's last ``flow_control.resume()`` comes after the seek: what was delivered
    before it must stay buffered (the consumer will not deliver it again)."""
    s = _settings(tmp_path)
    app: Any = create_app(s)
    runner = app.nurture_agent
    for offset in (7, 8, 9):
        runner.deliver(_event(s, offset), _noop, _noop)
    assert _buffered_offsets(runner, s.topic_product_events) == [7, 8, 9]
    app.flow_control.resume()
    assert _buffered_offsets(runner, s.topic_product_events) == [7, 8, 9]
    assert runner.received[(s.topic_product_events, PARTITION)] == 9


def test_revocation_drops_the_runner_buffers(tmp_path: Path) -> None:
    """Revoked partitions lose what was buffered: the next owner starts from the committed
    offset."""
    s = _settings(tmp_path)
    app: Any = create_app(s)
    runner = app.nurture_agent
    for offset in (7, 8):
        runner.deliver(_event(s, offset), _noop, _noop)
    runner.deliver(Message(runner.tick_topic, PARTITION, 3, b"", b"{}"), _noop, _noop)
    asyncio.run(runner.on_revoked({0, 1, 2, 3}))
    assert runner.buffered() == 0
    assert runner.ticks == {}
    assert runner.received == {}


def test_tick_delivered_again_after_a_seek_is_kept_once(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    app: Any = create_app(s)
    runner = app.nurture_agent
    for offset in (3, 4, 5, 4, 5, 6):  # a seek back to 4
        runner.deliver(Message(runner.tick_topic, PARTITION, offset, b"", b"{}"), _noop, _noop)
    assert [t.offset for t in runner.ticks[PARTITION]] == [3, 4, 5, 6]


# --- the drain never delivers a message fetched before a rebalance ---------------------------


def _drain_app(s: Settings) -> tuple[Any, list[int], Any]:
    """The real app with its flow running, the product topic on a fast path that records the
    delivered offsets, and a fetcher stand-in the drain loop stops on: (app, delivered,
    fetcher)."""
    app: Any = create_app(s)
    delivered: list[int] = []
    app.fast_path = {s.topic_product_events: lambda m, _hi, _lo: delivered.append(m.offset)}
    fetcher = type("Fetcher", (), {"_stopped": asyncio.Event()})()
    app.flow_control.resume()
    app.consumer.resume_flow()
    return app, delivered, fetcher


async def _drain_with_rebalance(tmp_path: Path, resume_in_same_step: bool) -> tuple[list, Any]:
    """Run the drain loop over one fetch of offsets 10, 11, 12; a rebalance begins (Faust's
    ``_on_partitions_revoked``: ``stop_flow`` + ``flow_control.suspend``) while the drain
    awaits before delivering 11, and ends (flow resumed) a few loop steps later or, with
    ``resume_in_same_step``, before the drain looks again."""
    s = _settings(tmp_path)
    app, delivered, fetcher = _drain_app(s)
    consumer = app.consumer
    consumer.yield_every = 0  # a sleep(0) before every message: where the rebalance begins
    topic = s.topic_product_events
    loop = asyncio.get_running_loop()
    resumed = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def rebalance_ends() -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        consumer.resume_flow()
        app.flow_control.resume()
        resumed.set()

    def rebalance_begins() -> None:
        consumer.stop_flow()
        app.flow_control.suspend()
        if resume_in_same_step:
            consumer.resume_flow()
            app.flow_control.resume()
            resumed.set()
        else:
            tasks.append(loop.create_task(rebalance_ends()))

    calls = 0

    async def getmany(timeout: float) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            for offset in (10, 11, 12):
                if offset == 11:
                    loop.call_soon(rebalance_begins)  # runs in the drain's next await
                yield TP(topic, PARTITION), _event(s, offset)
        else:
            await resumed.wait()
            fetcher._stopped.set()

    consumer.getmany = getmany
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=10)
    return delivered, consumer


@pytest.mark.parametrize(
    "resume_in_same_step", [False, True], ids=["rebalance_in_progress", "rebalance_over"]
)
def test_message_fetched_before_a_rebalance_is_never_delivered_after_it(
    tmp_path: Path, resume_in_same_step: bool
) -> None:
    delivered, consumer = asyncio.run(_drain_with_rebalance(tmp_path, resume_in_same_step))
    assert delivered == [10]
    assert consumer.stale_dropped == 1  # 11 was dropped (12, of the same fetch, never looked at)
    assert consumer.flow_stops == 1
    assert consumer._read_offset[TP(_settings(tmp_path).topic_product_events, PARTITION)] == 10


# --- the merge keeps one copy per offset when the consumer goes back --------------------------

REDELIVERY_ROWS = [
    ("in_order_appends", [5, 6, 7], [5, 6, 7]),
    ("gap_is_kept", [5, 8, 9], [5, 8, 9]),
    ("seek_back_to_a_buffered_offset_keeps_one_copy", [5, 6, 7, 6, 7, 8], [5, 6, 7, 8]),
    ("seek_back_below_the_buffer_restarts_it", [5, 6, 7, 3, 4], [3, 4]),
    ("same_offset_twice_is_one_copy", [5, 5], [5]),
]


@pytest.mark.parametrize(
    ("offsets", "want"), [row[1:] for row in REDELIVERY_ROWS], ids=[r[0] for r in REDELIVERY_ROWS]
)
def test_merge_push_after_redelivery(offsets: list[int], want: list[int]) -> None:
    merge = PartitionMerge(["t"])
    for offset in offsets:
        merge.push("t", Slot(0, offset, None))
    assert [slot.offset for slot in merge.queues["t"]] == want


@settings(max_examples=200, deadline=None)
@given(
    end=st.integers(min_value=1, max_value=60),
    seeks=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=6),
)
def test_merge_buffer_is_each_offset_once_in_order_whatever_the_seeks(
    end: int, seeks: list[tuple[int, int]]
) -> None:
    """A consumer delivering offsets 0..end-1 in order, going back to an earlier offset at
    arbitrary points (each ``(after, back_to)``: after delivering ``after``, resume from
    ``back_to``), leaves every offset buffered exactly once, in order (nothing taken out)."""
    merge = PartitionMerge(["t"])
    pending = sorted((a % end, b % end) for a, b in seeks)
    position = 0
    while position < end:
        merge.push("t", Slot(0, position, None))
        if pending and pending[0][0] == position:
            _after, back = pending.pop(0)
            position = min(back, position)  # a seek back (to the committed offset)
            merge.push("t", Slot(0, position, None))
        position += 1
    assert [slot.offset for slot in merge.queues["t"]] == list(range(end))


# --- a message delivered while recovery seeks keeps its read offset: no false gap -------------


async def _drain_during_seek(tmp_path: Path) -> tuple[list[int], Any, TP]:
    """A worker's first assignment: the flow is active while recovery's ``perform_seek`` awaits
    the committed offsets (aiokafka fetches them partition by partition). The drain delivers
    offsets 100-102 of a partition during that await; the seek then ends (committed 100) and
    the drain delivers 103."""
    s = _settings(tmp_path)
    app, delivered, fetcher = _drain_app(s)
    consumer = app.consumer
    topic = s.topic_product_events
    tp = TP(topic, PARTITION)
    app.topics._acking_topics.add(topic)  # what Faust's subscription does for the input topics
    committed_asked = asyncio.Event()
    committed_back = asyncio.Event()

    async def seek_to_committed() -> dict[TP, int]:
        committed_asked.set()
        await committed_back.wait()  # the per-partition committed-offset fetches
        return {tp: 100}

    consumer.seek_to_committed = seek_to_committed
    seek = asyncio.get_running_loop().create_task(consumer.perform_seek())
    await committed_asked.wait()
    calls = 0

    async def getmany(timeout: float) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            for offset in (100, 101, 102):
                yield tp, _event(s, offset)
        elif calls == 2:
            committed_back.set()
            await seek
            yield tp, _event(s, 103)
        else:
            fetcher._stopped.set()

    consumer.getmany = getmany
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=10)
    return delivered, consumer, tp


def test_message_delivered_during_the_seek_records_no_false_gap(tmp_path: Path) -> None:
    delivered, consumer, tp = asyncio.run(_drain_during_seek(tmp_path))
    assert delivered == [100, 101, 102, 103]
    assert consumer._read_offset[tp] == 103
    # Faust's gap would count 101-102 as acked before the runner processed them
    assert not consumer._gap.get(tp)
    assert consumer._committed_offset[tp] == 100


# --- the owned partitions, once per assignment ---------------------------------------------


def test_owned_partitions_are_computed_once_per_assignment(tmp_path: Path) -> None:
    """The runner asks the assignor again only when Faust installed a new assignment (its
    ``_assignment`` object is replaced at every rebalance)."""
    from faust.assignor.client_assignment import ClientAssignment

    s = _settings(tmp_path)
    app: Any = create_app(s)
    runner = app.nurture_agent
    assignor = app.assignor
    calls: list[int] = []
    assigned_actives = assignor.assigned_actives

    def counted() -> Any:
        calls.append(1)
        return assigned_actives()

    assignor.assigned_actives = counted
    crm, email = s.topic_crm_events, s.topic_email_events
    assignor._assignment = ClientAssignment(actives={crm: [2, 0], "other": [3]}, standbys={})
    assert runner.owned_partitions() == [0, 2]
    assert runner.owned_partitions() == [0, 2]
    assert len(calls) == 1
    assignor._assignment = ClientAssignment(actives={email: [1]}, standbys={crm: [0]})
    assert runner.owned_partitions() == [1]
    assert len(calls) == 2


# --- late inputs: always counted, logged at most once per interval -------------------------


def test_late_inputs_are_counted_always_and_logged_once_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from stream.runtime.batch import BatchResult
    from stream.runtime.late import LATE_LOG_EVERY_S

    s = _settings(tmp_path)
    app: Any = create_app(s)
    runner = app.nurture_agent
    at = 1_900_000_000_000

    def late(n: int, offset: int) -> BatchResult:
        result = BatchResult(partition=PARTITION)
        result.late = n
        result.late_first = (s.topic_product_events, offset, at, at + 60_000)
        return result

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if "late input" in r.getMessage()]

    def counted() -> float:
        return float(
            app.nurture_metrics.registry.get_sample_value("nurture_runtime_late_inputs_total")
        )

    with caplog.at_level("WARNING", logger="nurture.worker"):
        runner.late.note(PARTITION, late(2, 10))
        runner.late.note(PARTITION, late(3, 20))
        runner.late.note(0, late(4, 30))
        assert len(logged()) == 1 and "2 late input(s)" in logged()[0]
        assert runner.late.count == 9 and counted() == 9
        runner.late.logged_at -= LATE_LOG_EVERY_S  # the interval passed
        runner.late.note(PARTITION, late(1, 40))
    assert len(logged()) == 2
    assert "(8 since the last such warning)" in logged()[1] and "@40 " in logged()[1]
    assert runner.late.count == 10 and counted() == 10


# --- the batch loop's linger (NURTURE_BATCH_LINGER_MS) --------------------------------------


class _RoundReached(Exception):
    pass


@pytest.mark.parametrize(
    ("linger_ms", "batch_size", "slept"),
    [
        (None, 2000, [0.005]),  # the default: a small batch waits 5 ms for the fetcher first
        (20.0, 2000, [0.02]),
        (0.0, 2000, []),  # 0: cut at once
        (5.0, 1, []),  # a full batch never waits
    ],
)
def test_the_batch_loop_lingers_only_before_a_small_batch(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    linger_ms: float | None,
    batch_size: int,
    slept: list[float],
) -> None:
    linger = {} if linger_ms is None else {"batch_linger_ms": linger_ms}
    s = Settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path / "data",
        topic_partitions=4,
        accounts_enabled=False,
        batch_size=batch_size,
        **linger,
    )
    app: Any = create_app(s)
    runner = app.nurture_agent
    runner.deliver(_event(s, 0), _noop, _noop)  # wakes the loop with one buffered message
    sleeps: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def round_reached() -> bool:
        raise _RoundReached  # the loop got past the linger to the round: stop here

    runner._ready = round_reached
    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)  # the loop's only sleep is the linger
    with pytest.raises(_RoundReached):
        asyncio.run(runner.run())
    assert sleeps == slept
