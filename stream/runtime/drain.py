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

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Any, self)._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        flow_control = self.app.flow_control
        fast: dict[str, FastDeliver] = dict(getattr(self.app, "fast_path", {}))
        pressure: dict[Any, tuple[Callable[[], None], Callable[[], None]]] = {}
        sleep = asyncio.sleep
        yield_every = 1000
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in ait:
                    since_yield += 1
                    if since_yield > yield_every:
                        await sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # already read (Faust drops these too)
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    commit_every = self._commit_every
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    deliver = fast.get(message.topic)
                    if deliver is None:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        if not flow_control.is_active():
                            await flow_control.acquire()
                        hooks = pressure.get(tp)
                        if hooks is None:
                            hooks = pressure[tp] = self._pressure_hooks(tp)
                        deliver(message, hooks[0], hooks[1])
                    set_read_offset(tp, offset)
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


class DrainTransport(faust_aiokafka.Transport):
    Consumer = DrainConsumer


class NurtureApp(faust.App):
    """The worker's Faust app: Faust's aiokafka transport with :class:`DrainConsumer`."""

    fast_path: dict[str, FastDeliver]

    def _new_transport(self) -> Any:
        return DrainTransport(self.conf.broker_consumer, self)
