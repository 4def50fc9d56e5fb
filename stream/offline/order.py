"""Event-time order for offline runs, whatever the file order, in bounded memory.

:func:`scan` reads an events file once, in file order: it parses every line (dead letters are
reported at once, with their line numbers, in file order), measures how far each event arrived
out of order, and sorts the events into *buckets* of leads (``crc32(lead_id) % buckets``) with
an external sort: rows are buffered up to ``run_rows`` in all, then each bucket's rows are sorted
and written as one *run* file. :func:`bucket_events` merges a bucket's runs (``heapq.merge``)
back into validated :class:`~stream.core.model.Event` objects in order.

Order: ``(occurred_at, lead_id, line number)``. Ties keep file order for the events of one lead;
events of different leads at the same instant go by lead id, so a file grouped by lead and the
same file sorted by time give the same sequence per bucket (and so the same outputs). Leads are
independent, so processing one bucket at a time (or several in parallel) is exact, and memory
holds one bucket's lead states, not every lead's.

A row on disk is the validated :class:`~stream.core.model.Event` in MessagePack (msgspec), in
blocks of up to ``BLOCK_ROWS`` rows (a 4-byte length, then a MessagePack array), so a block is
decoded back into events at once, in C: cheaper than parsing and validating the original line
again. No line number: a run is sorted stably and runs are merged in file order (see
:func:`bucket_events`).
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import IO, Any

import msgspec

from stream.core.model import HOUR_MS, Event
from topics.parse import InvalidEvent, parse_event

#: lead buckets: the unit of work (and of memory) of a time-ordered run; fixed, so the outputs
#: do not depend on the number of processes
BUCKETS = 16
#: rows buffered (all buckets together) before they are written as sorted runs
RUN_ROWS = 200_000

#: rows per block of a run file
BLOCK_ROWS = 1024

DeadSink = Callable[[int, bytes, InvalidEvent], None]
_EVENT_KEY = attrgetter("at", "lead_id")
_encode = msgspec.msgpack.Encoder().encode
_decode_block = msgspec.msgpack.Decoder(list[Event]).decode


def bucket_of(lead_id: str, buckets: int = BUCKETS) -> int:
    return zlib.crc32(lead_id.encode()) % buckets


#: bytes read at a time by :class:`Lines` (a block split at once costs less than a readline a line)
READ_BLOCK = 1 << 20


class Lines:
    """(1-based line number, line without its end-of-line) for every non-blank line of ``fh``,
    read from its current position, up to ``limit`` bytes (default: to its end).

    ``count`` is the number of lines read so far, blank ones included (a part of a file that
    starts at a line start and ends after a newline holds exactly ``count`` lines)."""

    def __init__(self, fh: IO[bytes], limit: int | None = None) -> None:
        self._fh = fh
        self._limit = limit
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        read, left, tail = self._fh.read, self._limit, b""
        while True:
            size = READ_BLOCK if left is None else min(READ_BLOCK, left)
            block = read(size) if size > 0 else b""
            if not block:
                break
            if left is not None:
                left -= len(block)
            lines = (tail + block if tail else block).split(b"\n")
            tail = lines.pop()
            yield from self._numbered(lines)
        if tail:
            yield from self._numbered([tail])

    def _numbered(self, lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
        number = self.count
        for line in lines:
            number += 1
            stripped = line.rstrip(b"\r\n")
            if stripped and not stripped.isspace():  # == stripped.strip(), without the copy
                self.count = number
                yield number, stripped
        self.count = number


def line_start(fh: IO[bytes], offset: int) -> int:
    """The first line start at or after byte ``offset`` of the seekable file ``fh`` (its end
    if no line starts there)."""
    if offset <= 0:
        return 0
    fh.seek(offset - 1)
    fh.readline()
    return fh.tell()


def iter_lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its end-of-line) for every non-blank line."""
    return iter(Lines(fh))


@dataclass(slots=True)
class Lateness:
    """How far events arrived out of order in the file: an event is late when its
    ``occurred_at`` is below the largest seen on an earlier line, by the difference."""

    late_ms: array[int] = field(default_factory=lambda: array("q"))  # 8 bytes per late event

    def add(self, late_by: int) -> None:
        self.late_ms.append(late_by)

    @property
    def count(self) -> int:
        return len(self.late_ms)

    def to_dict(self) -> dict[str, Any]:
        """Count, and max / p50 / p90 / p99 lateness in hours (nearest rank; None if none).

        The ranks are picked by ``numpy.partition`` (linear time, 8 bytes a value), not a sort
        into Python ints: a file grouped by lead can hold millions of late events."""
        n = len(self.late_ms)
        quantiles = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        doc: dict[str, Any] = {"events": n}
        if not n:
            return doc | {f"{name}_hours": None for name, _ in quantiles}
        import numpy as np

        ranks = {name: min(n - 1, max(0, int(q * n + 0.999999) - 1)) for name, q in quantiles}
        picked = np.partition(np.frombuffer(self.late_ms, dtype=np.int64), sorted(ranks.values()))
        for name, rank in ranks.items():
            doc[f"{name}_hours"] = round(int(picked[rank]) / HOUR_MS, 3)
        return doc


