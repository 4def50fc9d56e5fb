"""Where the local broker keeps its data (``NURTURE_KAFKA_DATA_ROOT``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.kafka_local import data_root


def test_data_root_unset_is_the_system_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NURTURE_KAFKA_DATA_ROOT", raising=False)
    assert data_root() is None


def test_data_root_blank_is_the_system_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_KAFKA_DATA_ROOT", "  ")
    assert data_root() is None


def test_data_root_from_the_environment_is_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "shm" / "brokers"
    monkeypatch.setenv("NURTURE_KAFKA_DATA_ROOT", str(root))
    assert data_root() == root
    assert root.is_dir()
