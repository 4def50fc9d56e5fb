"""Faust's consumer with a cheaper drain for the worker's own topics.

``faust.transport.consumer.Consumer._drain_messages`` hands every fetched message to the
conductor through ``await self.wait_first(callback(message), self.suspend_flow.wait())``: two
tasks and an ``asyncio.wait`` per message, plus the conductor's flow-control and
producer-buffer awaits. Measured here that drain, not the worker, bounded a backlog read to a
few hundred messages/s on a loaded 2-core machine, and starved the event-time merge (a topic
with unread data was fetched but not delivered for over a second).

:class:`DrainConsumer` keeps Faust's loop (``getmany``, read offsets, gaps, commit cadence,
flow control) and only changes the delivery: a message of a topic registered with
:meth:`DrainConsumer.register_fast_path` goes straight to that callback (synchronous, no task
per message); any other topic takes Faust's path. The worker's app class
(:class:`NurtureApp`, ``app.fast_path``) installs this consumer through its transport; nothing
else of Faust changes (group membership, assignment, recovery, standbys, commits).

A message is never delivered to the fast path after the consumer's flow was stopped since it
was fetched (a rebalance began: Faust's ``_on_partitions_revoked`` calls ``stop_flow`` first).
Faust's own drain cancels the delivery when flow stops (``wait_first(callback(message),
suspend_flow.wait())``); the first version of this drain waited for flow control to resume
and then delivered the old message into the buffers of the new assignment, ahead of the
committed offset Faust had just sought to, and moved the read offset past the messages before
it (which it then skipped as already read). Such a message is dropped instead, with the rest of
its fetch: the rebalance ends with a seek to the committed offsets, so it is fetched again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

FastDeliver = Callable[[Any, Callable[[], None], Callable[[], None]], None]


class DrainConsumer(faust_aiokafka.Consumer):
    """The aiokafka consumer of Faust with a direct delivery path for the topics in the app's
    ``fast_path`` (``topic -> deliver(message, on_pressure_high, on_pressure_drop)``)."""

    yield_every = 1000  # messages between two ``sleep(0)`` of the drain loop
    flow_stops = 0  # how many times the flow was stopped (a rebalance began, or shutdown)
    stale_dropped = 0  # messages fetched before a flow stop and so not delivered
    # partition -> last offset delivered while perform_seek runs (None when no seek runs)
    _delivered_in_seek: dict[Any, int] | None = None

    def stop_flow(self) -> None:
        self.flow_stops += 1
        super().stop_flow()

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, keeping the read offset of every partition
        the drain delivered from while the seek ran.

        Faust's ``perform_seek`` awaits ``seek_to_committed`` (one committed-offset fetch per
        partition) and only then sets every read offset back to the committed one. At a
        worker's first assignment the flow is already active, so the drain delivers messages
        of partitions sought earlier in that await. Set back, the next message of such a
        partition looked like a jump, and Faust recorded a gap over messages that had been
        delivered but not processed: it counted them as acked (a commit could pass inputs still
        buffered in the event-time merge, which a SIGKILL then lost) and listed them twice once
        the runner acked them for real, so its commits advanced about one offset per commit
        interval (the restarted worker of the account crash test "never committed").
        """
        delivered: dict[Any, int] = {}
        self._delivered_in_seek = delivered
        try:
            await super().perform_seek()
        finally:
            self._delivered_in_seek = None
        for tp, offset in delivered.items():
            self._read_offset[TP(tp.topic, tp.partition)] = offset

    def _drop_stale(self, tp: Any, offset: int) -> None:
        self.stale_dropped += 1
        self.log.info(
            "not delivering %s:%s at %d and the rest of its fetch: fetched before a rebalance",
            tp.topic,
            tp.partition,
            offset,
        )

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Any, self)._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        fast: dict[str, FastDeliver] = dict(getattr(self.app, "fast_path", {}))
        pressure: dict[Any, tuple[Callable[[], None], Callable[[], None]]] = {}
        sleep = asyncio.sleep
        yield_every = self.yield_every
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in ait:
                    # getmany yields only while the flow is active, in the current generation;
                    # no await since then
                    stops_at_fetch = self.flow_stops
                    since_yield += 1
                    if since_yield > yield_every:
                        await sleep(0)
                        since_yield = 0
                    commit_every = self._commit_every
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    deliver = fast.get(message.topic)
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # already read (Faust drops these too)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        if deliver is not None and (
                            self.flow_stops != stops_at_fetch or not self.flow_active
                        ):
                            self._drop_stale(tp, offset)
                            break  # no gap recorded for a message of an older assignment
                        await self._add_gap(tp, r_offset + 1, offset)
                    if deliver is None:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        # the flow was stopped since the fetch (a rebalance began; it may even
                        # be over: a whole rebalance can pass while this loop awaits): the
                        # message belongs to an older assignment, it is sought and fetched again
                        if self.flow_stops != stops_at_fetch or not self.flow_active:
                            self._drop_stale(tp, offset)
                            break
                        hooks = pressure.get(tp)
                        if hooks is None:
                            hooks = pressure[tp] = self._pressure_hooks(tp)
                        deliver(message, hooks[0], hooks[1])
                    set_read_offset(tp, offset)
                    in_seek = self._delivered_in_seek
                    if in_seek is not None:
                        in_seek[tp] = offset
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    def _pressure_hooks(self, tp: Any) -> tuple[Callable[[], None], Callable[[], None]]:
        # getmany may yield aiokafka's TopicPartition; Faust's active-partition set asserts that
        # it holds only faust TP instances (seen as an AssertionError in _get_active_partitions
        # once a 108k-message backlog first paused a partition). Same fields, same hash.
        ftp = TP(tp.topic, tp.partition)
        return (lambda: self.on_buffer_full(ftp), lambda: self.on_buffer_drop(ftp))

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the app's fetch wait instead of Faust's fixed 1,500 ms.

    aiokafka keeps one fetch request in flight per broker, and leaves out of it the partitions
    whose fetched records are not consumed yet. A partition the worker drains while a long poll
    for the others is out is fetched again only when that poll returns: at a low input rate,
    after up to the whole fetch wait (event-to-action latency of a second and more).

    The app's fetch minimum as well: with aiokafka's 1 byte the broker answers a fetch at the
    first message, so live input at a few thousand messages/s costs about one fetch request
    and response over every assigned partition per few messages."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read by the Fetcher made at start()
        min_bytes = getattr(self.app, "fetch_min_bytes", None)
        if min_bytes is not None:
            consumer._fetch_min_bytes = int(min_bytes)  # likewise
        return consumer


class DrainTransport(faust_aiokafka.Transport):
    Consumer = DrainConsumer


class NurtureApp(faust.App):
    """The worker's Faust app: Faust's aiokafka transport with :class:`DrainConsumer`."""

    fast_path: dict[str, FastDeliver]
    fetch_max_wait_ms: int | None = None  # None: Faust's 1,500 ms
    fetch_min_bytes: int | None = None  # None: aiokafka's 1 byte

    def _new_transport(self) -> Any:
        return DrainTransport(self.conf.broker_consumer, self)
