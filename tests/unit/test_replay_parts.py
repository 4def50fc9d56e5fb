"""A time-ordered replay split into tasks (issue 11, near-linear ``--jobs``): the scan of a file
in parts and the merge of the outputs in time ranges give what one pass gives.

Oracles: :func:`stream.offline.order.read_events` over the whole file (counts, lateness, dead
letters), a single scan's bucket merge, and the merge of the whole key range at once.
"""

from __future__ import annotations

import heapq
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.model import HOUR_MS, ms_to_rfc3339, rfc3339_to_ms
from stream.offline.jobs import Jobs
from stream.offline.merge import KEY_WIDTH, first_line_from, key_of, merge_range
from stream.offline.order import Counts, Lines, bucket_events, iter_lines, read_events
from stream.offline.parts import combine, line_ranges, scan_file, scan_part, time_cuts

T0 = rfc3339_to_ms("2026-11-02T00:00:00Z")


def _line(kind: str, lead: str, n: int, hour: int) -> bytes:
    if kind == "blank":
        return b"  "
    if kind == "bad":
        return b'{"event_id": "x", "type": "page.viewed"}'  # no lead, no time: a dead letter
    return orjson.dumps(
        {
            "event_id": f"{lead}-{n}",
            "type": "page.viewed",
            "lead_id": lead,
            "occurred_at": ms_to_rfc3339(T0 + hour * HOUR_MS),
            "properties": {"page": "pricing"},
        }
    )


