"""py-spy profiles of a running process for the benchmarks (``NURTURE_BENCH_PROFILE=<dir>``).

:func:`record` starts ``py-spy record --format raw`` (collapsed stacks: one line per distinct
stack, frames separated by ``;``, then the sample count) against a PID for a fixed duration;
:func:`summarize` turns such a file into the top functions by *self* share (the leaf frame, where
the time is spent) and by *inclusive* share (any frame on the stack), as printable lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install py-spy (it is in [bench])")
    return found


def record(pid: int, out: Path, seconds: int, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (raw collapsed stacks). Wait on the
    returned process; it exits by itself after ``seconds``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _name(frame: str) -> str:
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    path = found["file"]
    for marker in ("site-packages/", "/stream/", "/topics/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker in ("/stream/", "/topics/"):
                path = marker.strip("/") + "/" + path
            break
    return f"{found['func']} ({path})"


def summarize(path: Path, top: int = 15) -> list[str]:
    """Top functions by self and inclusive share of the samples in a raw py-spy file."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_name(f) for f in stack.split(";")]
        if not frames:
            continue
        self_counts[frames[-1]] += count
        for name in set(frames):
            incl_counts[name] += count
    if total == 0:
        return [f"{path}: no samples"]
    lines = [f"{path.name}: {total} samples", "  self share (where the time is spent):"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in self_counts.most_common(top)]
    lines.append("  inclusive share (on the stack):")
    skip = ("<module>", "run (", "_run_once", "run_forever", "run_until_complete", "execute")
    shown = 0
    for name, n in incl_counts.most_common():
        if name.startswith(skip) or n == total:
            continue
        lines.append(f"    {n / total:6.1%}  {name}")
        shown += 1
        if shown >= top:
            break
    return lines
