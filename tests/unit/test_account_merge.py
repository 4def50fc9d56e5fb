"""The account topic's event-time merge over its origins (lead partitions), and the lead
runner's progress markers. No Faust, no clock: times are passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.runtime.account_merge import (
    CONTROL,
    OriginMerge,
    Progress,
    open_progress,
    progress_value,
    progress_values,
)
from stream.runtime.merge import Slot

TOPIC = "acc"


@dataclass
class Ev:
    source: int
    at: int


@dataclass
class Item:
    event: Any


_offsets = iter(range(10**9))


def slot(source: int | None, at: int, offset: int | None = None) -> Slot:
    """A buffered message; offsets grow unless given (a given one may go back: a seek)."""
    if offset is None:
        offset = 1000 + next(_offsets)
    event = None if source is None else Ev(source, at)
    return Slot(at if event is not None else -(2**62), offset, Item(event))


def mark(merge: OriginMerge, origin: int, stream_time: int) -> None:
    """A progress marker read at the next offset (its message not buffered here)."""
    merge.advance(origin, stream_time, 1000 + next(_offsets))


def never(_topic: str) -> bool:
    return False


def times(slots: list[Slot]) -> list[tuple[int, int]]:
    return [(s.item.event.source, s.at) for s in slots if s.item.event is not None]


def test_an_origin_without_progress_holds_the_merge_until_it_reports() -> None:
    merge = OriginMerge(TOPIC, [0, 1])
    merge.push(TOPIC, slot(0, 50))
    assert merge.take(10, never, now=0.0, max_idle=5.0) == []  # origin 1 unknown: hold
    mark(merge, 1, 40)
    assert merge.take(10, never, now=0.1, max_idle=5.0) == []  # 1 may still send 40..50
    merge.push(TOPIC, slot(1, 45))
    assert times(merge.take(10, never, now=0.2, max_idle=5.0)) == [(1, 45)]
    mark(merge, 1, 60)
    assert times(merge.take(10, never, now=0.3, max_idle=5.0)) == [(0, 50)]


def test_heads_are_taken_in_event_time_across_origins() -> None:
    merge = OriginMerge(TOPIC, [0, 1, 2])
    for source, at in [(0, 10), (0, 30), (1, 20), (1, 25), (2, 5), (0, 40)]:
        merge.push(TOPIC, slot(source, at))
    for origin in (0, 1, 2):
        mark(merge, origin, 100)
    got = times(merge.take(10, never, now=0.0, max_idle=5.0))
    assert got == [(2, 5), (0, 10), (1, 20), (1, 25), (0, 30), (0, 40)]


def test_the_wait_is_bounded_and_a_silent_origin_is_passed_over_until_it_sends() -> None:
    merge = OriginMerge(TOPIC, [0, 1])
    merge.push(TOPIC, slot(0, 50))
    assert merge.take(10, never, now=0.0, max_idle=1.0) == []
    assert times(merge.take(10, never, now=1.5, max_idle=1.0)) == [(0, 50)]
    assert merge.idle_timeouts == 1 and merge.forced == {1}
    merge.push(TOPIC, slot(0, 60))
    assert times(merge.take(10, never, now=1.6, max_idle=1.0)) == [(0, 60)]  # 1 still forced
    merge.push(TOPIC, slot(1, 55))  # it sends again: waited for again
    merge.push(TOPIC, slot(0, 70))
    assert times(merge.take(10, never, now=1.7, max_idle=1.0)) == [(1, 55)]


def test_markers_and_invalid_messages_go_first_and_clear_drops_progress() -> None:
    merge = OriginMerge(TOPIC, [0])
    merge.push(TOPIC, slot(0, 10, offset=6))
    merge.push(TOPIC, slot(None, 0, offset=7))
    assert merge.queues[CONTROL] and merge.buffered() == 2
    mark(merge, 0, 10)
    taken = merge.take(10, never, now=0.0, max_idle=1.0)
    assert [s.offset for s in taken] == [7, 6]
    merge.push(TOPIC, slot(0, 20))
    merge.clear()
    assert merge.buffered() == 0 and merge.progress == {}  # delivered again after the seek
    assert merge.caught_up(never) and not merge.caught_up(lambda _t: True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 1000), max_size=8).map(sorted),
        min_size=1,
        max_size=4,
    ),
    st.randoms(use_true_random=False),
)
def test_any_arrival_interleaving_gives_event_time_order(
    per_origin: list[list[int]], rng: Any
) -> None:
    """Each origin's forwards in its own time order, interleaved at random on the topic, with
    each origin's progress reported after each of its forwards: the merge releases them in
    event-time order (ties in origin order), never a later one before an earlier one."""
    merge = OriginMerge(TOPIC, range(len(per_origin)))
    pending = [list(ts) for ts in per_origin]
    out: list[tuple[int, int]] = []
    while any(pending):
        origin = rng.choice([o for o, ts in enumerate(pending) if ts])
        at = pending[origin].pop(0)
        merge.push(TOPIC, slot(origin, at))
        mark(merge, origin, at)
        out += times(merge.take(3, never, now=0.0, max_idle=60.0))
    for origin in range(len(per_origin)):
        mark(merge, origin, 2000)  # every origin idle at the end
    out += times(merge.take(10_000, never, now=0.0, max_idle=60.0))
    assert [at for _o, at in out] == sorted(at for ts in per_origin for at in ts)
    assert merge.idle_timeouts == 0


def test_progress_markers_are_rate_limited_and_sent_when_idle() -> None:
    now = [0.0]
    progress = Progress(TOPIC, 3, interval=0.5, clock=lambda: now[0])
    progress.note(2, 100)
    first = progress.flush()
    assert [(r[0], r[1]) for r in first] == [(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)]
    assert open_progress(first[0][3] or b"") == [(2, 100)]
    progress.note(2, 150)
    assert progress.flush() == []  # within the interval
    progress.note(2, 150, idle=True)
    assert progress.flush() != []  # idle: report what is unreported at once
    progress.note(2, 150, idle=True)
    assert progress.flush() == []  # nothing new
    now[0] = 1.0
    progress.note(2, 150)
    assert progress.flush() == []
    progress.note(2, 151)
    assert len(progress.flush()) == 3
    assert open_progress(b'{"src":[]}') is None and open_progress(progress_value(1, 5)) == [(1, 5)]


def test_one_marker_per_account_partition_carries_every_lead_partition_that_moved() -> None:
    """The combined marker: the lead partitions noted in a round go in one record per account
    partition (12 x 12 records per interval before), each with its latest stream time."""
    now = [0.0]
    progress = Progress(TOPIC, 4, interval=0.2, clock=lambda: now[0])
    for origin, at in [(0, 10), (5, 70), (0, 30), (3, 20), (5, 60)]:
        progress.note(origin, at)
    sent = progress.flush()
    assert [(r[0], r[1], r[2]) for r in sent] == [(TOPIC, q, None) for q in range(4)]
    assert {r[3] for r in sent} == {progress_values([(0, 30), (3, 20), (5, 70)])}
    assert open_progress(sent[0][3] or b"") == [(0, 30), (3, 20), (5, 70)]
    assert progress.sent == 4


def test_uncombined_markers_are_the_single_partition_kind_earlier_workers_read() -> None:
    """combined=False (NURTURE_ACCOUNT_FORWARD_FORMAT=json, a rolling upgrade): one marker per
    lead partition and account partition, each the value a worker before the combined marker
    wrote."""
    progress = Progress(TOPIC, 2, clock=lambda: 0.0, combined=False)
    progress.note(1, 10)
    progress.note(4, 40)
    sent = progress.flush()
    assert [(r[1], r[3]) for r in sent] == [
        (0, progress_value(1, 10)),
        (1, progress_value(1, 10)),
        (0, progress_value(4, 40)),
        (1, progress_value(4, 40)),
    ]
    assert progress_value(1, 10) == b'{"progress":[1,10]}'


@pytest.mark.parametrize(
    "value",
    [
        b'{"progress":[]}',
        b'{"progress":[1]}',
        b'{"progress":[[1,2],[3]]}',
        b'{"progress":[[1,"2"]]}',
        b'{"progress":[1.5,2]}',
        b'{"progress":{"1":2}}',
        b'{"progress":[[1,2]',
    ],
)
def test_a_malformed_marker_is_not_progress(value: bytes) -> None:
    assert open_progress(value) is None


def test_a_revoked_lead_partition_is_not_reported_and_is_reported_anew_when_assigned() -> None:
    progress = Progress(TOPIC, 1, clock=lambda: 0.0)
    progress.note(1, 10)
    progress.note(2, 20)
    progress.forget({1})
    assert open_progress(progress.flush()[0][3] or b"") == [(2, 20)]
    progress.note(2, 5, idle=True)  # not later than what was sent: nothing to send
    assert progress.flush() == []
    progress.forget({2})
    progress.note(2, 5, idle=True)  # assigned again: its next owner's time, reported anew
    assert open_progress(progress.flush()[0][3] or b"") == [(2, 5)]


def test_a_seek_back_keeps_one_copy_of_each_message() -> None:
    """The consumer went back to offset 2 (a seek to the committed offset): the copies buffered
    from 2 on, in every origin's queue, give way to the messages delivered again."""
    merge = OriginMerge(TOPIC, [0, 1])
    for offset, (source, at) in enumerate([(0, 10), (1, 11), (0, 12), (1, 13), (None, 0)]):
        merge.push(TOPIC, slot(source, at, offset))
    for offset, (source, at) in enumerate([(0, 12), (1, 13), (None, 0)], start=2):
        merge.push(TOPIC, slot(source, at, offset))
    mark(merge, 0, 100)
    mark(merge, 1, 100)
    taken = merge.take(10, never, now=0.0, max_idle=1.0)
    assert [s.offset for s in taken] == [4, 0, 1, 2, 3]


