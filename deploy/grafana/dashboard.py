"""The Grafana dashboard, as code: ``deploy/grafana/dashboards/nurture.json`` is generated here.

    .venv/bin/python deploy/grafana/dashboard.py            # write the JSON
    .venv/bin/python deploy/grafana/dashboard.py --check    # exit 1 if the JSON is stale

Panels are built with grafana-foundation-sdk (typed builders generated from Grafana's own
schemas), from the table ``ROWS`` below: a row per concern, a panel per question. A test
(tests/unit/test_grafana_dashboard.py) fails when the committed JSON differs from this output;
tests/unit/test_deploy_config.py checks every queried series is one the worker declares.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import prometheus as prometheus_models
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef

OUT = Path(__file__).resolve().parent / "dashboards" / "nurture.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")  # provisioning/datasources
PIPELINE = "(program, cohort, icp_tier, group)"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    kind: Literal["timeseries", "stat", "table"]
    title: str
    unit: str
    width: int
    queries: tuple[Query, ...]
    description: str = ""
    height: int = 8
    stacked: bool = False
    color_background: bool = False  # stat panels only


def _rate(metric: str, by: str, window: str = "5m") -> str:
    return f"sum by ({by}) (rate({metric}[{window}]))"


def _quantile(q: float, metric: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket[5m])))"


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Throughput and health",
        (
            Panel(
                "timeseries",
                "Input throughput by topic (events/s)",
                "ops",
                12,
                (Query(_rate("nurture_events_in_total", "topic", "1m"), "{{topic}}"),),
                "Input messages decoded per second, by topic.",
            ),
            Panel(
                "timeseries",
                "Input by event type (events/s)",
                "ops",
                12,
                (Query(f"topk(10, {_rate('nurture_events_in_total', 'type')})", "{{type}}"),),
            ),
            Panel(
                "timeseries",
                "Dead-lettered (msgs/s) by reason",
                "ops",
                8,
                (Query(_rate("nurture_dead_letters_total", "reason"), "{{reason}}"),),
            ),
            Panel(
                "stat",
                "Workers up",
                "short",
                8,
                (Query('up{job="nurture-worker"}', "{{instance}}"),),
                color_background=True,
            ),
            Panel(
                "stat",
                "Seconds since last input event",
                "s",
                8,
                (Query("time() - max(nurture_last_event_timestamp_seconds)", "since last event"),),
            ),
        ),
    ),
    (
        "Latency and lag",
        (
            Panel(
                "timeseries",
                "Event to action latency",
                "s",
                12,
                (
                    Query(_quantile(0.5, "nurture_processing_latency_seconds"), "p50"),
                    Query(_quantile(0.99, "nurture_processing_latency_seconds"), "p99"),
                    Query(
                        "sum(rate(nurture_processing_latency_seconds_sum[5m])) / "
                        "sum(rate(nurture_processing_latency_seconds_count[5m]))",
                        "mean",
                    ),
                ),
                "From the input message timestamp to its actions being produced "
                "(budget p99 <= 50 ms).",
            ),
            Panel(
                "timeseries",
                "Consumer lag by partition (messages)",
                "short",
                12,
                (
                    Query(
                        "sum by (topic, partition) (nurture_consumer_lag_messages)",
                        "{{topic}}[{{partition}}]",
                    ),
                ),
            ),
        ),
    ),
    (
        "Timers and state",
        (
            Panel(
                "timeseries",
                "Timer firing lag",
                "s",
                8,
                (
                    Query(_quantile(0.5, "nurture_timer_firing_lag_seconds"), "p50"),
                    Query(_quantile(0.99, "nurture_timer_firing_lag_seconds"), "p99"),
                    Query("sum(rate(nurture_timer_firing_lag_seconds_count[5m]))", "fired/s"),
                ),
                "Wall clock at firing minus due time (budget p99 <= 1 s).",
            ),
            Panel(
                "timeseries",
                "Pending timers",
                "short",
                8,
                (Query("sum(nurture_timers_pending)", "pending"),),
            ),
            Panel(
                "timeseries",
                "Table recovery progress",
                "percentunit",
                8,
                (Query("min by (table) (nurture_table_recovery_progress_ratio)", "{{table}}"),),
            ),
        ),
    ),
    (
        "Programs",
        (
            Panel(
                "timeseries",
                "Program occupancy (leads)",
                "short",
                12,
                (Query("sum by (program) (nurture_leads)", "{{program}}"),),
                stacked=True,
            ),
            Panel(
                "table",
                "Occupancy by program and state",
                "short",
                12,
                (Query("sum by (program, state) (nurture_leads)"),),
            ),
            Panel(
                "timeseries",
                "Transitions (per s) by from, to and reason",
                "ops",
                12,
                (
                    Query(
                        _rate("nurture_transitions_total", "from_program, to_program, reason"),
                        "{{from_program}} -> {{to_program}} ({{reason}})",
                    ),
                ),
            ),
            Panel(
                "timeseries",
                "Actions (per s) by type, channel and program",
                "ops",
                12,
                (
                    Query(
                        _rate("nurture_actions_total", "type, channel, program"),
                        "{{type}} {{channel}} {{program}}",
                    ),
                ),
            ),
            Panel(
                "timeseries",
                "Skipped sends (per s) by reason",
                "ops",
                24,
                (Query(_rate("nurture_skipped_sends_total", "reason"), "{{reason}}"),),
            ),
        ),
    ),
    (
        "Pipeline contribution (per program, cohort and ICP tier; never blended)",
        (
            Panel(
                "table",
                "Contribution rate by program, cohort, ICP tier and group",
                "percentunit",
                12,
                (
                    Query(
                        f"sum by {PIPELINE} (nurture_pipeline_opportunities_total) / "
                        f"sum by {PIPELINE} (nurture_pipeline_entries_total)"
                    ),
                ),
                "Sales-accepted opportunities after entry / entries. Compare nurtured and "
                "holdout rows of the same program, cohort and tier.",
                height=10,
            ),
            Panel(
                "table",
                "Entries by program, cohort, ICP tier and group",
                "short",
                12,
                (Query(f"sum by {PIPELINE} (nurture_pipeline_entries_total)"),),
                height=10,
            ),
            Panel(
                "table",
                "Median time to opportunity (days)",
                "d",
                12,
                (
                    Query(
                        "histogram_quantile(0.5, sum by (le, program, icp_tier, group) "
                        "(nurture_pipeline_time_to_opportunity_seconds_bucket)) / 86400",
                        "{{program}} {{icp_tier}} {{group}}",
                    ),
                ),
                height=10,
            ),
            Panel(
                "table",
                "Template: opportunity rate within 90 days of send",
                "percentunit",
                12,
                (
                    Query(
                        "sum by (program, template) (nurture_pipeline_template_opportunities_total)"
                        " / sum by (program, template) (nurture_pipeline_template_sends_total)"
                    ),
                ),
                "Receivers only; the comparison against non-receivers is in GET /report "
                "(nurture report).",
                height=10,
            ),
        ),
    ),
)


def _target(query: Query, ref_id: str, instant: bool) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(query.expr)
        .legend_format(query.legend)
    )
    if instant:  # tables show the current value of each series
        target = target.instant().format(prometheus_models.PromQueryFormat.TABLE)
    return target


def _panel(spec: Panel, panel_id: int) -> Any:
    builder: Any
    if spec.kind == "timeseries":
        builder = (
            timeseries.Panel()
            .fill_opacity(10 if spec.stacked else 0)
            .stacking(
                common_builders.StackingConfig()
                .mode(common.StackingMode.NORMAL if spec.stacked else common.StackingMode.NONE)
                .group("A")
            )
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common_builders.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
    elif spec.kind == "stat":
        builder = (
            stat.Panel()
            .reduce_options(
                common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
            )
            .color_mode(
                common.BigValueColorMode.BACKGROUND
                if spec.color_background
                else common.BigValueColorMode.VALUE
            )
            .graph_mode(common.BigValueGraphMode.NONE)
        )
    else:
        builder = table.Panel().show_header(True)
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    for ref_id, query in zip("ABCDEFGH", spec.queries, strict=False):
        builder = builder.with_target(_target(query, ref_id, instant=spec.kind == "table"))
    return builder


def build() -> dict[str, Any]:
    """The dashboard as JSON-ready data."""
    dashboard = (
        Dashboard("nurture-stream")
        .uid("nurture-stream")
        .description(
            "Throughput, latency, lag, timers, program occupancy, transitions and pipeline "
            "contribution."
        )
        .tags(["nurture", "kafka", "faust"])
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-1h", "now")
        .readonly()
    )
    panel_id = 0
    for title, panels in ROWS:
        panel_id += 1
        dashboard = dashboard.with_row(Row(title).id(panel_id))
        for spec in panels:
            panel_id += 1
            dashboard = dashboard.with_panel(_panel(spec, panel_id))
    data: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    return data


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not OUT.exists() or OUT.read_text() != text
        if stale:
            print(f"stale: {OUT} (run: python deploy/grafana/dashboard.py)")
        return 1 if stale else 0
    OUT.write_text(text)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