rows = st.lists(
    st.tuples(
        st.sampled_from(["event"] * 6 + ["blank", "bad"]),
        st.sampled_from(["L1", "L2", "L3", "L4", "L5", "L6"]),
        st.integers(0, 9),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows=rows, parts=st.integers(1, 7), newline_at_end=st.booleans())
def test_a_file_scanned_in_parts_gives_what_one_pass_gives(
    rows: list[tuple[str, str, int]],
    parts: int,
    newline_at_end: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("parts")
    path = tmp / "events.jsonl"
    text = b"\n".join(_line(kind, lead, n, h) for n, (kind, lead, h) in enumerate(rows))
    path.write_bytes(text + b"\n" if newline_at_end and text else text)

    # the oracle: one pass in file order
    oracle, dead_lines = Counts(), []
    with open(path, "rb") as fh:
        events = [
            e
            for _, e in read_events(
                iter_lines(fh), lambda number, *_: dead_lines.append(number), oracle
            )
        ]

    ranges = line_ranges(path, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a < b for a, b in ranges) or path.stat().st_size == 0
    scanned = [scan_part(i, path, a, b, tmp, None) for i, (a, b) in enumerate(ranges)]
    with open(tmp / "dead.jsonl", "wb") as dead_out:
        found = combine(scanned, dead_out)

    assert (found.lines, found.events, found.dead_letters) == (
        oracle.lines,
        oracle.events,
        oracle.dead_letters,
    )
    assert (found.first_at, found.last_at) == (oracle.first_at, oracle.last_at)
    assert sorted(found.lateness.late_ms) == sorted(oracle.lateness.late_ms)
    dead = [orjson.loads(x)["line"] for x in (tmp / "dead.jsonl").read_bytes().splitlines()]
    assert dead == dead_lines
    # each bucket: the events of its leads in (time, lead, file) order, whatever the parts
    expected = sorted(events, key=lambda e: (e.at, e.lead_id))  # stable: file order for ties
    for runs in found.runs:
        got = [e.event_id for e in bucket_events(runs)]
        assert got == [e.event_id for e in expected if e.event_id in set(got)]
    assert sum(len(list(bucket_events(r))) for r in found.runs) == oracle.events


def test_scan_file_in_parallel_decompresses_gzip_and_cuts_time_into_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    from stream.offline import parts

    monkeypatch.setattr(parts, "GZIP_BLOCK", 1024)  # a small file still splits into 4 parts
    lines = [_line("event", f"L{n % 7}", n, n % 40) for n in range(400)]
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    (tmp_path / "work").mkdir()
    with Jobs(2) as jobs, gzip.open(path, "rb") as fh, open(tmp_path / "d", "wb") as dead:
        found, cuts = scan_file(fh, path, tmp_path / "work", jobs, dead, ranges=4)  # type: ignore[arg-type]
    assert found.events == 400 and found.lines == 400
    assert len({p.parent for runs in found.runs for p in runs}) == 4  # 2 parts per job
    assert not list((tmp_path / "work").glob("events*.jsonl"))  # the decompressed parts are gone
    assert cuts == sorted(cuts) and len(cuts) == 3
    assert cuts[0] > T0 and cuts[-1] < T0 + 39 * HOUR_MS


def test_time_cuts_without_ranges_is_empty(tmp_path: Path) -> None:
    assert time_cuts([], 1) == []


def test_lines_counts_blank_lines_and_stops_at_its_limit(tmp_path: Path) -> None:
    import io

    fh = io.BytesIO(b"a\n\n  \nb\r\nc\nd")
    lines = Lines(fh, limit=10)  # "a\n\n  \nb\r\nc\n" is 11 bytes: "c" is cut at its newline
    assert list(lines) == [(1, b"a"), (4, b"b"), (5, b"c")]
    assert lines.count == 5


@settings(max_examples=80, deadline=None)
@given(
    keys=st.lists(st.integers(0, 30), max_size=40).map(sorted),
    probe=st.integers(-1, 32),
    width=st.integers(0, 12),
)
def test_first_line_from_finds_the_first_key_at_or_above(
    keys: list[int], probe: int, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("keys") / "keyed.jsonl"
    lines = [key_of(k) + b"x" * ((k * 7 + width) % 13) + b"\n" for k in keys]
    path.write_bytes(b"".join(lines))
    with open(path, "rb") as fh:
        offset = first_line_from(fh, path.stat().st_size, key_of(max(probe, 0)))
    first = next((i for i, k in enumerate(keys) if k >= max(probe, 0)), len(keys))
    assert offset == sum(len(x) for x in lines[:first])


@settings(max_examples=40, deadline=None)
@given(
    buckets=st.lists(st.lists(st.integers(0, 50), max_size=25).map(sorted), max_size=4),
    cuts=st.lists(st.integers(0, 50), max_size=4).map(lambda c: sorted(set(c))),
)
def test_merge_in_time_ranges_joined_is_the_merge_of_the_whole_range(
    buckets: list[list[int]], cuts: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("merge")
    paths = []
    for b, keys in enumerate(buckets):
        path = tmp / f"t{b:03d}.jsonl"
        path.write_bytes(b"".join(key_of(k) + b"b%d-%d\n" % (b, i) for i, k in enumerate(keys)))
        paths.append(path)
    bounds: list[int | None] = [None, *cuts, None]
    joined = b""
    for r, (low, high) in enumerate(pairwise(bounds)):
        joined += merge_range(paths, low, high, tmp / f"part{r}").read_bytes()
    whole = merge_range(paths, None, None, tmp / "whole").read_bytes()
    # the oracle: by key, ties in bucket order (then line order within a bucket)
    oracle = [
        line[KEY_WIDTH:]
        for line in heapq.merge(
            *(p.read_bytes().splitlines(keepends=True) for p in paths), key=lambda x: x[:16]
        )
    ]
    assert joined == whole == b"".join(oracle)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=0, max_size=60),
    parts=st.integers(1, 6),
    block=st.sampled_from([16, 64, 1024]),
    newline_at_end=st.booleans(),
)
def test_split_gzip_parts_are_the_file_cut_at_line_ends(
    sizes: list[int],
    parts: int,
    block: int,
    newline_at_end: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import gzip
    import random

    from stream.offline import parts as module

    rng = random.Random(len(sizes) * 7 + parts)
    text = b"\n".join(bytes(rng.choice(b"abcdefgh {}:,") for _ in range(n)) for n in sizes)
    if newline_at_end and text:
        text += b"\n"
    work = tmp_path_factory.mktemp("split")
    path = work / "e.jsonl.gz"
    path.write_bytes(gzip.compress(text, compresslevel=0))  # stored: compressed ~ plain size
    module.GZIP_BLOCK, saved = block, module.GZIP_BLOCK
    try:
        with gzip.open(path, "rb") as fh:
            pieces = list(module.split_gzip(fh, work, parts))  # type: ignore[arg-type]
    finally:
        module.GZIP_BLOCK = saved
    data = [p.read_bytes() for p in pieces]
    assert b"".join(data) == text  # every byte once, in order
    assert 1 <= len(pieces) <= parts
    assert all(d.endswith(b"\n") for d in data[:-1])  # every cut is at a line end
    if parts > 1 and len(text) >= 4 * parts * block and text.count(b"\n") >= 4 * parts:
        assert len(pieces) >= 2  # a large enough file is cut (the later cuts wait for the
        # compressed bytes, read 8 KB at a time, so a small file may have fewer parts)
