"""``nurture demo --duration 40`` as a subprocess: local Kafka, worker, simulator, live view;
prints transitions, exits 0, leaves a report.html, and stops what it started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.worker import free_port


def test_demo_runs_prints_transitions_and_stops_cleanly(tmp_path: Path) -> None:
    port, report_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "NURTURE_KAFKA_BOOTSTRAP_SERVERS"}
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "demo",
            "--duration",
            "40",
            "--out",
            str(out),
            "--web-port",
            str(port),
            "--report-port",
            str(report_port),
            "--leads",
            "800",
        ],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    transitions = [x for x in lines if x.startswith("TRANSITION ")]
    assert len(transitions) >= 10, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any("-> trial_nurture/" in x for x in transitions)
    assert f"metrics: http://127.0.0.1:{port}/metrics" in proc.stdout
    assert f"report:  http://127.0.0.1:{report_port}/report" in proc.stdout
    # the summary line counts what the view consumed
    summary = next(x for x in lines if x.endswith(" leads") and "transitions," in x)
    assert int(summary.split()[0]) == len(transitions)
    # replay of the demo's own events wrote a report
    report = next(x for x in lines if x.startswith("report.html: ")).split(": ", 1)[1]
    assert Path(report).exists() and Path(report).stat().st_size > 5000
    assert (out / "demo-events.jsonl").stat().st_size > 0
    # the worker and the report consumer it started are gone: nothing answers on their ports
    for gone in (port, report_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", gone)) != 0
    # and no process it started is left (the simulator's command line names the out folder)
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(out) in text:
            left.append(text)
    assert not left, left
