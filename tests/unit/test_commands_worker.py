"""``nurture worker`` applies the interpreter settings before it starts the app: the GIL switch
interval (``NURTURE_GIL_SWITCH_INTERVAL_MS``) the consumer thread's hand-offs wait on."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.commands import worker


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*threshold)
    gc.unfreeze()


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Any:
    started: list[Any] = []
    monkeypatch.setattr("stream.app.run_worker", lambda settings: started.append(settings) or 0)
    monkeypatch.setenv("NURTURE_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert worker.run(argparse.Namespace()) == 0
    return started[0]


@pytest.mark.parametrize("interval_ms", [1.0, 5.0, 20.0])
def test_worker_sets_the_gil_switch_interval(
    interval_ms: float,
    restored_interpreter: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    sys.setswitchinterval(0.05)  # something else first: the run must change it
    settings = _run(monkeypatch, tmp_path, NURTURE_GIL_SWITCH_INTERVAL_MS=str(interval_ms))
    assert settings.gil_switch_interval_ms == interval_ms
    assert sys.getswitchinterval() == pytest.approx(interval_ms / 1000.0)


def test_default_switch_interval_is_cpython_s(
    restored_interpreter: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NURTURE_GIL_SWITCH_INTERVAL_MS", raising=False)
    _run(monkeypatch, tmp_path)
    assert sys.getswitchinterval() == pytest.approx(0.005)


@pytest.mark.parametrize("bad", ["0", "-1", "101", "fast"])
def test_a_bad_switch_interval_fails_at_start_up_naming_the_field(
    bad: str, restored_interpreter: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match="NURTURE_GIL_SWITCH_INTERVAL_MS"):
        _run(monkeypatch, tmp_path, NURTURE_GIL_SWITCH_INTERVAL_MS=bad)
