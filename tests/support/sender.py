"""A real SMTP server (aiosmtpd on a loopback port) and the sender as a subprocess.

``SmtpSink`` keeps every message it accepts (nothing deduplicated): ``message_ids()`` lists the
``X-Nurture-Action-Id`` of each, in arrival order, repeats included.
``SenderProcess`` is :class:`~tests.support.worker.WorkerProcess` running ``nurture sender``; its
``/metrics`` (the sender's Prometheus port) serve ``metric_sum``.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.worker import WorkerProcess, _lag, free_port, run


@dataclass(frozen=True)
class Received:
    action_id: str
    message_id: str
    template: str
    to: str
    subject: str
    body: str
    at: float  # wall clock when the server accepted it


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(("plain",))
        self.sink.add(
            Received(
                action_id=str(msg["X-Nurture-Action-Id"]),
                message_id=str(msg["Message-ID"]),
                template=str(msg["X-Nurture-Template"]),
                to=str(msg["To"]),
                subject=str(msg["Subject"]),
                body=body.get_content() if body is not None else "",
                at=time.time(),
            )
        )
        return "250 Message accepted for delivery"


class SmtpSink:
    """An aiosmtpd server in a thread; a context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def add(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def message_ids(self) -> list[str]:
        with self._lock:
            return [r.action_id for r in self.received]

    def counts(self) -> Counter[str]:
        return Counter(self.message_ids())

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.message_ids()) >= count:
                return
            time.sleep(0.05)  # poll interval of a condition with a deadline
        raise TimeoutError(f"{len(self.message_ids())} of {count} mails after {timeout}s")

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class SenderProcess(WorkerProcess):
    """One ``nurture sender`` subprocess (metrics on ``web_port``)."""

    command = "sender"

    def start(self) -> SenderProcess:
        self.extra_env["NURTURE_SENDER_METRICS_PORT"] = str(self.web_port)
        self.extra_env.setdefault("NURTURE_SENDER_DATA_DIR", str(self.data_dir / "sender"))
        super().start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll until the log says the sender is consuming and /metrics answers, or raise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"sender exited early:\n{self.log_tail()}")
            if "sender ready" in self.log_tail(100_000):
                try:
                    self.metric_sum("nurture_sender_held")
                    return
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
            time.sleep(0.1)  # poll interval of a readiness probe with a deadline
        raise TimeoutError(f"sender not ready after {timeout}s:\n{self.log_tail()}")

    def outcome(self, name: str) -> int:
        return int(self.metric_sum(f'nurture_sender_actions_total{{outcome="{name}"}}'))

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


def wait_group_caught_up(
    bootstrap: str,
    group: str,
    topic: str,
    timeout: float = 60.0,
    auth: dict[str, Any] | None = None,
) -> None:
    """Poll until ``group`` has committed every record of ``topic``, or raise."""
    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        lag = int(run(_lag(bootstrap, group, [topic], auth)))
        if lag == 0:
            return
        time.sleep(0.2)  # poll interval of a condition with a deadline
    raise TimeoutError(f"group {group} still {lag} behind on {topic} after {timeout}s")
