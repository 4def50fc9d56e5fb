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
import uuid
from collections.abc import Callable, Iterator
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

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
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
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[[list[str]], PrometheusServer]]:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.fail("prometheus/promtool missing: run deploy/install-system-deps.sh")
    servers: list[PrometheusServer] = []

    def make(targets: list[str]) -> PrometheusServer:
        workdir = tmp_path / f"prom-{len(servers)}"
        workdir.mkdir()
        server = PrometheusServer(workdir, targets)
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

# 6 out-of-ICP leads (4 employees: below the 10-employee gate), each created once and viewing
# the pricing page twice; 3 malformed messages. Hand count:
#   crm lead.created          6
#   product page.viewed      12
#   dead letters              3   (not JSON x2, missing lead_id x1)
#   transitions to low_touch  6   (an out-of-ICP lead never enters a structured program)
#   actions                   0   for low_touch page views (no structured program, no sends)
N_LEADS = 6
VIEWS_PER_LEAD = 2


def known_events(run: str) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes]]]:
    """([(topic-kind, key, value)], [(topic-kind, raw bad value)])."""
    good: list[tuple[str, bytes, bytes]] = []
    for i in range(N_LEADS):
        lead = f"L-{run}-{i}"
        created = {
            "event_id": f"{lead}-created",
            "type": "lead.created",
            "lead_id": lead,
            "account_id": f"A-{run}-{i}",
            "occurred_at": "2026-11-20T10:00:00Z",
            "properties": {
                "company_size": 4,
                "industry": "software",
                "country": "DE",
                "tech_stack": [],
                "source": "webinar",
                "title": "founder",
            },
        }
        good.append(("crm", lead.encode(), json.dumps(created).encode()))
        for v in range(VIEWS_PER_LEAD):
            view = {
                "event_id": f"{lead}-view-{v}",
                "type": "page.viewed",
                "lead_id": lead,
                "occurred_at": f"2026-11-20T1{v + 1}:00:00Z",
                "properties": {"page": "pricing"},
            }
            good.append(("product", lead.encode(), json.dumps(view).encode()))
    bad = [
        ("crm", b"{not json"),
        ("product", b"\xff\xfe garbage"),
        (
            "crm",
            json.dumps(
                {
                    "event_id": f"bad-{run}",
                    "type": "lead.created",
                    "occurred_at": "2026-11-20T10:00:00Z",
                }
            ).encode(),
        ),
    ]
    return good, bad


def produce(bootstrap: str, topics: dict[str, str], good: list[Any], bad: list[Any]) -> None:
    """Send with a real Kafka producer, waiting for every acknowledgement."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            futures = [
                await producer.send(topics[kind], value=value, key=key) for kind, key, value in good
            ]
            futures += [
                await producer.send(topics[kind], value=value, key=b"bad") for kind, value in bad
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def test_prometheus_scrapes_worker_and_promql_returns_known_counts(
    kafka_settings: Any, prometheus_factory: Callable[[list[str]], PrometheusServer]
) -> None:
    from tests.support.worker import running_worker

    settings = kafka_settings
    topics = {
        "crm": settings.topic_crm_events,
        "product": settings.topic_product_events,
        "email": settings.topic_email_events,
    }
    run = uuid.uuid4().hex[:6]
    good, bad = known_events(run)

    with running_worker(settings) as worker:
        metrics_url = f"{worker.url}/metrics"
        host_port = urllib.parse.urlparse(worker.url).netloc
        prom = prometheus_factory([host_port])
        wait_for(prom.targets_up, 30, "the worker target to be up in Prometheus")

        produce(settings.kafka_bootstrap_servers, topics, good, bad)

        crm, product = settings.topic_crm_events, settings.topic_product_events
        expected = {
            f'sum(nurture_events_in_total{{topic="{crm}",type="lead.created"}})': 6.0,
            f'sum(nurture_events_in_total{{topic="{product}",type="page.viewed"}})': 12.0,
            "sum(nurture_events_in_total)": 18.0,
            "sum(nurture_dead_letters_total)": 3.0,
            'sum(nurture_transitions_total{to_program="low_touch"})': 6.0,
            'sum(nurture_leads{program="low_touch"})': 6.0,
            'count(up{job="nurture-worker"} == 1)': 1.0,
        }

        def all_match() -> dict[str, float | None] | None:
            got = {q: prom.scalar(q) for q in expected}
            return None if got != expected else got

        try:
            wait_for(all_match, 90, "Prometheus to report the known counts")
        except AssertionError:
            got = {q: prom.scalar(q) for q in expected}
            pytest.fail(f"PromQL results differ:\nexpected {expected}\ngot      {got}")

        # no structured-program entries and no email for out-of-ICP leads
        assert prom.scalar("sum(nurture_pipeline_entries_total)") in (None, 0.0)
        assert prom.scalar('sum(nurture_actions_total{type="send"})') in (None, 0.0)
        # the latency histogram saw the processed events through the scrape as well
        count = prom.scalar("sum(nurture_processing_latency_seconds_count)")
        assert count is not None and count >= 1

        body = _get(metrics_url)
        # promtool lints the worker's real exposition
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60
        )
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

        # every series the dashboard and the alerts query exists on the worker
        exposed = series_names(body.decode()) | PROMETHEUS_SYNTHETIC
        missing = sorted(dashboard_and_alert_series() - exposed)
        assert not missing, f"dashboard/alert series missing from the worker's /metrics: {missing}"

        # and Prometheus itself knows every nurture_* family of the dashboard by name
        names = set(prom.api("label/__name__/values"))
        scraped_nurture = {n for n in names if n.startswith("nurture_")}
        assert {"nurture_events_in_total", "nurture_dead_letters_total"} <= scraped_nurture
