"""The worker's batch trace (:mod:`stream.runtime.trace`): one line per batch, written only
when every output of the batch is acknowledged, with the stages in order."""

from __future__ import annotations

import asyncio
import io

import orjson

from stream.runtime.trace import BatchTrace, now


def test_a_batch_line_is_written_when_its_last_output_is_acknowledged() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        out = io.BytesIO()
        trace = BatchTrace(out, "LeadRunner", 3, now())
        trace.processed = now()
        trace.inputs = [(trace.round - 5.0, trace.round - 1.0)]
        trace.actions = 1
        trace.queued = now()
        futures = [loop.create_future(), loop.create_future()]
        trace.on_sent(futures)
        futures[0].set_result(1)
        await asyncio.sleep(0)
        before_last = out.getvalue()
        futures[1].set_result(2)
        await asyncio.sleep(0)
        return before_last, out.getvalue()

    before_last, written = asyncio.run(scenario())
    assert before_last == b""
    doc = orjson.loads(written)
    assert doc["runner"] == "LeadRunner" and doc["p"] == 3 and doc["actions"] == 1
    assert doc["round"] <= doc["take"] <= doc["processed"] <= doc["queued"] <= doc["acked"]
    assert doc["inputs"] == [[doc["round"] - 5.0, doc["round"] - 1.0]]


def test_a_batch_without_outputs_is_written_at_once() -> None:
    out = io.BytesIO()
    trace = BatchTrace(out, "AccountRunner", 0, now())
    trace.queued = now()
    trace.on_sent([])
    doc = orjson.loads(out.getvalue())
    assert doc["acked"] == doc["queued"] and doc["runner"] == "AccountRunner"