def test_a_seek_back_forgets_the_progress_of_markers_delivered_again() -> None:
    """The account crash test's AC-00000 (1 run in 6): origin 0's event at 17 (offset 32), origin
    1's at 10 (offset 161), then origin 1's marker "up to 20" (offset 170), all delivered; then
    the consumer seeks back to offset 30 (its committed offset) and delivers 32 again. The
    marker's promise covers only what follows it on the topic: origin 1's event at 10 is
    delivered again, so 32 must wait for it (the progress kept, 17 went first: late 10)."""
    merge = OriginMerge(TOPIC, [0, 1])
    merge.push(TOPIC, slot(0, 17, offset=32))
    merge.push(TOPIC, slot(1, 10, offset=161))
    merge.advance(1, 20, offset=170)
    merge.push(TOPIC, slot(None, 0, offset=170))
    merge.push(TOPIC, slot(0, 17, offset=32))  # the seek back: delivered again from 32
    assert times(merge.take(10, never, now=0.0, max_idle=5.0)) == []  # origin 1 may send 10
    merge.push(TOPIC, slot(1, 10, offset=161))
    merge.advance(1, 20, offset=170)  # the marker read again: its promise holds again
    merge.push(TOPIC, slot(None, 0, offset=170))
    assert times(merge.take(10, never, now=0.1, max_idle=5.0)) == [(1, 10), (0, 17)]
    assert merge.idle_timeouts == 0


