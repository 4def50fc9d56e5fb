"""The sender's durable memory (RocksDB via rocksdict): what was delivered, and what is held.

Keys (raw bytes):

* ``d:<action_id>`` -> marker ``{"status", "at", "template", "published"}``: the action was
  delivered (or dead-lettered) at wall time ``at`` (ms). Written right after the transport
  accepted the message, before the next record is touched.
* ``t:<at:013d>:<action_id>`` -> empty: the retention index; :meth:`DeliveryStore.prune` drops
  markers older than the retention window from its front.
* ``h:<action_id>`` -> ``{"due", "action"}``: a send held until its ``deliver_after``. Its offset
  is committed once the hold is stored, so the hold survives a restart through this key alone.

Durability, and why one fsync per batch is enough: every write goes to RocksDB's write-ahead log
with a ``write(2)`` before the call returns (``manual_wal_flush`` is off), so it is in the
kernel's page cache and survives a SIGKILL of the process at any later instant; the kill window
after a delivery is the same as with a synced write. ``fsync`` only guards against the host
itself going down. :meth:`DeliveryStore.sync` does it once per batch of records, before the
batch's offsets are committed: a host crash can then re-deliver at most the records of the
batch in flight (their offsets were not committed), never lose one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

Status = Literal["delivered", "dead_lettered"]
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Marker:
    status: Status
    at: int
    template: str
    published: bool


@dataclass(frozen=True, slots=True)
class Held:
    due: int
    action_id: str
    raw: bytes


class DeliveryStore:
    def __init__(self, path: Path, retention_days: float) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = Rdict(str(path), options)
        self._sync = WriteOptions()
        self._sync.sync = True
        self.syncs = 0  # fsyncs of the write-ahead log (metrics, tests)
        self._dirty = False  # written since the last sync
        self.retention_ms = int(retention_days * DAY_MS)

    def close(self) -> None:
        self.db.close()

    def sync(self) -> bool:
        """fsync the write-ahead log (if written since the last time): every write so far
        survives a host crash too. Returns whether it synced."""
        if not self._dirty:
            return False
        self.db.flush_wal(True)
        self._dirty = False
        self.syncs += 1
        return True

    # --- delivered markers ----------------------------------------------------------------
    def marker(self, action_id: str) -> Marker | None:
        raw = self.db.get(b"d:" + action_id.encode())
        if raw is None:
            return None
        doc = orjson.loads(raw)
        return Marker(doc["status"], int(doc["at"]), doc["template"], bool(doc["published"]))

    def mark(self, action_id: str, status: Status, template: str, at_ms: int) -> None:
        """Record a delivery (or dead letter), and release its hold if it had one (in the OS's
        page cache on return; :meth:`sync` before committing past it)."""
        key = action_id.encode()
        batch = WriteBatch(raw_mode=True)
        batch.put(b"d:" + key, self._marker(status, at_ms, template, published=False))
        batch.put(b"t:%013d:" % at_ms + key, b"")
        batch.delete(b"h:" + key)
        self.db.write(batch)
        self._dirty = True

    def mark_published(self, action_id: str) -> None:
        """``email.sent`` went out (not synced: a lost flag only publishes it once more)."""
        marker = self.marker(action_id)
        if marker is not None and not marker.published:
            self.db.put(
                b"d:" + action_id.encode(),
                self._marker(marker.status, marker.at, marker.template, published=True),
            )

    @staticmethod
    def _marker(status: Status, at_ms: int, template: str, *, published: bool) -> bytes:
        return orjson.dumps(
            {"status": status, "at": at_ms, "template": template, "published": published}
        )

    def prune(self, now_ms: int) -> int:
        """Forget markers older than the retention window; returns how many."""
        cutoff = b"t:%013d:" % max(0, now_ms - self.retention_ms)
        doomed: list[bytes] = []
        for item in self.db.keys(from_key=b"t:"):
            key = bytes(item)  # type: ignore[arg-type]  # raw mode: keys are bytes
            if not key.startswith(b"t:") or key >= cutoff:
                break
            doomed.append(key)
        if doomed:
            batch = WriteBatch(raw_mode=True)
            for key in doomed:
                batch.delete(key)
                batch.delete(b"d:" + key.split(b":", 2)[2])
            self.db.write(batch, self._sync)
        return len(doomed)

    # --- held actions -------------------------------------------------------------------
    def hold(self, action_id: str, due_ms: int, raw: bytes) -> None:
        """Keep a send until it is due (:meth:`sync` before committing past it)."""
        self.db.put(
            b"h:" + action_id.encode(), orjson.dumps({"due": due_ms, "action": raw.decode()})
        )
        self._dirty = True

    def is_held(self, action_id: str) -> bool:
        return self.db.get(b"h:" + action_id.encode()) is not None

    def held(self) -> list[Held]:
        out: list[Held] = []
        for item, value in self.db.items(from_key=b"h:"):
            key = bytes(item)  # type: ignore[arg-type]  # raw mode: keys are bytes
            if not key.startswith(b"h:"):
                break
            doc = orjson.loads(value)
            out.append(Held(int(doc["due"]), key[2:].decode(), doc["action"].encode()))
        return out
