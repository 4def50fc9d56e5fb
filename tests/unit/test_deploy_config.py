"""deploy/: promtool check config / rules / test rules, and the Grafana provisioning + dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.metrics import Metrics, PipelineMetrics
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "nurture.json"

# series Prometheus itself adds to every target; never on a worker's /metrics
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_METRIC = re.compile(r"\b(nurture_[a-z0-9_]+|up)\b")

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=PROM)


@needs_promtool
def test_promtool_check_config() -> None:
    out = _promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


@needs_promtool
def test_promtool_check_rules() -> None:
    out = _promtool("check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 rules found" in out.stdout


@needs_promtool
def test_promtool_test_rules_alert_behaviour() -> None:
    """Each alert fires (and stays quiet) on synthetic series, with hand-computed values."""
    out = _promtool("test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_cover_the_required_conditions() -> None:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    names = {rule["alert"] for group in doc["groups"] for rule in group["rules"]}
    assert names == {
        "NurtureWorkerDown",
        "NurtureConsumerLagGrowing",
        "NurtureDeadLetterRateHigh",
        "NurtureTimersFiringLate",
        "NurtureNoEvents",
    }


def test_prometheus_scrapes_the_worker_job() -> None:
    doc = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    worker = jobs["nurture-worker"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in worker["static_configs"] for t in sc["targets"]]
    assert targets and all(t.endswith(":6066") for t in targets)
    assert doc["rule_files"] == ["alerts.yml"]


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[str]:
    dash = dashboard or _dashboard()
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def dashboard_metric_names(dashboard: dict[str, Any] | None = None) -> set[str]:
    """Every series name a dashboard query reads (Prometheus-synthetic ``up`` included)."""
    return {m for expr in dashboard_exprs(dashboard) for m in _METRIC.findall(expr)}


def test_dashboard_is_valid_grafana_dashboard_json() -> None:
    dash = _dashboard()
    for key, kind in (
        ("uid", str),
        ("title", str),
        ("schemaVersion", int),
        ("panels", list),
        ("time", dict),
        ("templating", dict),
    ):
        assert isinstance(dash.get(key), kind), key
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert "id" not in dash or dash["id"] is None  # file-provisioned dashboards carry no id
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    known = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "heatmap"}
    for panel in dash["panels"]:
        assert panel["type"] in known, panel["title"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_dashboard_has_the_required_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in _dashboard()["panels"])
    for word in (
        "throughput",
        "latency",
        "lag",
        "timer",
        "occupancy",
        "transitions",
        "contribution rate",
    ):
        assert word in titles, word
    exprs = " ".join(dashboard_exprs())
    assert "icp_tier" in exprs and "program" in exprs


def test_every_dashboard_and_alert_metric_is_declared_by_the_worker() -> None:
    # the nurture_pipeline_* series come from the report consumer (PipelineMetrics)
    declared = set(Metrics().sample_names()) | PROMETHEUS_SYNTHETIC
    declared |= set(PipelineMetrics().sample_names())
    used = dashboard_metric_names()
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    for rule in (r for group in doc["groups"] for r in group["rules"]):
        used |= set(_METRIC.findall(rule["expr"]))
    assert used, "no metric found in the dashboard"
    missing = sorted(used - declared)
    assert not missing, f"dashboard/alerts query undeclared series: {missing}"
    # and the dashboard really shows most of what the worker exposes
    assert len({m for m in used if m.startswith("nurture_")}) >= 18


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "nurture.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_wires_prometheus_and_grafana_to_these_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    prom_mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prom_mounts
    graf_mounts = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in graf_mounts
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in graf_mounts
    # the scrape target is the compose worker service on its web port
    doc = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "nurture-worker"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    worker_env = services["worker"]["environment"]
    assert targets == [f"worker:{worker_env['NURTURE_WEB_PORT']}"]
    # and the datasource URL is the compose prometheus service
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"


def test_docker_compose_config_is_valid(tmp_path: Path) -> None:
    compose = require_tool("docker-compose")  # Debian's, from make sysdeps
    out = subprocess.run(
        [compose, "config", "-q"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # the check bites: a service without an image or build is rejected
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    del broken["services"]["worker"]["image"], broken["services"]["worker"]["build"]
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    bad = subprocess.run(
        [compose, "config", "-q"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert bad.returncode != 0


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query (as a recording rule); a typo in PromQL fails here."""
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(rules)} rules found" in out.stdout
    broken = path.with_name("broken.yml")
    broken.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "b", "rules": [{"record": "x:y", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    bad = subprocess.run(
        ["promtool", "check", "rules", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0  # the check does reject a malformed query


def test_compose_runs_the_sender_and_loads_the_alert_rules() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    sender, worker = services["sender"], services["worker"]
    assert sender["command"] == ["sender"] and sender["image"] == worker["image"]
    env = sender["environment"]
    assert (
        env["NURTURE_KAFKA_BOOTSTRAP_SERVERS"]
        == worker["environment"]["NURTURE_KAFKA_BOOTSTRAP_SERVERS"]
    )
    assert any(v.endswith(":" + env["NURTURE_DATA_DIR"]) for v in sender["volumes"])
    assert env["NURTURE_SENDER_SMTP_HOST"] in services  # the compose mail catcher
    # Prometheus gets deploy/prometheus mounted, and its config loads alerts.yml from there
    (mount,) = services["prometheus"]["volumes"][:1]
    host, container = mount.split(":")[:2]
    config = yaml.safe_load((ROOT / host / "prometheus.yml").read_text())
    assert all((ROOT / host / name).exists() for name in config["rule_files"])
    assert "--config.file=" + container + "/prometheus.yml" in services["prometheus"]["command"]


def test_compose_environment_names_real_settings_and_the_sender_is_scraped() -> None:
    from stream.settings import Settings

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    fields = {f"NURTURE_{name.upper()}" for name in Settings.model_fields}
    for name, service in services.items():
        env = {k for k in service.get("environment", {}) if k.startswith("NURTURE_")}
        assert env <= fields, (name, sorted(env - fields))
    sender_env = services["sender"]["environment"]
    doc = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "nurture-sender"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"sender:{sender_env['NURTURE_SENDER_METRICS_PORT']}"]


def test_compose_runs_the_report_consumer_where_prometheus_scrapes_it() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    report = services["report"]
    assert report["command"] == ["report-consumer"]
    port = report["environment"]["NURTURE_REPORT_PORT"]
    assert f"127.0.0.1:{port}/livez" in " ".join(report["healthcheck"]["test"])
    doc = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "nurture-report"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"report:{port}"]