def test_a_marker_delivered_again_first_after_a_seek_counts_after_the_rewind() -> None:
    """The runner applies a marker before it buffers the marker's message: a seek back that
    starts at a marker keeps that marker's progress, and drops the later buffered copies."""
    merge = OriginMerge(TOPIC, [0, 1])
    merge.push(TOPIC, slot(0, 30, offset=5))
    merge.advance(1, 40, offset=6)
    merge.push(TOPIC, slot(None, 0, offset=6))
    merge.push(TOPIC, slot(0, 50, offset=7))
    merge.advance(1, 40, offset=6)  # delivered again from 6
    merge.push(TOPIC, slot(None, 0, offset=6))
    assert merge.progress == {1: 40} and merge.buffered() == 2  # 5 and the marker; 7 dropped
    assert times(merge.take(10, never, now=0.0, max_idle=5.0)) == [(0, 30)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["push", "control", "seek", "mark", "take", "wait", "clear"]),
            st.integers(0, 2),
            st.integers(0, 50),
        ),
        max_size=60,
    )
)
def test_the_buffered_count_is_the_queues_sum_after_any_operations(
    ops: list[tuple[str, int, int]],
) -> None:
    """buffered() is a kept count (not a sum over the origins per message): after any mix of
    pushes, seeks back, markers, takes (also a held take), bounded waits and clears it equals
    the messages in the queues."""
    merge = OriginMerge(TOPIC, range(3))
    offset = 0
    for op, origin, n in ops:
        if op == "push":
            merge.push(TOPIC, slot(origin, n, offset))
            offset += 1
        elif op == "control":
            merge.push(TOPIC, slot(None, 0, offset))
            offset += 1
        elif op == "seek":
            offset = max(0, offset - n % 5)
            merge.push(TOPIC, slot(origin, n, offset))
            offset += 1
        elif op == "mark":
            merge.advance(origin, n, offset)
            offset += 1
        elif op == "take":
            merge.take(1 + n % 4, never, now=0.0, max_idle=60.0)
        elif op == "wait":
            merge.take(1 + n % 4, never, now=float(n), max_idle=10.0)
        else:
            merge.clear()
            offset = 0
        assert merge.buffered() == sum(len(q) for q in merge.queues.values())
