"""Input that reached its partition after later input (not in event time): its lead's timers
may have fired before it, unlike replay. The event-time merge gave up waiting, or the input was
not on the broker yet when the later one was read.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from stream.core.model import ms_to_rfc3339

if TYPE_CHECKING:
    from stream.runtime.batch import BatchResult
    from stream.runtime.counters import RuntimeCounters

log = logging.getLogger("nurture.worker")

LATE_LOG_EVERY_S = 5.0  # at most one late-input warning per runner in this many seconds


class LateLog:
    """Counts late input always (``count``, ``nurture_runtime_late_inputs_total``) and logs it at
    most once per :data:`LATE_LOG_EVERY_S` (a warning per batch was 4% of the worker's samples
    under live input with frequent cross-topic races), with the count since the last warning."""

    def __init__(self, counters: RuntimeCounters | None) -> None:
        self.counters = counters
        self.count = 0
        self.logged_at = -LATE_LOG_EVERY_S  # monotonic time of the last warning
        self.unlogged = 0  # late inputs since that warning, not in a warning yet

    def note(self, p: int, result: BatchResult) -> None:
        self.count += result.late
        if self.counters is not None:
            self.counters.late_inputs.inc(result.late)
        self.unlogged += result.late
        now = time.monotonic()
        if now - self.logged_at < LATE_LOG_EVERY_S:
            return
        assert result.late_first is not None
        topic, offset, at, stream_time = result.late_first
        log.warning(
            "partition %d: %d late input(s) in a batch (%d since the last such warning), "
            "first %s@%d at %s behind stream time %s",
            p,
            result.late,
            self.unlogged,
            topic,
            offset,
            ms_to_rfc3339(at),
            ms_to_rfc3339(stream_time),
        )
        self.logged_at = now
        self.unlogged = 0
