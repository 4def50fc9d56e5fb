"""A real Prometheus (Debian package) scrapes a real running worker fed through a real broker.

The test starts ``prometheus`` itself with a temporary config whose only target is the worker's
web port, produces a known set of events to the worker's input topics, and queries
Prometheus' HTTP API (``/api/v1/query``) until the scraped counters equal the hand-counted
figures. It also runs ``promtool check metrics`` on the worker's /metrics body and checks that
every series the Grafana dashboard and the alert rules query exists on the worker.

Waiting is always for a condition (target health, a query result), polled against a deadline.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "nurture.json"
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with the last value/exception."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # not ready yet: connection refused, partial result, ...
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(interval)  # poll interval between real checks, not a synchronisation
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


class PrometheusServer:
    """A real ``prometheus`` process with a temp config and TSDB, scraping ``targets``."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape_interval: str = "1s",
        report_targets: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY_PROM / "alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": "nurture-worker",
                    "metrics_path": "/metrics",
                    "scrape_interval": scrape_interval,
                    "scrape_timeout": scrape_interval,
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        if report_targets:
            config["scrape_configs"].append(
                {
                    "job_name": "nurture-report",
                    "metrics_path": "/metrics",
                    "scrape_interval": scrape_interval,
                    "scrape_timeout": scrape_interval,
                    "static_configs": [{"targets": report_targets}],
                }
            )
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    def start(self) -> None:
        check = subprocess.run(
            ["promtool", "check", "config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_for(self._ready, 60, "prometheus /-/ready")
        except AssertionError:
            self.stop()
            raise AssertionError(self.log_path.read_text()[-4000:]) from None

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}")
        return _get(self.url + "/-/ready").startswith(b"Prometheus")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        doc = json.loads(_get(f"{self.url}/api/v1/{path}?{query}"))
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """Value of a single-series query, ``None`` when the result is empty."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.fail("prometheus/promtool missing: run deploy/install-system-deps.sh")
    servers: list[PrometheusServer] = []

    def make(targets: list[str], report_targets: list[str] | None = None) -> PrometheusServer:
        workdir = tmp_path / f"prom-{len(servers)}"
        workdir.mkdir()
        server = PrometheusServer(workdir, targets, report_targets=report_targets)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def series_names(exposition: str) -> set[str]:
    """Every series name an exposition declares (from its # TYPE lines, with suffixes)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        elif family.type == "summary":
            names.update((family.name, family.name + "_sum", family.name + "_count"))
        else:
            names.add(family.name)
    return names


def dashboard_and_alert_series() -> set[str]:
    import re

    pattern = re.compile(r"\b(nurture_[a-z0-9_]+|up)\b")
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((DEPLOY_PROM / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {m for e in exprs for m in pattern.findall(e)}


# --- the known set of events ----------------------------------------------------------------
#
# Event times are "now" (minus a minute or two) so that every timer the core schedules is due
# weeks ahead and none fires during the test. Lead ids are fixed (the topics are per-test).
#
# 6 out-of-ICP leads O-0..O-5 (4 employees: below the 10-employee gate): lead.created, then two
#   pricing views each.
# 4 high-ICP leads (200 employees, software): lead.created (fit 40 -> prospect), one pricing view
#   (+15 = 55 >= 50: MQL) -> mql_nurture. Q-26 falls in the 5% holdout of mql_nurture (the
#   precondition is asserted), Q-1..Q-3 do not.
# 3 malformed messages: two not JSON, one without lead_id.
#
# Hand count:
#   events in: crm lead.created 10, product page.viewed 6*2 + 4 = 16, total 26
#   dead letters 3
#   transitions: -> low_touch 6 (icp.out_of_icp), -> prospect 4, -> mql_nurture 4; total 14
#   actions: enroll 4; email sends 3 (Q-1..Q-3); skipped 1 (Q-26, skip reason holdout)
#   occupancy: low_touch 6, mql_nurture 4, prospect 0 (entered and left)
#   pipeline: mql_nurture entries 3 nurtured + 1 holdout (tier high); 3 template sends
#   pending timers: the worker's due index holds each lead's next due timer, so the gauge counts
#   leads with a pending timer: the 4 MQL leads (each has silence and mql.stale pending)
OUT_LEADS = [f"O-{i}" for i in range(6)]
MQL_LEADS = ["Q-1", "Q-2", "Q-3", "Q-26"]
HOLDOUT_LEAD = "Q-26"


def _firmographics(size: int) -> dict[str, Any]:
    return {
        "company_size": size,
        "industry": "software",
        "country": "DE",
        "tech_stack": [],
        "source": "webinar",
        "title": "founder",
    }


def ev(lead: str, kind: str, at: int, suffix: str = "", **props: Any) -> dict[str, Any]:
    """A contract event; ``event_id`` is ``<lead>-<type><suffix>``."""
    from stream.core.model import ms_to_rfc3339

    return {
        "event_id": f"{lead}-{kind}{suffix}",
        "type": kind,
        "lead_id": lead,
        "occurred_at": ms_to_rfc3339(at),
        "properties": props,
    }


def known_events() -> tuple[list[dict[str, Any]], list[bytes]]:
    t0 = (int(time.time()) - 120) * 1000
    events: list[dict[str, Any]] = []
    for lead in OUT_LEADS:
        events.append(ev(lead, "lead.created", t0, **_firmographics(4)))
        for v in range(2):
            events.append(ev(lead, "page.viewed", t0 + (v + 1) * 1000, f"-{v}", page="pricing"))
    for lead in MQL_LEADS:
        events.append(ev(lead, "lead.created", t0, **_firmographics(200)))
        events.append(ev(lead, "page.viewed", t0 + 1000, page="pricing"))
    missing_lead = ev("bad", "lead.created", t0)
    del missing_lead["lead_id"]
    bad = [b"{not json", b"\xff\xfe garbage", json.dumps(missing_lead).encode()]
    return events, bad


def test_holdout_precondition_of_the_fixture() -> None:
    from stream.core.config import load_config
    from stream.core.ids import in_holdout

    pct = load_config().emails.holdout_pct
    assert [lead for lead in MQL_LEADS if in_holdout(lead, "mql_nurture", pct)] == [HOLDOUT_LEAD]


def test_prometheus_scrapes_worker_and_promql_returns_known_counts(
    kafka_settings: Any, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    from tests.support.worker import (
        ReportConsumerProcess,
        WorkerProcess,
        produce_events,
        produce_raw,
    )

    settings = kafka_settings
    crm, product = settings.topic_crm_events, settings.topic_product_events
    events, bad = known_events()

    reporter = ReportConsumerProcess.for_settings(settings)
    with WorkerProcess.from_settings(settings) as worker, reporter:
        worker.wait_ready()
        reporter.wait_ready()
        host_port = urllib.parse.urlparse(worker.url).netloc
        report_host_port = urllib.parse.urlparse(reporter.url).netloc
        prom = prometheus_factory([host_port], report_targets=[report_host_port])
        wait_for(prom.targets_up, 60, "the worker target to be up in Prometheus")

        # input topics are not ordered against each other: let every lead.created (crm) be
        # processed before the page views (product), or a view could create the lead first
        created = [e for e in events if e["type"] == "lead.created"]
        produce_events(settings, created)
        wait_for(
            lambda: prom.scalar("sum(nurture_events_in_total)") == len(created),
            120,
            "the lead.created events to be processed and scraped",
        )
        produce_events(settings, [e for e in events if e["type"] != "lead.created"])
        produce_raw(
            settings.kafka_bootstrap_servers,
            [(crm, b"bad", bad[0]), (product, b"bad", bad[1]), (crm, b"bad", bad[2])],
        )

        expected = {
            f'sum(nurture_events_in_total{{topic="{crm}",type="lead.created"}})': 10.0,
            f'sum(nurture_events_in_total{{topic="{product}",type="page.viewed"}})': 16.0,
            "sum(nurture_events_in_total)": 26.0,
            "sum(nurture_dead_letters_total)": 3.0,
            "sum(nurture_transitions_total)": 14.0,
            'sum(nurture_transitions_total{to_program="low_touch",reason="icp.out_of_icp"})': 6.0,
            'sum(nurture_transitions_total{to_program="mql_nurture"})': 4.0,
            'sum(nurture_actions_total{type="enroll"})': 4.0,
            'sum(nurture_actions_total{type="send",channel="email",program="mql_nurture"})': 3.0,
            'sum(nurture_skipped_sends_total{reason="holdout"})': 1.0,
            'sum(nurture_leads{program="low_touch"})': 6.0,
            'sum(nurture_leads{program="mql_nurture"})': 4.0,
            "sum(nurture_timers_pending)": 4.0,
            "sum(nurture_processing_latency_seconds_count)": 26.0,
            'sum(nurture_pipeline_entries_total{program="mql_nurture",group="nurtured"})': 3.0,
            'sum(nurture_pipeline_entries_total{program="mql_nurture",group="holdout"})': 1.0,
            'sum(nurture_pipeline_template_sends_total{program="mql_nurture"})': 3.0,
            'count(up{job="nurture-worker"} == 1)': 1.0,
            'count(up{job="nurture-report"} == 1)': 1.0,
        }

        def results() -> dict[str, float | None]:
            return {q: prom.scalar(q) for q in expected}

        try:
            wait_for(lambda: results() == expected, 120, "Prometheus to report the known counts")
        except AssertionError:
            got = results()
            diff = {q: (expected[q], got[q]) for q in expected if got[q] != expected[q]}
            detail = [
                (r["metric"], r["value"][1])
                for q in ("nurture_transitions_total", "nurture_actions_total")
                for r in prom.query(q)
            ]
            pytest.fail(f"PromQL (expected, got): {diff}\nseries: {detail}")

        # the stored history saw both phases: 10 events (lead.created only), then 26
        history = prom.api(
            "query_range",
            query="sum(nurture_events_in_total)",
            start=str(time.time() - 300),
            end=str(time.time()),
            step="1",
        )["result"]
        values = sorted({float(v) for _, v in history[0]["values"]})
        assert 10.0 in values and values[-1] == 26.0, values

        body = _get(f"{worker.url}/metrics")
        report_body = _get(f"{reporter.url}/metrics")
        # promtool lints the real expositions of the worker and the report consumer
        for exposition in (body, report_body):
            lint = subprocess.run(
                ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60
            )
            assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

        # every series the dashboard and the alerts query exists on the worker's /metrics or,
        # for the nurture_pipeline_* series, on the report consumer's
        worker_series = series_names(body.decode())
        report_series = series_names(report_body.decode())
        assert report_series and all(n.startswith("nurture_pipeline_") for n in report_series)
        assert not any(n.startswith("nurture_pipeline_") for n in worker_series)
        exposed = worker_series | report_series | PROMETHEUS_SYNTHETIC
        used = dashboard_and_alert_series()
        assert len(used) >= 18
        missing = sorted(used - exposed)
        assert not missing, f"dashboard/alert series missing from /metrics: {missing}"

        # every dashboard panel query evaluates in the real Prometheus; the throughput,
        # transitions, actions and occupancy panels have data after the known events
        dash = json.loads(DASHBOARD.read_text())
        by_title = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"]}
        for exprs in by_title.values():
            for expr in exprs:
                prom.api("query", query=expr)  # asserts status == success: valid PromQL
        required = [
            t
            for t in by_title
            if t.startswith(("Input throughput", "Transitions", "Actions", "Program occ"))
        ]
        assert len(required) == 4, required
        for title in required:
            # rate() needs two samples of a series: wait for the next scrapes, not a fixed time
            wait_for(partial(_has_data, prom, by_title[title]), 30, f"data in panel {title!r}")

        # and Prometheus stored the series it scraped under the same names
        names = set(prom.api("label/__name__/values"))
        assert {
            "nurture_events_in_total",
            "nurture_dead_letters_total",
            "nurture_transitions_total",
            "nurture_actions_total",
            "nurture_processing_latency_seconds_bucket",
        } <= names

        # the deploy alert rules are loaded and healthy in this Prometheus
        groups = prom.api("rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(rules) == {
            "NurtureWorkerDown",
            "NurtureConsumerLagGrowing",
            "NurtureDeadLetterRateHigh",
            "NurtureTimersFiringLate",
            "NurtureNoEvents",
        }
        assert all(r["health"] != "err" for r in rules.values()), rules

        # stopping the worker turns NurtureWorkerDown pending for exactly this instance
        worker.stop()
        alert = wait_for(
            partial(_alert, prom, "NurtureWorkerDown"), 60, "NurtureWorkerDown to be pending"
        )
        assert alert["labels"]["instance"] == host_port
        assert alert["state"] in ("pending", "firing")


def _alert(prom: PrometheusServer, name: str) -> dict[str, Any] | None:
    for alert in prom.api("alerts")["alerts"]:
        if alert["labels"]["alertname"] == name:
            found: dict[str, Any] = alert
            return found
    return None


def _has_data(prom: PrometheusServer, exprs: list[str]) -> bool:
    return all(prom.api("query", query=e)["result"] for e in exprs)


def _equals(get: Callable[[], float], value: float) -> bool:
    return get() == value


def _metric_total(body: str, sample: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _only(doc: Any, shape: Any) -> Any:
    """``doc`` restricted to the keys of ``shape`` (the report also carries intervals)."""
    if isinstance(shape, dict) and isinstance(doc, dict):
        return {k: _only(doc.get(k), v) for k, v in shape.items()}
    return doc


def _report_cell(consumer: Any, cohort: str, shape: Any) -> Any:
    status, report = consumer.get("/report")
    if status != 200:
        return None
    try:
        return _only(report["programs"]["mql_nurture"][cohort]["high"], shape)
    except KeyError:
        return None


def _pipeline_samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name.startswith("nurture_pipeline_")
    }


def test_report_consumer_serves_report_and_series(
    kafka_settings: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nurture report-consumer`` builds the report from the worker's output topics: GET
    /report and its nurture_pipeline_* series against hand figures; the worker keeps neither;
    a restarted consumer resumes from its stored offsets with the same report and series;
    ``nurture report --from-kafka`` gives the same report.

    Q-1..Q-3 (nurtured) and Q-26 (holdout) enter mql_nurture at t0 + 1 s (t0 = 3 days ago);
    Q-1 gets an opportunity 2 days after entry, Q-26 one day after entry. Hand figures for the
    entry cohort (ISO week of t0), tier high:
      nurtured: entries 3, opportunities 1, rate 1/3 = 0.333333, median = p90 = 2.0 days
      holdout:  entries 1, opportunities 1, rate 1.0, median = p90 = 1.0 day
      lift: rate points 0.333333 - 1.0 = -0.666667, relative 0.333333/1 - 1 = -0.666667,
            median days saved 1.0 - 2.0 = -1.0
    """
    from stream.core.model import DAY_MS
    from stream.report.pipeline import build_report, iso_week
    from tests.support.worker import (
        ReportConsumerProcess,
        WorkerProcess,
        consume_all,
        produce_events,
        settings_env,
    )

    settings = kafka_settings
    t0 = (int(time.time()) - 3 * 86_400) * 1000
    entry = t0 + 1000
    cohort = iso_week(entry)

    created = [ev(lead, "lead.created", t0, **_firmographics(200)) for lead in MQL_LEADS]
    views = [ev(lead, "page.viewed", entry, page="pricing") for lead in MQL_LEADS]
    opps = [
        ev("Q-1", "opportunity.created", entry + 2 * DAY_MS),
        ev(HOLDOUT_LEAD, "opportunity.created", entry + DAY_MS),
    ]
    expected_cell = {
        "nurtured": {
            "entries": 3,
            "opportunities": 1,
            "contribution_rate": 0.333333,
            "time_to_opportunity_days": {"median": 2.0, "p90": 2.0},
        },
        "holdout": {
            "entries": 1,
            "opportunities": 1,
            "contribution_rate": 1.0,
            "time_to_opportunity_days": {"median": 1.0, "p90": 1.0},
        },
        "lift": {"rate_points": -0.666667, "relative": -0.666667, "median_days_saved": -1.0},
    }

    consumer = ReportConsumerProcess.for_settings(settings)
    with WorkerProcess.from_settings(settings) as worker, consumer:
        worker.wait_ready()
        consumer.wait_ready()
        # one phase per topic, so that cross-topic order is the intended one
        for phase, total in ((created, 4), (views, 8), (opps, 10)):
            produce_events(settings, phase)
            worker.wait_processed(total, timeout=120)

        wait_for(
            lambda: _report_cell(consumer, cohort, expected_cell) == expected_cell,
            60,
            "the report consumer to read the worker's outputs",
        )
        status, report = consumer.get("/report")
        assert status == 200, report

        # `nurture report --url` prints the same report
        from stream.cli import main

        capsys.readouterr()
        assert main(["report", "--url", consumer.url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == report

        body = _get(f"{consumer.url}/metrics").decode()
        lab = {"program": "mql_nurture", "cohort": cohort, "icp_tier": "high"}
        entries = "nurture_pipeline_entries_total"
        opps_total = "nurture_pipeline_opportunities_total"
        assert _metric_total(body, entries, **lab, group="nurtured") == 3
        assert _metric_total(body, entries, **lab, group="holdout") == 1
        assert _metric_total(body, opps_total, **lab, group="nurtured") == 1
        assert _metric_total(body, opps_total, **lab, group="holdout") == 1
        series = _pipeline_samples(body)

        # the worker keeps no report and no pipeline series
        assert worker.get("/report")[0] == 404
        assert "nurture_pipeline_" not in _get(f"{worker.url}/metrics").decode()

        # the report equals one rebuilt from the worker's own output topics
        bootstrap = settings.kafka_bootstrap_servers
        transitions = consume_all(bootstrap, settings.topic_transitions, idle=3.0)
        actions = consume_all(bootstrap, settings.topic_actions, idle=3.0)
        rebuilt = build_report(
            [r["value"] for r in transitions], [r["value"] for r in actions]
        ).to_dict()
        assert rebuilt["programs"] == report["programs"]
        assert rebuilt["templates"] == report["templates"]

        # a restarted consumer resumes from its stored offsets: same report, same series
        consumer.stop()
        with ReportConsumerProcess.for_settings(
            settings, data_dir=consumer.extra_env["NURTURE_REPORT_DATA_DIR"]
        ) as again:
            again.wait_ready()
            status, after = again.get("/report")
            assert status == 200 and after == report
            assert _pipeline_samples(_get(f"{again.url}/metrics").decode()) == series
            partitions = 2 * settings.topic_partitions
            assert f"({partitions} resumed from stored offsets)" in again.log_tail()

    # read once from Kafka: the same report
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["report", "--from-kafka", "--json"]) == 0
    once = json.loads(capsys.readouterr().out)
    assert once["programs"] == report["programs"]
    assert once["templates"] == report["templates"]


def _occupancy(worker: Any) -> dict[tuple[str, str], float]:
    body = _get(f"{worker.url}/metrics").decode()
    return {
        (s.labels["program"], s.labels["state"]): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "nurture_leads" and s.value
    }


def test_occupancy_gauge_is_rebuilt_from_the_table_after_a_restart(kafka_settings: Any) -> None:
    """nurture_leads of a restarted worker, which sees no transition after the restart, equals
    the gauge before it: each partition's share is rebuilt from its table when it is assigned.
    Hand count (the known events): low_touch 6, mql_nurture 4."""
    from tests.support.worker import WorkerProcess, produce_events

    settings = kafka_settings
    events, _bad = known_events()
    with WorkerProcess.from_settings(settings) as worker:
        worker.wait_ready()
        created = [e for e in events if e["type"] == "lead.created"]
        produce_events(settings, created)
        worker.wait_processed(len(created), timeout=120)
        produce_events(settings, [e for e in events if e["type"] != "lead.created"])
        worker.wait_processed(len(events), timeout=120)
        before = wait_for(
            lambda: (o := _occupancy(worker)) and sum(o.values()) == 10 and o,
            60,
            "occupancy of the 10 leads",
        )
    assert sum(v for (p, _), v in before.items() if p == "low_touch") == 6
    assert sum(v for (p, _), v in before.items() if p == "mql_nurture") == 4

    with WorkerProcess.from_settings(settings) as again:
        again.wait_ready()
        after = wait_for(
            lambda: (o := _occupancy(again)) and sum(o.values()) == 10 and o,
            60,
            "the restarted worker's occupancy rebuilt from its table",
        )
        assert after == before
        assert again.processed() == 0  # nothing was re-processed: the gauge came from the table
