"""``nurture schemas export|check``: the contract's JSON Schema files in topics/schemas/ and the
AsyncAPI document topics/asyncapi.yaml, both generated from the models and the topic catalog."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "schemas", help="export or check the contract's JSON Schema files and asyncapi.yaml"
    )
    parser.add_argument("action", choices=["export", "check"])
    parser.add_argument("--dir", type=Path, default=None, help="default: topics/schemas")
    parser.add_argument("--asyncapi", type=Path, default=None, help="default: topics/asyncapi.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from topics import asyncapi
    from topics.export import SCHEMA_DIR, all_schemas, export, render

    directory: Path = args.dir or SCHEMA_DIR
    asyncapi_path: Path = args.asyncapi or asyncapi.ASYNCAPI_PATH
    if args.action == "export":
        for path in export(directory):
            print(path)
        print(asyncapi.export(asyncapi_path))
        return 0
    expected = {directory / name: render(doc) for name, doc in all_schemas().items()}
    expected[asyncapi_path] = asyncapi.render(asyncapi.build())
    stale = [path for path, text in expected.items() if _read(path) != text]
    for path in stale:
        print(f"stale: {path} (run: nurture schemas export)")
    return 1 if stale else 0


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None
