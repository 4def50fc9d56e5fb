"""The scan of an events file in parts, on several processes, put back together in file order.

With one job the file is one part, read in this process (gzip or not). With more, a plain file
is cut into byte ranges at line starts (a gzip file, whose bytes can only be read in order, is
decompressed here into part files, each scanned as soon as it is written while the next one is
decompressed), and each part is scanned on its own by
:func:`stream.offline.order.scan`, into its own folder: its sorted runs, its counts, the times
of its valid events in file order (8 bytes each) and its dead letters, numbered from the part's
first line.

:func:`combine` then gives what one scan of the whole file gives:

* bucket ``b``'s runs are the parts' runs in file order, so the merge of a bucket
  (:func:`stream.offline.order.bucket_events`) keeps file order for ties;
* the counts add up; the first and last event times are the smallest and the largest;
* the dead letters are renumbered by the lines of the parts before theirs, in file order;
* the lateness is measured over the parts' times in file order: an event is late against the
  largest time on any earlier line, whichever part that line was in.
"""

from __future__ import annotations

import gzip
import os
import shutil
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

import orjson

from stream.accounts.engine import ACCOUNT_EVENT_TYPES
from stream.core.model import Event
from stream.offline.jobs import Jobs
from stream.offline.order import READ_BLOCK, Lateness, Lines, Scan, line_start, scan
from stream.offline.runner import dead_letter_line
from topics.parse import InvalidEvent

#: parts per job: more parts than processes, so a process slowed down by other work on the
#: machine does not hold the others up for long
PARTS_PER_JOB = 2
#: decompressed bytes read at a time by :func:`split_gzip` (a part ends at a block's last line)
GZIP_BLOCK = READ_BLOCK


@dataclass(slots=True)
class Part:
    """What the scan of one part hands back: its scan (lines numbered from the part's first),
    the number of lines it holds (blank ones included), its times and dead letters files."""

    found: Scan
    lines: int
    times: Path
    dead: Path


def account_key(event: Event) -> str | None:
    """The key an event reaches the account core by (None: it does not); the test of
    :func:`stream.accounts.driver.feeds_account`, on every event of the scan."""
    return event.account_id if event.type in ACCOUNT_EVENT_TYPES else None


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """``path`` cut into at most ``parts`` byte ranges of about the same size, each starting at
    a line start (the first at 0, the last ending at the end of the file)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, parts):
            target = size * i // parts
            if target <= cuts[-1]:
                continue
            start = line_start(fh, target)
            if cuts[-1] < start < size:
                cuts.append(start)
    cuts.append(size)
    return list(pairwise(cuts))


def scan_part(
    index: int, path: Path, start: int, end: int, work_dir: Path, until: int | None
) -> Part:
    """Scan bytes ``start``..``end`` of ``path`` (a task of :func:`scan_file`)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        return _scan(Lines(fh, end - start), work_dir / f"part{index:03d}", until)


def _scan(
    lines: Lines, folder: Path, until: int | None, on_line: Callable[[int], None] | None = None
) -> Part:
    folder.mkdir()
    times: array[int] = array("q")
    dead_path, times_path = folder / "dead.jsonl", folder / "times.bin"
    with open(dead_path, "wb") as d_out:

        def dead(number: int, raw: bytes, exc: InvalidEvent) -> None:
            d_out.write(orjson.dumps(dead_letter_line(number, raw, exc)) + b"\n")

        found = scan(
            lines, folder, dead, until=until, on_line=on_line, extra=account_key, times=times
        )
    with open(times_path, "wb") as t_out:
        times.tofile(t_out)
    # read_events leaves the lateness to the caller when it keeps the times: combine
    return Part(found=found, lines=lines.count, times=times_path, dead=dead_path)


def scan_file(
    fh: IO[bytes],
    path: Path,
    work_dir: Path,
    jobs: Jobs,
    dead_out: IO[bytes],
    *,
    until: int | None = None,
    on_line: Callable[[int], None] | None = None,
    ranges: int = 1,
) -> tuple[Scan, list[int]]:
    """The scan of the events file ``path`` (open as ``fh``) into sorted bucket runs under
    ``work_dir``, in parts on ``jobs``; its dead letters are written to ``dead_out``, in file
    order. ``on_line`` (progress) is called only when the file is read in this process.

    Also returns the times that cut the events into ``ranges`` ranges of about the same
    number of events (for :class:`stream.offline.merge.OutputMerge`)."""
    if not jobs.parallel:
        parts = [_scan(Lines(fh), work_dir / "part000", until, on_line)]
        return combine(parts, dead_out), time_cuts(parts, ranges)
    count = PARTS_PER_JOB * jobs.jobs
    if isinstance(fh, gzip.GzipFile):
        # each part is scanned as soon as it is decompressed, while the next one is
        pieces = list(_submit_parts(jobs, split_gzip(fh, work_dir, count), work_dir, until))
    else:
        pieces = [
            (None, jobs.submit(scan_part, i, path, start, end, work_dir, until))
            for i, (start, end) in enumerate(line_ranges(path, count))
        ]
    parts = [future.result() for _, future in pieces]
    for piece, _ in pieces:
        if piece is not None:
            piece.unlink()
    return combine(parts, dead_out), time_cuts(parts, ranges)


