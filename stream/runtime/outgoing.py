"""What a batch sends, as one list for one send (:class:`stream.runtime.sender.Sender`): the
changelog records of the leads it wrote, its transitions and actions, the account copies of its
inputs (:mod:`stream.runtime.accounts`), and dead letters for the inputs that failed validation
or processing. The partition's progress is noted for the round's progress markers to the account
topic (:class:`stream.runtime.account_merge.Progress`), sent after the round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from stream.runtime.accounts import account_forward
from topics.parse import InvalidEvent, dead_letter_record

if TYPE_CHECKING:
    from stream.runtime.account_merge import Progress
    from stream.runtime.batch import BatchResult
    from stream.runtime.merge import Slot
    from stream.runtime.sender import Record
    from stream.settings import Settings

log = logging.getLogger("nurture.worker")

MAX_DEAD_LETTER_BYTES = 900_000  # stay under the broker's default 1 MB message limit


def fit_dead_letter(record: bytes) -> bytes:
    """Keep a dead-letter record under the message size limit: drop the text copy first, then
    truncate the base64 original (flagged ``original_truncated``)."""
    if len(record) <= MAX_DEAD_LETTER_BYTES:
        return record
    doc = orjson.loads(record)
    doc["original_text"] = None
    encoded = orjson.dumps(doc)
    if len(encoded) > MAX_DEAD_LETTER_BYTES:
        doc["original"] = doc["original"][: MAX_DEAD_LETTER_BYTES // 2]
        doc["original_truncated"] = True
        encoded = orjson.dumps(doc)
    return encoded


def dead_letter(message: Any, error: InvalidEvent, topic: str) -> Record:
    """The dead-letter record of an input message (the original bytes and where they came
    from, with the reason)."""
    record = dead_letter_record(
        message.value or b"",
        message.key,
        error.reason,
        error.detail,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
    return (topic, None, message.key, fit_dead_letter(record))


@dataclass(slots=True)
class Outgoing:
    records: list[Record] = field(default_factory=list)
    forwarded: int = 0  # account copies among the records
    dead_letters: list[str] = field(default_factory=list)  # the reason of each dead letter


def batch_records(
    p: int,
    result: BatchResult,
    slots: list[Slot],
    settings: Settings,
    changelog_topic: str,
    account_topic: str | None,
    progress: Progress | None,
) -> Outgoing:
    """Everything partition ``p``'s batch sends, changelog records first."""
    out = Outgoing()
    records = out.records
    if result.writes:
        records += [(changelog_topic, p, k, v) for k, v in result.writes.items()]
    records += [(settings.topic_transitions, None, k, v) for k, v in result.transitions]
    records += [(settings.topic_actions, None, k, v) for k, v in result.actions]
    json_forwards = settings.account_forward_format == "json"
    for slot in slots:
        parsed = slot.item
        if parsed.error is not None:
            records.append(dead_letter(parsed.message, parsed.error, settings.topic_dead_letter))
            out.dead_letters.append(parsed.error.reason)
        elif account_topic is not None:  # the account's copy (every time: exactly-once
            # on the account side is by origin offset, see runtime.accounts)
            forward = account_forward(account_topic, parsed.message, parsed.event, json_forwards)
            if forward is not None:
                records.append(forward)
                out.forwarded += 1
    if progress is not None:  # sent after the round, behind every partition's forwards
        progress.note(p, result.stream_time)
    if result.failed:
        by_input = {(x.item.message.topic, x.offset): x.item.message for x in slots}
        for inp, detail in result.failed:
            log.error("processing %s:%s:%s failed: %s", inp.topic, p, inp.offset, detail)
            message = by_input[(inp.topic, inp.offset)]
            records.append(
                dead_letter(
                    message, InvalidEvent("processing_error", detail), settings.topic_dead_letter
                )
            )
            out.dead_letters.append("processing_error")
    return out
