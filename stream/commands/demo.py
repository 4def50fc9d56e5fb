"""``nurture demo`` (``make demo``): Kafka, topics, the worker, the simulator and a live view.

What it starts, in order, and stops in reverse (Ctrl-C, SIGTERM or ``--duration``):

1. Kafka: ``NURTURE_KAFKA_BOOTSTRAP_SERVERS`` if set, else a throw-away
   :class:`stream.kafka_local.LocalKafka`;
2. the topics of the catalog (:func:`stream.topics_admin.ensure_topics`);
3. the worker, ``nurture worker`` as a subprocess with a fresh app id and state folder, and the
   rules scaled to the demo's accelerated time (``OUT/demo-rules.yaml``: every ``*_days`` and
   ``*_hours`` value divided by ``--time-scale``, so a 48 h checkpoint comes after
   ``48 h / time_scale`` of wall time);
4. the simulator, ``nurture simulate --kafka`` as a subprocess: ``occurred_at`` starts at the wall
   clock and simulated offsets are divided by the same ``--time-scale`` (so event time tracks wall
   time and the scaled rules see the playbook's shapes); it also writes every line it sends to
   ``OUT/demo-events.jsonl``;
5. the live view (:mod:`stream.live_view`) on the transitions and actions topics.

On exit it replays ``OUT/demo-events.jsonl`` with the same scaled rules into ``OUT/demo-report/``
and prints the path of ``report.html``. With an external broker the live view starts at the
topics' end (records already there are not shown); with the local broker topics start empty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_DAYS = 30.0
DEFAULT_SIM_SECONDS = 480.0  # the whole simulated period streams in 8 minutes by default


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="local Kafka + worker + simulator + live terminal view"
    )
    parser.add_argument("--leads", type=int, default=1500)
    parser.add_argument("--days", type=float, default=DEFAULT_DAYS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=300.0, help="max events per second")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulated seconds per wall second (default: the whole period in 480 s)",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--web-port", type=int, default=6066, help="worker HTTP port")
    parser.add_argument(
        "--report-port", type=int, default=6067, help="report consumer HTTP port (/report)"
    )
    parser.add_argument("--config", type=Path, default=None, help="rules YAML to scale")
    parser.add_argument("--plain", action="store_true", help="line output instead of live view")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only replay OUT/demo-events.jsonl into OUT/demo-report/ (no Kafka)",
    )
    parser.set_defaults(func=run)


def scaled_rules(source: Path | None, time_scale: float) -> str:
    """The rules YAML with every ``*_days`` / ``*_hours`` value divided by ``time_scale``.

    The ``accounts`` section is left as it is: account health counts sessions in whole-day
    buckets (``trend_window_days`` is an integer), so post-sale timing is not compressed in the
    demo; its accounts show their onboarding tasks and health, not months of plays."""
    import yaml

    from stream.core.config import DEFAULT_RULES, load_config_text

    data = yaml.safe_load((source or DEFAULT_RULES).read_text(encoding="utf-8"))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if (
                    isinstance(key, str)
                    and key.endswith(("_days", "_hours"))
                    and isinstance(value, int | float)
                ):
                    out[key] = float(value) / time_scale
                else:
                    out[key] = walk(value)
            return out
        return node

    scaled = walk({key: value for key, value in data.items() if key != "accounts"})
    if "accounts" in data:
        scaled["accounts"] = data["accounts"]
    scaled["version"] = f"{data.get('version', 'rules')}+demo-x{time_scale:g}"
    text = yaml.safe_dump(scaled, sort_keys=False)
    load_config_text(text, "<scaled demo rules>")  # validate before anyone uses it
    return text


@contextlib.contextmanager
def _kafka() -> Iterator[tuple[str, bool]]:
    external = os.environ.get("NURTURE_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external, True
        return
    from stream.kafka_local import LocalKafka

    print("starting a local Kafka broker (KRaft, no Docker) ...", file=sys.stderr)
    with LocalKafka() as kafka:
        yield kafka.bootstrap, False


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)  # poll interval while the worker starts
    return False


def replay_report(out: Path, rules: Path | None) -> Path | None:
    from stream.core.config import load_config
    from stream.offline.replay import replay_file

    events = out / "demo-events.jsonl"
    if not events.exists() or events.stat().st_size == 0:
        print(f"no events in {events}; nothing to replay", file=sys.stderr)
        return None
    stats = replay_file(events, out / "demo-report", load_config(rules))
    print(
        f"replayed {stats.events} demo events: {stats.transitions} transitions, "
        f"{stats.actions} actions",
        file=sys.stderr,
    )
    return (out / "demo-report" / "report.html").resolve()


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C while starting up: everything started is already stopped
        print("\ndemo interrupted during start-up; stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rules_path = out / "demo-rules.yaml"
    if args.report_only:
        path = replay_report(out, rules_path if rules_path.exists() else args.config)
        if path is not None:
            print(f"report: {path}")
        return 0 if path is not None else 1
    scale = args.time_scale or args.days * 86400 / DEFAULT_SIM_SECONDS
    rules_path.write_text(scaled_rules(args.config, scale), encoding="utf-8")
    plain = bool(args.plain or not sys.stdout.isatty())
    exe = [sys.executable, "-m", "stream.cli"]
    worker: subprocess.Popen[bytes] | None = None
    reporter: subprocess.Popen[bytes] | None = None
    sim: subprocess.Popen[bytes] | None = None
    log: Any = None
    code = 0
    with _kafka() as (bootstrap, external), tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        from stream.settings import load_settings
        from stream.topics_admin import catalog_from_settings, ensure_topics

        settings = load_settings(kafka_bootstrap_servers=bootstrap, web_port=args.web_port)
        ensure_topics(bootstrap, catalog_from_settings(settings))
        env = {
            **os.environ,
            "NURTURE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "NURTURE_RULES_FILE": str(rules_path.resolve()),
            "NURTURE_DATA_DIR": str(Path(tmp, "state")),
            "NURTURE_APP_ID": f"nurture-demo-{uuid.uuid4().hex[:8]}",
            "NURTURE_WEB_PORT": str(args.web_port),
            "NURTURE_REPORT_PORT": str(args.report_port),
        }
        base = f"http://127.0.0.1:{args.web_port}"
        report_url = f"http://127.0.0.1:{args.report_port}/report"
        try:
            log = open(out / "demo-worker.log", "wb")  # noqa: SIM115
            worker = subprocess.Popen(
                [*exe, "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            print(f"worker starting (log: {out / 'demo-worker.log'}) ...", file=sys.stderr)
            if not _wait_http(f"{base}/metrics", worker, 120):
                if worker.poll() is not None:
                    log.flush()
                    tail = (out / "demo-worker.log").read_text(errors="replace")[-3000:]
                    print(
                        f"the worker exited with {worker.returncode} (port {args.web_port} "
                        f"taken? try --web-port):\n{tail}",
                        file=sys.stderr,
                    )
                    return 1
                print("worker did not answer on /metrics yet; continuing", file=sys.stderr)
            # the pipeline report reads the output topics in its own process
            reporter = subprocess.Popen(
                [*exe, "report-consumer"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            print(f"metrics: {base}/metrics\nreport:  {report_url}", flush=True)
            sim = subprocess.Popen(
                [
                    *exe,
                    "simulate",
                    "--kafka",
                    bootstrap,
                    "--leads",
                    str(args.leads),
                    "--days",
                    str(args.days),
                    "--seed",
                    str(args.seed),
                    "--rate",
                    str(args.rate),
                    "--time-scale",
                    str(scale),
                    "--tee",
                    str(out / "demo-events.jsonl"),
                ],
                env=env,
                start_new_session=True,
            )
            print(
                f"simulating {args.leads} leads over {args.days:g} days at x{scale:g} "
                f"(1 simulated day = {86400 / scale:.1f} s); Ctrl-C to stop",
                flush=True,
            )
            code = asyncio.run(_live(bootstrap, settings, args, plain, external, base, report_url))
        finally:
            _stop(sim, signal.SIGINT, 15)
            _stop(reporter, signal.SIGTERM, 20)
            _stop(worker, signal.SIGTERM, 40)
            if log is not None:
                log.close()
            if worker is not None and worker.returncode not in (0, None, -signal.SIGTERM):
                print(f"worker exited with {worker.returncode}", file=sys.stderr)
    path = replay_report(out, rules_path)
    if path is not None:
        print(f"report.html: {path}")
    return code


async def _live(
    bootstrap: str,
    settings: Any,
    args: argparse.Namespace,
    plain: bool,
    external: bool,
    base: str,
    report_url: str,
) -> int:
    from stream.live_view import watch

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    if external:
        print("external broker: showing records from now on", file=sys.stderr)
    state = await watch(
        bootstrap,
        settings.topic_transitions,
        settings.topic_actions,
        stop=stop,
        header=f"nurture-stream demo  |  {base}/metrics  |  {report_url}",
        plain=plain,
        from_end=external,
    )
    print(state.summary(), flush=True)
    return 0
