"""The stalled-input log line (:mod:`stream.runtime.stall`): a partition with lag (high
watermark past the committed offset, or never fetched) and neither a delivery nor a commit
between two looks is logged with the consumer state that decides its fetching; a partition
that delivered or committed since, or has no lag, is not. The real app of
:func:`stream.app.create_app` (never started); the broker's high watermark is the one stand-in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from stream.app import create_app
from stream.runtime.stall import StallWatch
from stream.settings import Settings
from tests.unit.test_runtime_rebalance import PARTITION, _event, _noop, _settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ROWS = [
    # (name, offsets delivered before look 1 / between look 1 and 2, committed offset at look
    # 1 / at look 2, high watermark, stalled)
    ("lag_and_nothing_delivered_is_stalled", [7, 8], [], 7, 7, 20, True),
    ("lag_but_delivered_since_is_not", [7, 8], [9], 7, 7, 20, False),
    ("lag_but_committed_since_is_not", [7, 8], [], 7, 9, 20, False),
    ("delivered_but_never_committed_is_stalled", [7, 8], [], 7, 7, 9, True),
    ("all_committed_is_not", [7, 8], [], 9, 9, 9, False),
    ("nothing_ever_delivered_past_committed_is_stalled", [], [], None, None, 20, True),
    ("never_fetched_no_high_watermark_is_stalled", [], [], 7, 7, None, True),
]


@pytest.mark.parametrize(
    ("before", "between", "committed_1", "committed_2", "high", "stalled"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_stalled_input_is_logged_with_the_consumer_state(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    before: list[int],
    between: list[int],
    committed_1: int | None,
    committed_2: int | None,
    high: int | None,
    stalled: bool,
) -> None:
    s: Settings = _settings(tmp_path)
    app: Any = create_app(s)
    runner = app.nurture_agent
    consumer = app.consumer
    topic = s.topic_product_events
    tp = TP(topic, PARTITION)
    consumer.highwater = lambda t: high if t == tp else 0  # the broker's answer
    consumer._active_partitions = set()  # on_buffer_full took it out ...
    consumer._buffered_partitions = {tp}  # ... and nobody put it back
    clock = Clock()
    watch = StallWatch(lambda: consumer, interval=10.0, clock=clock)
    runner.stall_watch = watch
    for offset in before:
        runner.deliver(_event(s, offset), _noop, _noop)
    consumer._committed_offset[tp] = committed_1

    def look() -> list[tuple[str, int]]:
        clock.now += 10.0
        assert watch.due()
        return watch.look(runner.input_topics, [PARTITION], runner.received, runner.paused)

    assert look() == []  # the first look only records what was received
    for offset in between:
        runner.deliver(_event(s, offset), _noop, _noop)
    consumer._committed_offset[tp] = committed_2
    clock.now += 5.0
    assert not watch.due()
    with caplog.at_level(logging.WARNING, logger="nurture.stall"):
        got = look()
    assert got == ([(topic, PARTITION)] if stalled else [])
    assert watch.stalls == int(stalled)
    if stalled:
        line = caplog.records[-1].getMessage()
        assert f"stalled input {topic}:{PARTITION}: high watermark {high}, committed" in line
        assert "'active': False" in line and "'buffered_set': True" in line
