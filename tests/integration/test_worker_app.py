"""The app factory: no app at import, ``faust -A stream.app`` finds the same app ``nurture worker``
runs, settings come from NURTURE_* variables, and the CLI subcommand is registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.worker import NURTURE, REPO


def test_import_creates_no_app_and_faust_finds_the_factory_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NURTURE_APP_ID", "factory-check")
    monkeypatch.setenv("NURTURE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("NURTURE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NURTURE_STANDBY_REPLICAS", "1")
    import stream.app as module

    assert "app" not in vars(module)
    from faust.cli.base import find_app

    app = find_app("stream.app")
    assert app.conf.id == "factory-check"
    assert app.conf.table_standby_replicas == 1
    assert str(app.conf.web_bind) == "127.0.0.1"
    # no Faust agent: the input, account and tick topics go to the batch runners
    assert sorted(app.fast_path) == [
        "factory-check-account-events",
        "factory-check-account-ticks",
        "factory-check-timer-ticks",
        "nurture.crm-events",
        "nurture.email-events",
        "nurture.product-events",
    ]
    assert "leads" in app.tables
    assert app.conf.processing_guarantee.value == "at_least_once"
    assert module.create_app() is not module.create_app()  # a factory, not a singleton


def test_nurture_worker_subcommand_is_registered() -> None:
    out = subprocess.run(
        [NURTURE, "worker", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "NURTURE_KAFKA_BOOTSTRAP_SERVERS" in out.stdout
    bad = subprocess.run(
        [NURTURE, "worker"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "NURTURE_KAFKA_BOOTSTRAP_SERVERS": "no-port",
            "PATH": str(Path(sys.executable).parent),
        },
    )
    assert bad.returncode != 0
    assert "NURTURE_KAFKA_BOOTSTRAP_SERVERS" in bad.stderr