@dataclass(slots=True)
class Counts:
    """What :func:`read_events` saw: lines, valid events, dead letters, events past ``until``,
    first and last event time, and the lateness of events in file order."""

    lines: int = 0
    events: int = 0
    dead_letters: int = 0
    after_until: int = 0
    first_at: int | None = None
    last_at: int | None = None  # the largest occurred_at
    lateness: Lateness = field(default_factory=Lateness)


@dataclass(slots=True)
class Scan(Counts):
    """What :func:`scan` found; ``runs[b]`` are lead bucket ``b``'s sorted run files,
    ``extra[b]`` those of bucket ``b`` of the events ``scan``'s ``extra`` keyed (by their key's
    bucket, all leads)."""

    runs: list[list[Path]] = field(default_factory=list)
    extra: list[list[Path]] = field(default_factory=list)


def read_events(
    lines: Iterable[tuple[int, bytes]],
    dead: DeadSink,
    counts: Counts,
    until: int | None = None,
    times: array[int] | None = None,
) -> Iterator[tuple[int, Event]]:
    """(line number, event) for each valid line, in file order, up to ``until``; invalid lines
    go to ``dead``. ``counts`` is updated as the lines are read; ``times`` (if given) receives
    each yielded event's time, in file order, and then the lateness is left to the caller (it
    is measured from the times: :func:`stream.offline.parts.measure_lateness`), not measured
    twice."""
    late = counts.lateness.add if times is None else None
    keep_time = None if times is None else times.append
    for number, raw in lines:
        counts.lines = number
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            counts.dead_letters += 1
            dead(number, raw, exc)
            continue
        at = event.at
        if until is not None and at > until:
            counts.after_until += 1
            continue
        high = counts.last_at
        if high is None or at > high:
            counts.last_at = at
        elif at < high and late is not None:
            late(high - at)
        if counts.first_at is None or at < counts.first_at:
            counts.first_at = at
        counts.events += 1
        if keep_time is not None:
            keep_time(at)
        yield number, event


def scan(
    lines: Iterable[tuple[int, bytes]],
    tmp_dir: Path,
    dead: DeadSink,
    *,
    until: int | None = None,
    buckets: int = BUCKETS,
    run_rows: int = RUN_ROWS,
    on_line: Callable[[int], None] | None = None,
    extra: Callable[[Event], str | None] | None = None,
    times: array[int] | None = None,
) -> Scan:
    """Parse ``lines`` (from :func:`iter_lines`) into sorted bucket runs under ``tmp_dir``;
    events to which ``extra`` gives a key (an account id) also go to the runs of that key's
    bucket (``Scan.extra``), in the same order. ``times``: see :func:`read_events`."""
    result = Scan(runs=[[] for _ in range(buckets)], extra=[[] for _ in range(buckets)])
    # one list per lead bucket, then one per extra bucket
    pending: list[list[tuple[int, str, bytes]]] = [[] for _ in range(2 * buckets)]
    buffered = 0

    def spill() -> None:
        for b, rows in enumerate(pending):
            if not rows:
                continue
            rows.sort(key=_TIME_AND_LEAD)  # stable: one lead's ties keep file order
            runs = result.runs[b] if b < buckets else result.extra[b - buckets]
            path = tmp_dir / f"b{b:03d}-r{len(runs):05d}.rows"
            _write_run(path, [row for _, _, row in rows])
            runs.append(path)
            rows.clear()

    for _, event in read_events(lines, dead, result, until, times):
        row = (event.at, event.lead_id, _encode(event))
        pending[bucket_of(event.lead_id, buckets)].append(row)
        if extra is not None:
            key = extra(event)
            if key is not None:
                pending[buckets + bucket_of(key, buckets)].append(row)
        buffered += 1
        if buffered >= run_rows:
            spill()
            buffered = 0
        if on_line is not None and result.events % 20_000 == 0:
            on_line(result.events)
    spill()
    return result


_TIME_AND_LEAD = itemgetter(0, 1)


def _write_run(path: Path, rows: list[bytes]) -> None:
    """Encoded events as a run file: blocks of a 4-byte length and a MessagePack array."""
    with open(path, "wb", buffering=1 << 20) as out:
        for i in range(0, len(rows), BLOCK_ROWS):
            block = rows[i : i + BLOCK_ROWS]
            array_of = b"\xdd" + len(block).to_bytes(4, "big")  # MessagePack array 32
            size = len(array_of) + sum(map(len, block))
            out.write(size.to_bytes(4, "little") + array_of)
            out.writelines(block)


def _read_run(path: Path) -> Iterator[Event]:
    with open(path, "rb", buffering=1 << 20) as fh:
        read = fh.read
        while header := read(4):
            yield from _decode_block(read(int.from_bytes(header, "little")))


def bucket_events(runs: list[Path]) -> Iterator[Event]:
    """One bucket's events in ``(at, lead_id, line)`` order: a k-way merge of its runs by
    ``(at, lead_id)``, which ``heapq.merge`` breaks in the order of its inputs, so ``runs``
    go in file order (the runs of a scan in the order it wrote them, the scans of the parts
    of a file in file order) and ties keep file order."""
    return heapq.merge(*(_read_run(p) for p in runs), key=_EVENT_KEY)


def all_events(result: Scan) -> Iterator[Event]:
    """Every event of the scan in ``(at, lead_id, line)`` order (all buckets merged)."""
    runs = [path for paths in result.runs for path in paths]
    return heapq.merge(*(_read_run(p) for p in runs), key=_EVENT_KEY)
