"""``nurture simulate``: synthetic traffic (:mod:`stream.offline.simulate`) to a file or Kafka.

Kafka mode: each line is produced keyed by its lead_id to the input topic of its event type's
source (product / email / crm topic names from :class:`stream.settings.Settings`), at most
``--rate`` messages per second. ``start`` is the wall clock at launch and simulated offsets are
divided by ``--time-scale``, so a message's ``occurred_at`` is the wall time at which it is due to
be sent; when the rate limit holds a message back it is sent late (occurred_at in the recent past),
as a real producer would. ``--tee FILE`` also writes every line sent, in send order, so the same
input can be replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stream.offline.personas import DEFAULT_LIFT, NurtureEffect
from stream.offline.simulate import SimEvent, generate, write_file


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="generate synthetic nurture events (to a file or to Kafka)"
    )
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--customers", type=int, default=0, help="customer accounts (post-sale personas) to add"
    )
    parser.add_argument("--start", default=None, help="RFC 3339 start (file mode; default fixed)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="JSON Lines file (.gz for gzip)")
    target.add_argument("--kafka", metavar="BOOTSTRAP", help="produce to Kafka at host:port")
    parser.add_argument("--rate", type=float, default=500.0, help="Kafka: max events per second")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="Kafka: simulated seconds per wall second (default: fits the run into 10 minutes)",
    )
    parser.add_argument("--tee", type=Path, default=None, help="Kafka: also write lines sent")
    parser.add_argument(
        "--effect",
        action="append",
        default=[],
        metavar="PROGRAM=LIFT|TEMPLATE=LIFT",
        help="nurture effect on the chance of an opportunity for nurtured (not holdout) leads, "
        "relative (0.5 = +50%%); repeat per program; default +15%% in mql, trial and "
        "re-engagement nurture; or for the leads sent an email template (none by default)",
    )
    parser.set_defaults(func=run)


def parse_effect(items: list[str]) -> NurtureEffect:
    """``["trial_nurture=1.5", "trial_nurture.week_one=0.8", ...]`` over the defaults: a
    program's effect, or an email template's (a name from the rules); a bad item names itself."""
    from stream.core.config import load_config
    from stream.sender.templates import template_names
    from topics.outputs import PROGRAMS

    lift = dict(DEFAULT_LIFT)
    templates: dict[str, float] = {}
    names: tuple[str, ...] | None = None
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if sep and number > -1 and name in PROGRAMS:
            lift[name] = number
            continue
        if names is None:
            names = template_names(load_config(None))
        if sep and number > -1 and name in names:
            templates[name] = number
            continue
        raise SystemExit(
            f"--effect {item!r}: expected PROGRAM=LIFT or TEMPLATE=LIFT with PROGRAM one of "
            f"{', '.join(PROGRAMS)}, TEMPLATE an email template of the rules (such as "
            "trial_nurture.week_one) and LIFT a number above -1 (0.5 = +50%)"
        )
    return NurtureEffect(lift=lift, templates=templates)


def run(args: argparse.Namespace) -> int:
    from stream.core.model import rfc3339_to_ms

    effect = parse_effect(args.effect)
    if args.out is not None:
        start = rfc3339_to_ms(args.start) if args.start else None
        events = generate(
            args.leads, args.days, args.seed, start=start, customers=args.customers, effect=effect
        )
        count = write_file(args.out, events)
        print(f"wrote {count} lines for {args.leads} leads to {args.out}", file=sys.stderr)
        return 0
    scale = args.time_scale or max(1.0, args.days * 86400 / 600)
    start = int(time.time() * 1000)
    events = generate(
        args.leads,
        args.days,
        args.seed,
        start=start,
        time_scale=scale,
        customers=args.customers,
        effect=effect,
    )
    try:
        sent = asyncio.run(produce(events, args.kafka, rate=args.rate, tee=args.tee))
    except KeyboardInterrupt:  # the demo stops the simulator with SIGINT; the tee is closed
        print("simulator stopped", file=sys.stderr)
        return 0
    print(f"sent {sent} messages to {args.kafka}", file=sys.stderr)
    return 0


def topic_for(source: str, settings: Any) -> str:
    topics: dict[str, str] = {
        "product": settings.topic_product_events,
        "email": settings.topic_email_events,
        "crm": settings.topic_crm_events,
    }
    return topics[source]


async def produce(
    events: Iterator[SimEvent],
    bootstrap: str,
    *,
    rate: float,
    tee: Path | None = None,
    paced: bool = True,
) -> int:
    """Produce ``events`` keyed by lead_id; waits for each event's delivery time when ``paced``
    and never exceeds ``rate`` messages/s. Returns the number of messages sent."""
    from aiokafka import AIOKafkaProducer

    from stream.settings import load_settings
    from stream.topics_admin import check_access_async

    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    await check_access_async(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **settings.kafka_auth()
    )
    await producer.start()
    tee_fh = open(tee, "wb") if tee is not None else None  # noqa: SIM115
    sent = 0
    interval = 1.0 / rate if rate > 0 else 0.0
    next_slot = time.monotonic()
    try:
        for ev in events:
            if paced:
                delay = ev.deliver_at / 1000 - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if interval:
                now = time.monotonic()
                if next_slot > now:
                    await asyncio.sleep(next_slot - now)
                next_slot = max(next_slot, now) + interval
            await producer.send(topic_for(ev.source, settings), ev.line, key=ev.lead_id.encode())
            if tee_fh is not None:
                tee_fh.write(ev.line + b"\n")
                if sent % 100 == 0:
                    tee_fh.flush()
            sent += 1
        await producer.flush()
    finally:
        if tee_fh is not None:
            tee_fh.close()
        await producer.stop()
    return sent
