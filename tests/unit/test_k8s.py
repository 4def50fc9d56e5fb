"""deploy/k8s: the kustomization renders (kustomize), every object is valid Kubernetes
(kubernetes-validate, strict, pinned version), and the objects agree with the code
(settings names, ports, probes, the rules file, the image's user)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream.core.config import load_config_text
from stream.settings import Settings
from tests.support.tools import ROOT, require_tool

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33.0"  # the oldest Kubernetes the manifests promise to work on
NOT_RESOURCES = {"kustomization.yaml", "rules.yaml"}  # rules.yaml feeds a configMapGenerator


def _kustomize_command() -> list[str]:
    """kustomize (standalone, or .cache/bin from `make tools`), else kubectl's built-in one."""
    local = ROOT / ".cache" / "bin" / "kustomize"
    standalone = str(local) if local.exists() else shutil.which("kustomize")
    if standalone:
        return [standalone, "build"]
    return [require_tool("kubectl"), "kustomize"]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    out = subprocess.run(
        [*_kustomize_command(), str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _one(objects: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    (found,) = [
        o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)
    ]
    return found


def _pod(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one(objects, kind, name)["spec"]["template"]["spec"]
    return spec


def _settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _one(objects, "ConfigMap", "nurture-settings")["data"]
    return data


def test_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - NOT_RESOURCES
    assert listed == on_disk
    generated = {f for g in kustomization["configMapGenerator"] for f in g.get("files", [])}
    assert generated == {"rules.yaml"}


def test_every_rendered_object_is_valid_for_the_pinned_kubernetes(
    objects: list[dict[str, Any]],
) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "ConfigMap",
            "ConfigMap",
            "Service",
            "StatefulSet",
            "PodDisruptionBudget",
            "Deployment",
            "PersistentVolumeClaim",
            "Deployment",  # the report consumer (report-deployment.yaml)
            "PersistentVolumeClaim",
            "Job",
        ]
    )
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "nurture", obj["metadata"]["name"]


def test_the_validator_rejects_a_misspelt_field(objects: list[dict[str, Any]]) -> None:
    """The check bites: a typo in a probe is an error in strict mode."""
    worker = copy.deepcopy(_one(objects, "StatefulSet", "nurture-worker"))
    probe = worker["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)


def test_settings_configmap_holds_only_real_settings_with_valid_values(
    objects: list[dict[str, Any]],
) -> None:
    data = _settings(objects)
    fields = {f"NURTURE_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= fields, sorted(set(data) - fields)
    settings = Settings(**{k.removeprefix("NURTURE_").lower(): v for k, v in data.items()})
    assert settings.web_host == "0.0.0.0"
    assert settings.standby_replicas >= 1 and settings.replication_factor >= 3


def test_worker_statefulset_volume_probes_resources_and_scaling(
    objects: list[dict[str, Any]],
) -> None:
    data = _settings(objects)
    worker = _one(objects, "StatefulSet", "nurture-worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["worker"]
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == data["NURTURE_DATA_DIR"]
    (port,) = container["ports"]
    assert str(port["containerPort"]) == data["NURTURE_WEB_PORT"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
    assert container["resources"]["requests"]["cpu"] == "1"
    assert container["resources"]["limits"]["memory"] == "2Gi"
    assert worker["spec"]["replicas"] <= int(data["NURTURE_TOPIC_PARTITIONS"])


def test_pods_run_as_the_images_non_root_user(objects: list[dict[str, Any]]) -> None:
    image_user = re.findall(r"^USER (\d+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    for kind, name in (("StatefulSet", "nurture-worker"), ("Deployment", "nurture-sender")):
        pod = _pod(objects, kind, name)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert [str(pod["securityContext"]["runAsUser"])] == image_user
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_is_scraped_and_pdb_covers_the_worker_pods(objects: list[dict[str, Any]]) -> None:
    worker = _one(objects, "StatefulSet", "nurture-worker")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    service = _one(objects, "Service", "nurture-worker")
    assert worker["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= labels.items()
    notes = service["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert notes["prometheus.io/port"] == _settings(objects)["NURTURE_WEB_PORT"]
    pdb = _one(objects, "PodDisruptionBudget", "nurture-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_rules_configmap_is_the_built_in_playbook_at_nurture_rules_file(
    objects: list[dict[str, Any]],
) -> None:
    rules = _one(objects, "ConfigMap", "nurture-rules")
    text = rules["data"]["rules.yaml"]
    built_in = (ROOT / "stream" / "core" / "rules.yaml").read_text()
    assert text == built_in, "stale: cp stream/core/rules.yaml deploy/k8s/rules.yaml"
    assert load_config_text(text, "deploy/k8s/rules.yaml")  # the worker's own validation
    rules_file = Path(_settings(objects)["NURTURE_RULES_FILE"])
    for kind, name in (("StatefulSet", "nurture-worker"), ("Deployment", "nurture-sender")):
        pod = _pod(objects, kind, name)
        (volume,) = [v for v in pod["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == rules["metadata"]["name"]  # the hashed name
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert Path(mount["mountPath"]) / "rules.yaml" == rules_file


def test_broker_credentials_come_from_secrets_and_the_sender_is_a_deployment(
    objects: list[dict[str, Any]],
) -> None:
    for kind, name in (("StatefulSet", "nurture-worker"), ("Deployment", "nurture-sender")):
        pod = _pod(objects, kind, name)
        secrets = {
            s["secretRef"]["name"] for s in pod["containers"][0]["envFrom"] if "secretRef" in s
        }
        assert "nurture-kafka-credentials" in secrets
        tls = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        assert tls == ["nurture-kafka-tls"]
    sender = _one(objects, "Deployment", "nurture-sender")
    assert sender["spec"]["template"]["spec"]["containers"][0]["args"] == ["sender"]
    assert sender["spec"]["replicas"] == 1 and sender["spec"]["strategy"]["type"] == "Recreate"


def test_sender_metrics_port_is_probed_and_scraped(objects: list[dict[str, Any]]) -> None:
    sender = _one(objects, "Deployment", "nurture-sender")["spec"]["template"]
    (container,) = sender["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    port = env["NURTURE_SENDER_METRICS_PORT"]
    assert [str(p["containerPort"]) for p in container["ports"]] == [port]
    assert container["livenessProbe"]["httpGet"]["port"] == container["ports"][0]["name"]
    assert sender["metadata"]["annotations"]["prometheus.io/port"] == port


def test_topics_job_creates_the_catalog_with_the_same_settings(
    objects: list[dict[str, Any]],
) -> None:
    job = _pod(objects, "Job", "nurture-topics")
    (container,) = job["containers"]
    assert container["args"] == ["topics", "create"]
    worker = _pod(objects, "StatefulSet", "nurture-worker")["containers"][0]
    assert container["envFrom"] == worker["envFrom"]  # same settings and broker credentials


def _readme_kubernetes_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Kubernetes")
    return readme[start : readme.index("\n### ", start + 1)]


def test_readme_walkthrough_names_every_setting_secret_and_command(
    objects: list[dict[str, Any]],
) -> None:
    section = _readme_kubernetes_section()
    for name in _settings(objects):
        assert f"`{name}`" in section, name
    secrets = set()
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            secrets |= {
                e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e
            }
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secrets.add(ref["name"])
        secrets |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    assert secrets == {
        "nurture-kafka-credentials",
        "nurture-kafka-tls",
        "nurture-web-token",
        "nurture-sender",
    }
    for name in secrets:
        assert f"create secret generic {name}" in section, name
    for step in ("kubectl apply -k deploy/k8s", "/readyz", "/metrics", 'up{job="nurture-worker"}'):
        assert step in section, step
    from stream.settings import Settings

    fields = {f"NURTURE_{n.upper()}" for n in Settings.model_fields}
    named = set(re.findall(r"NURTURE_[A-Z_]*[A-Z]", section))
    prefixes = {n for n in named if n.endswith("_SMTP") or n == "NURTURE_TOPIC"}
    assert named - prefixes <= fields, sorted(named - prefixes - fields)


def test_in_cluster_prometheus_config_finds_the_manifests_under_the_alerting_job_names(
    objects: list[dict[str, Any]],
) -> None:
    prom = ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((prom / "prometheus-kubernetes.yml").read_text())
    local = yaml.safe_load((prom / "prometheus.yml").read_text())
    assert config["rule_files"] == local["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {j["job_name"] for j in local["scrape_configs"]} - {"prometheus"}
    alerts = (prom / "alerts.yml").read_text()
    assert all(f'job="{name}"' in alerts for name in re.findall(r'job="([^"]+)"', alerts))
    service = _one(objects, "Service", "nurture-worker")
    sender = _one(objects, "Deployment", "nurture-sender")["spec"]["template"]["metadata"]
    keeps = {
        name: {
            tuple(r["source_labels"]): r["regex"]
            for r in job["relabel_configs"]
            if r.get("action") == "keep"
        }
        for name, job in jobs.items()
    }
    assert (
        keeps["nurture-worker"][("__meta_kubernetes_service_name",)] == service["metadata"]["name"]
    )
    assert (
        keeps["nurture-sender"][("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
        == sender["labels"]["app.kubernetes.io/name"]
    )
    for job in jobs.values():
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["namespaces"]["names"] == [service["metadata"]["namespace"]]
