"""report.html shows each nurtured-against-holdout comparison with its interval: headless
Chromium renders the page, the DOM carries the labels, and a screenshot shows one whisker per
comparison with data, as wide as its interval (issue 11, part 5)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stream.report.html import render_html
from stream.report.stats import StatsSettings, compare_rates
from tests.support.chromium import CHROMIUM, run_headless

WHISKER = (0xE4, 0x57, 0x2E)  # the interval stroke colour in report.html
SETTINGS = StatsSettings(min_group_entries=30)

# program, tier, treated (conversions, entries), control
COMPARISONS = [
    ("mql_nurture", "high", (120, 400), (10, 200)),  # significant, narrow
    ("trial_nurture", "high", (30, 161), (9, 32)),  # not significant, wide
    ("re_engagement", "high", (20, 161), (4, 8)),  # not enough data: no whisker
]


def _doc() -> dict[str, Any]:
    rows = [
        {
            "program": program,
            "tier": tier,
            "nurtured_rate": round(t[0] / t[1], 4),
            "holdout_rate": round(c[0] / c[1], 4),
            **compare_rates(t, c, SETTINGS),
        }
        for program, tier, t, c in COMPARISONS
    ]
    return {"replay": {"events": 1}, "pipeline": {}, "flow": {}, "lift": rows}


def _whisker_rows(png: Path) -> list[tuple[int, int, int]]:
    """(first y, min x, max x) of each horizontal band of whisker-coloured pixels."""
    from PIL import Image

    image = Image.open(png).convert("RGB")
    width, height = image.size
    pixels = image.load()
    assert pixels is not None
    bands: list[list[int]] = []  # [y0, y1, xmin, xmax]
    for y in range(height):
        xs = [x for x in range(width) if pixels[x, y] == WHISKER]
        if not xs:
            continue
        if bands and y - bands[-1][1] <= 2:
            band = bands[-1]
            band[1], band[2], band[3] = y, min(band[2], xs[0]), max(band[3], xs[-1])
        else:
            bands.append([y, y, xs[0], xs[-1]])
    return [(y0, x0, x1) for y0, _, x0, x1 in bands]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (make sysdeps)")
def test_intervals_render_in_headless_chromium_and_show_in_a_screenshot(tmp_path: Path) -> None:
    doc = _doc()
    page = tmp_path / "report.html"
    page.write_text(render_html(doc), encoding="utf-8")

    dom = run_headless(page, tmp_path, "--dump-dom").stdout
    assert 'data-rendered="yes"' in dom
    labels = re.findall(r'class="lift-label"[^>]*>([^<]+)<', dom)
    assert len(labels) == 2
    assert labels[0].startswith("+25.0 pt [") and labels[0].endswith("\u00b7 significant")
    assert labels[1].endswith("not significant") and "n 161 / 32" in labels[1]
    nodata = re.findall(r'class="lift-nodata"[^>]*>([^<]+)<', dom)
    assert nodata == ["not enough data (n 161 / 8; 30 each needed)"]

    shot = tmp_path / "shot.png"
    proc = run_headless(
        page, tmp_path, "--hide-scrollbars", "--window-size=1280,2200", f"--screenshot={shot}"
    )
    assert shot.exists(), proc.stderr[-2000:]
    bands = _whisker_rows(shot)
    assert len(bands) == 2, bands  # one whisker per comparison with data, none for "no data"
    (_, a0, a1), (_, b0, b1) = bands
    width_a = doc["lift"][0]["difference"]["high"] - doc["lift"][0]["difference"]["low"]
    width_b = doc["lift"][1]["difference"]["high"] - doc["lift"][1]["difference"]["low"]
    # drawn widths (caps included, +-3 px) are in proportion to the intervals
    assert (b1 - b0) / (a1 - a0) == pytest.approx(width_b / width_a, rel=0.1)
