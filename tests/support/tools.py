"""External checkers the deploy tests run (asyncapi CLI, kubectl/kustomize, docker-compose).

`make test` installs them (`make tools`: deploy/install-system-deps.sh and the project-local npm
folder .cache/npm) and sets NURTURE_REQUIRE_TOOLS=1, so there a missing tool FAILS the test.
A developer running pytest by hand without them gets a skip that names the make target.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_BIN = ROOT / ".cache" / "npm" / "node_modules" / ".bin"


def require_tool(name: str, *candidates: Path) -> str:
    """The tool's path: one of ``candidates`` if it exists, else ``name`` on PATH."""
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: run `make tools`"
    if os.environ.get("NURTURE_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
