"""Headless Chromium for the report.html tests (Debian package ``chromium``, ``make sysdeps``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def run_headless(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Load ``page`` in a fresh profile under ``tmp``, no network, 5 s of virtual time;
    ``extra`` adds e.g. ``--dump-dom`` or ``--screenshot=FILE``."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp)
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )
