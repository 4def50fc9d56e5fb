"""The outputs of a time-ordered replay: the buckets' keyed lines merged by time, in ranges.

A bucket writes its records as keyed lines (:class:`stream.offline.outputs.Recorder`): a
16-digit key, the running maximum of the bucket's step times, then the record. An output file
is every bucket's lines merged by key, ties in bucket order, keys stripped. That order does not
depend on how the merge is split: :class:`OutputMerge` cuts the keys at ``cuts`` (times) into
ranges; the task of one range finds where each bucket's lines of the range start and end (a
binary search over the sorted file), merges them into a part file, and the parts of an output
are joined end to end in the kernel (``copy_file_range``). Without cuts the one range is
merged straight into the output.
"""

from __future__ import annotations

import heapq
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future
from itertools import pairwise
from operator import itemgetter
from pathlib import Path
from typing import IO

from stream.offline.jobs import Jobs
from stream.offline.order import line_start

KEY_WIDTH = 16
_key = itemgetter(slice(0, KEY_WIDTH))

#: (kind of keyed lines, lead or account buckets, output file)
OUTPUTS = (
    ("t", "lead", "transitions.jsonl"),
    ("a", "lead", "actions.jsonl"),
    ("at", "account", "account_transitions.jsonl"),
    ("aa", "account", "account_actions.jsonl"),
)


def output_path(work_dir: Path, kind: str, bucket: int) -> Path:
    """A bucket's keyed output lines: ``kind`` is ``t``/``a`` (lead transitions/actions) or
    ``at``/``aa`` (account transitions/actions)."""
    return work_dir / f"{kind}{bucket:03d}.jsonl"


def key_of(ms: int) -> bytes:
    return b"%016d" % ms


def first_line_from(fh: IO[bytes], size: int, key: bytes) -> int:
    """The offset of the first line of ``fh`` (``size`` bytes of keyed lines sorted by key)
    whose key is ``key`` or more; ``size`` if none is."""
    low, high = 0, size  # the smallest x whose line_start(x) holds a key >= key (or is the end)
    while low < high:
        mid = (low + high) // 2
        start = line_start(fh, mid)
        if start < size:
            fh.seek(start)
            if fh.read(KEY_WIDTH) < key:
                low = mid + 1
                continue
        high = mid
    return line_start(fh, low)


def _lines(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as fh:
        fh.seek(start)
        left = end - start
        for line in fh:
            yield line
            left -= len(line)
            if left <= 0:
                return


def merge_range(paths: list[Path], low: int | None, high: int | None, out_path: Path) -> Path:
    """Merge the lines of ``paths`` (in bucket order) whose keys are in ``[low, high)`` (None:
    unbounded) into ``out_path``, without their keys."""
    sources = []
    for path in paths:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            start = 0 if low is None else first_line_from(fh, size, key_of(low))
            end = size if high is None else first_line_from(fh, size, key_of(high))
        if start < end:
            sources.append(_lines(path, start, end))
    with open(out_path, "wb", buffering=1 << 20) as out:
        write = out.write
        for line in heapq.merge(*sources, key=_key):
            write(line[KEY_WIDTH:])
    return out_path


class OutputMerge:
    """The merge of every output, submitted to ``jobs`` at once; :meth:`finish` waits for it
    and joins the parts."""

    def __init__(
        self,
        jobs: Jobs,
        work_dir: Path,
        out_dir: Path,
        buckets: dict[str, list[int]],
        cuts: list[int],
    ) -> None:
        bounds: list[int | None] = [None, *cuts, None]
        ranges = list(pairwise(bounds))
        self._outputs: list[tuple[Path, list[Future[Path]]]] = []
        for kind, owner, name in OUTPUTS:
            paths = [output_path(work_dir, kind, b) for b in buckets[owner]]
            final = out_dir / name
            if len(ranges) == 1:
                futures = [jobs.submit(merge_range, paths, None, None, final)]
            else:
                futures = [
                    jobs.submit(merge_range, paths, low, high, work_dir / f"{kind}.m{r:03d}")
                    for r, (low, high) in enumerate(ranges)
                ]
            self._outputs.append((final, futures))

    def finish(self) -> None:
        for final, futures in self._outputs:
            parts = [future.result() for future in futures]
            if parts == [final]:
                continue
            with open(final, "wb") as out:
                for part in parts:
                    _append(part, out)
                    part.unlink()


def _append(path: Path, out: IO[bytes]) -> None:
    """``path``'s bytes at the end of ``out``, copied in the kernel where it can."""
    with open(path, "rb") as fh:
        left = os.fstat(fh.fileno()).st_size
        try:
            while left > 0:
                copied = os.copy_file_range(fh.fileno(), out.fileno(), left)
                if copied == 0:
                    break
                left -= copied
        except OSError:
            pass
        if left > 0:  # not copied by the kernel (another file system, an old kernel)
            fh.seek(-left, os.SEEK_END)
            shutil.copyfileobj(fh, out, 1 << 20)
