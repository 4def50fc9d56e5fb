"""The lead table as the batch processor sees it: one RocksDB per partition, written once per
batch with one ``WriteBatch``, its changelog records sent by the runner.

Faust keeps the table (``app.Table``: changelog topic, recovery, standbys, the persisted
changelog offset per partition); this adapter only bypasses its per-key ``__setitem__`` path
(``on_key_set`` -> ``send_soon`` per key, and ``current_event()`` which does not exist outside
a stream iteration: faust-streaming #497/#300). Keys and values are raw bytes, as Faust writes
them for this table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MB = 1024 * 1024


def table_options(write_buffer_mb: int, block_cache_mb: int) -> dict[str, Any]:
    """The Faust table options of a state table: rocksdict, with a memory budget per partition.

    Faust opens one RocksDB per table partition with 64 MB memtables (up to 3) and a 2 GB block
    cache each; a memtable allocates its arena in blocks of an eighth of its size as soon as it
    is written, so 12 lead and 12 account partitions held ~190 MB of arena before any real
    data, and a partition's memtables held all its records (1M lead records of 400 B in 12
    partitions: 465 MB resident). Here each partition gets ``write_buffer_mb`` memtables (at
    most 2) and a ``block_cache_mb`` cache: at most ``2 * write_buffer_mb + block_cache_mb``
    per partition (the same 1M records: 203 MB with 4 and 8 MB)."""
    return {
        "driver": "rocksdict",
        "write_buffer_size": write_buffer_mb * MB,
        "max_write_buffer_number": 2,
        "target_file_size_base": max(write_buffer_mb, 8) * MB,
        "block_cache_size": block_cache_mb * MB,
    }


class TableStore:
    """Per-partition access to a Faust rocksdict-backed table."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def _store(self) -> Any:
        return self.table.data

    def _db(self, partition: int) -> Any:
        return self._store._db_for_partition(partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db(partition).get(key)
        return value

    def get_any(self, key: bytes) -> tuple[int, bytes] | None:
        """(partition, value) of a key in any partition open on this worker."""
        for partition, db in list(self._store._dbs.items()):
            value = db.get(key)
            if value is not None:
                return partition, value
        return None

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        store = self._store
        yield from store._visible_items(store._db_for_partition(partition))

    def write(self, partition: int, writes: Mapping[bytes, bytes | None]) -> None:
        """All of a batch's writes to one partition in one RocksDB write batch (``None``:
        delete the key)."""
        write_batch(self._db(partition), writes)

    @property
    def changelog_topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def set_persisted_offset(self, partition: int, offset: int) -> None:
        """Remember the changelog offset this partition's RocksDB has data up to (recovery
        resumes after it). Skipped for partitions closed since (revoked)."""
        from faust.types import TP

        store = self._store
        if partition in store._dbs:
            store.set_persisted_offset(TP(self.changelog_topic, partition), offset)

    def partitions(self) -> Iterable[int]:
        return list(self._store._dbs)


def write_batch(db: Any, writes: Mapping[bytes, bytes | None]) -> None:
    """``writes`` to a raw-mode rocksdict ``db`` in one WriteBatch (``None``: delete the key)."""
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in writes.items():
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)