def _submit_parts(
    jobs: Jobs, pieces: Iterator[Path], work_dir: Path, until: int | None
) -> Iterator[tuple[Path | None, Future[Part]]]:
    for i, piece in enumerate(pieces):
        yield piece, jobs.submit(scan_part, i, piece, 0, piece.stat().st_size, work_dir, until)


def split_gzip(fh: gzip.GzipFile, work_dir: Path, parts: int) -> Iterator[Path]:
    """The decompressed bytes of ``fh`` as up to ``parts`` files under ``work_dir``, each
    handed on as soon as it is written: part ``i`` ends at the first line end after
    ``(i + 1) / parts`` of the compressed file has been read (parts of about the same size for
    a file compressed evenly); the last holds the rest. A gzip stream can only be read in
    order, so this runs here while the parts already written are scanned elsewhere."""
    raw: Any = fh.fileobj
    total = os.fstat(raw.fileno()).st_size
    index = 0

    def piece(i: int) -> Path:
        return work_dir / f"events{i:03d}.jsonl"

    out = open(piece(0), "wb")  # noqa: SIM115 - closed below, a new one per part
    try:
        while block := fh.read(GZIP_BLOCK):
            cut = block.rfind(b"\n") + 1  # 0: no line ends in this block, cut later
            if index + 1 < parts and cut and raw.tell() >= total * (index + 1) // parts:
                out.write(block[:cut])
                out.close()
                yield piece(index)
                index += 1
                out = open(piece(index), "wb")  # noqa: SIM115
                block = block[cut:]
            out.write(block)
    finally:
        out.close()
    yield piece(index)


def combine(parts: list[Part], dead_out: IO[bytes]) -> Scan:
    """One scan of the whole file from the scans of its parts (in file order)."""
    buckets = len(parts[0].found.runs)
    result = Scan(runs=[[] for _ in range(buckets)], extra=[[] for _ in range(buckets)])
    offset = 0
    for part in parts:
        found = part.found
        for b in range(buckets):
            result.runs[b].extend(found.runs[b])
            result.extra[b].extend(found.extra[b])
        if found.lines:
            result.lines = offset + found.lines
        result.events += found.events
        result.dead_letters += found.dead_letters
        result.after_until += found.after_until
        first, last = found.first_at, found.last_at
        if first is not None and (result.first_at is None or first < result.first_at):
            result.first_at = first
        if last is not None and (result.last_at is None or last > result.last_at):
            result.last_at = last
        _renumber(part.dead, offset, dead_out)
        offset += part.lines
    result.lateness = measure_lateness([part.times for part in parts])
    return result


def _renumber(dead: Path, offset: int, out: IO[bytes]) -> None:
    with open(dead, "rb") as fh:
        if not offset:  # the first part's lines are the file's
            shutil.copyfileobj(fh, out)
            return
        for line in fh:
            record = orjson.loads(line)
            record["line"] += offset
            out.write(orjson.dumps(record) + b"\n")


def measure_lateness(times: list[Path]) -> Lateness:
    """The lateness of events whose times, in file order, are the files ``times`` (int64)
    end to end: an event is late when its time is below the largest before it, by the
    difference (as :func:`stream.offline.order.read_events` measures it in one pass)."""
    import numpy as np

    late = Lateness()
    high: int | None = None  # the largest time of the parts before
    for path in times:
        at = np.fromfile(path, dtype=np.int64)
        if not at.size:
            continue
        before = np.empty_like(at)  # the largest time before each event
        before[0] = at[0] if high is None else high
        np.maximum.accumulate(at[:-1], out=before[1:])
        if high is not None:
            np.maximum(before, high, out=before)
        by = before - at
        late.late_ms.frombytes(by[by > 0].tobytes())
        high = int(max(before[-1], at[-1]))
    return late


#: one event time in so many is sampled for :func:`time_cuts`
CUT_SAMPLE = 64


def time_cuts(parts: list[Part], ranges: int) -> list[int]:
    """Up to ``ranges - 1`` increasing times that cut the parts' events into ranges of about
    the same number of events (quantiles of a sample of their times)."""
    if ranges <= 1:
        return []
    import numpy as np

    sample = np.concatenate(
        [np.fromfile(part.times, dtype=np.int64)[::CUT_SAMPLE] for part in parts]
    )
    if not sample.size:
        return []
    quantiles = np.quantile(sample, [r / ranges for r in range(1, ranges)], method="lower")
    return sorted({int(q) for q in quantiles})
