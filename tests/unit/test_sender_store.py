"""The sender's durable store: markers, holds, retention, and that they survive a reopen."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from stream.sender.store import DAY_MS, DeliveryStore, Held, Marker


def test_marker_releases_the_hold_and_survives_reopen(tmp_path: Path) -> None:
    store = DeliveryStore(tmp_path, retention_days=1)
    store.hold("a1", 5_000, b'{"action_id":"a1"}')
    store.hold("a2", 3_000, b'{"action_id":"a2"}')
    assert store.is_held("a1") and store.marker("a1") is None
    store.mark("a1", "delivered", "t.x", 1_000)
    assert not store.is_held("a1")
    assert store.marker("a1") == Marker("delivered", 1_000, "t.x", published=False)
    store.mark_published("a1")
    store.close()
    again = DeliveryStore(tmp_path, retention_days=1)
    assert again.marker("a1") == Marker("delivered", 1_000, "t.x", published=True)
    assert again.held() == [Held(3_000, "a2", b'{"action_id":"a2"}')]
    again.close()


def test_prune_drops_only_markers_past_retention(tmp_path: Path) -> None:
    store = DeliveryStore(tmp_path, retention_days=1)
    store.mark("old", "delivered", "t", 1_000)
    store.mark("dead", "dead_lettered", "t", 2_000)
    store.mark("new", "delivered", "t", DAY_MS + 5_000)
    assert store.prune(DAY_MS + 2_500) == 2
    assert store.marker("old") is None and store.marker("dead") is None
    assert store.marker("new") is not None
    assert store.prune(DAY_MS + 2_500) == 0
    store.close()


def test_unsynced_marker_and_hold_survive_a_sigkill_of_the_process(tmp_path: Path) -> None:
    """Why one fsync per batch keeps the kill window closed: a write is in the kernel's page
    cache when ``mark``/``hold`` return, so a SIGKILL right after loses nothing."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from stream.sender.store import DeliveryStore\n"
        "store = DeliveryStore(Path(sys.argv[1]), retention_days=1)\n"
        "store.mark('a1', 'delivered', 't.x', 1_000)\n"
        "store.hold('a2', 9_000, b'{}')\n"
        "assert store.syncs == 0\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert done.returncode == -signal.SIGKILL
    again = DeliveryStore(tmp_path, retention_days=1)
    assert again.marker("a1") == Marker("delivered", 1_000, "t.x", published=False)
    assert again.held() == [Held(9_000, "a2", b"{}")]
    again.close()


def test_sync_runs_once_per_batch_and_only_after_writes(tmp_path: Path) -> None:
    store = DeliveryStore(tmp_path, retention_days=1)
    assert store.sync() is False  # nothing written: no fsync
    for n in range(5):
        store.mark(f"a{n}", "delivered", "t", 1_000 + n)
    assert store.sync() is True and store.syncs == 1
    assert store.sync() is False and store.syncs == 1
    store.hold("h", 5_000, b"{}")
    assert store.sync() is True and store.syncs == 2
    store.close()
