"""The processes' garbage-collector settings (stream.commands.heap): collections far less often
than CPython's 700-allocation default, and what start-up allocated frozen out of reach."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stream.commands.heap import GEN0_THRESHOLD, GEN1_EVERY, GEN2_EVERY, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_tune_gc_collects_less_often(restored_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(freeze=False)
    assert gc.get_threshold() == (GEN0_THRESHOLD, GEN1_EVERY, GEN2_EVERY)
    assert GEN0_THRESHOLD > 700 * 10


def test_tune_gc_freezes_what_start_up_allocated(restored_gc: None) -> None:
    kept = [[i] for i in range(1000)]  # start-up state: tracked container objects
    gc.unfreeze()
    tune_gc()
    assert gc.get_freeze_count() >= len(kept)
