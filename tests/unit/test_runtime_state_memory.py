"""The worker's state memory budget: ``NURTURE_STATE_WRITE_BUFFER_MB`` and
``NURTURE_STATE_BLOCK_CACHE_MB`` reach the options Faust opens every table partition with
(Faust's own defaults: 64 MB memtables, up to 3, and a 2 GB block cache per partition), and
``NURTURE_LEAD_CACHE_SIZE`` bounds the decoded lead records kept between batches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stream.app import create_app
from stream.settings import Settings

MB = 1024 * 1024


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers="127.0.0.1:9",  # never connected: the app is not started
        data_dir=tmp_path / "data",
        topic_partitions=2,
        accounts_enabled=True,
        **fields,
    )


async def _options(settings: Settings, table: str) -> Any:
    app: Any = create_app(settings)
    return app.tables[table].data.rocksdb_options


@pytest.mark.parametrize("table", ["leads", "accounts"])
@pytest.mark.parametrize(
    ("fields", "buffer_mb", "cache_mb"),
    [
        pytest.param({}, 4, 8, id="defaults"),
        pytest.param({"state_write_buffer_mb": 4, "state_block_cache_mb": 64}, 4, 64, id="set"),
    ],
)
def test_each_state_table_opens_with_the_memory_budget(
    tmp_path: Path, table: str, fields: dict[str, Any], buffer_mb: int, cache_mb: int
) -> None:
    options = asyncio.run(_options(_settings(tmp_path, **fields), table))
    assert options.use_rocksdict
    assert options.write_buffer_size == buffer_mb * MB
    assert options.max_write_buffer_number == 2
    assert options.block_cache_size == cache_mb * MB
    opened = options.as_options()  # the rocksdict Options a partition's DB is opened with
    assert opened is not None


@pytest.mark.parametrize(
    ("fields", "want"),
    [
        pytest.param({}, 30_000, id="default"),
        pytest.param({"lead_cache_size": 500}, 500, id="set"),
    ],
)
def test_the_lead_cache_holds_at_most_the_configured_records(
    tmp_path: Path, fields: dict[str, Any], want: int
) -> None:
    async def cache_size() -> int:
        app: Any = create_app(_settings(tmp_path, **fields))
        return int(app.nurture_agent.processor.cache_size)

    assert asyncio.run(cache_size()) == want


def test_a_zero_budget_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="state_block_cache_mb"):
        _settings(tmp_path, state_block_cache_mb=0)
