"""The single ``nurture`` entry point. Each subcommand lives in its own module.

A command module exposes ``register(subparsers)`` which adds its parser and sets
``func=<callable(args) -> int>``. Modules are imported here, but must keep heavy imports
(faust, aiokafka) inside their run functions so ``nurture --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand modules, in the order shown in --help
COMMAND_MODULES: tuple[str, ...] = (
    "stream.commands.worker",
    "stream.commands.sender",
    "stream.commands.kafka",
    "stream.commands.topics",
    "stream.commands.replay",
    "stream.commands.backtest",
    "stream.commands.simulate",
    "stream.commands.report",
    "stream.commands.report_consumer",
    "stream.commands.demo",
    "stream.commands.schemas",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nurture", description="nurture-stream: behavioural B2B nurture state machine"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
