"""``nurture schemas export|check``: the contract's JSON Schema files in topics/schemas/."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "schemas", help="export or check the contract's JSON Schema files"
    )
    parser.add_argument("action", choices=["export", "check"])
    parser.add_argument("--dir", type=Path, default=None, help="default: topics/schemas")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from topics.export import SCHEMA_DIR, all_schemas, export, render

    directory: Path = args.dir or SCHEMA_DIR
    if args.action == "export":
        for path in export(directory):
            print(path)
        return 0
    stale = [
        name
        for name, doc in all_schemas().items()
        if not (directory / name).exists() or (directory / name).read_text() != render(doc)
    ]
    for name in stale:
        print(f"stale: {directory / name} (run: nurture schemas export)")
    return 1 if stale else 0
