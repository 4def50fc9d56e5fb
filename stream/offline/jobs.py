"""Where the work of a time-ordered replay runs: this process, or a pool of fresh processes.

Every phase of :func:`stream.offline.replay.replay_file` in time order (the scan of the parts of
the file, the buckets, the merge of their outputs and the report) is a set of independent tasks
submitted to one :class:`Jobs`. With ``jobs=1`` each task runs at once in this process; with
more, on ``jobs`` processes started once for the whole run (``spawn``: a fresh interpreter, not
a copy of this process's memory), each with the bulk collector settings of
:mod:`stream.commands.heap`. The tasks and their results are the same either way, which is why
the outputs do not depend on ``jobs``.
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from stream.commands.heap import tune_gc

T = TypeVar("T")


#: the modules of the tasks of a replay (each pool process imports them when it starts)
TASK_MODULES = (
    "stream.offline.parts",
    "stream.offline.shards",
    "stream.offline.merge",
    "stream.core.engine",
    "stream.accounts.driver",
    "stream.report.pipeline",
    "stream.report.postsale",
)


def _start_worker() -> None:
    """A pool process's start: the task modules imported, then the collector tuned (which
    freezes what the imports allocated)."""
    for name in TASK_MODULES:
        importlib.import_module(name)
    tune_gc()


def _timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    began = time.process_time()
    result = fn(*args)
    return result, time.process_time() - began


class Jobs:
    """``submit(fn, *args)`` -> a :class:`Future`; a context manager that shuts the pool down.

    ``worker_cpu_seconds``: the CPU time of the tasks that ran in other processes (those run
    here count in this process's own CPU time)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self.worker_cpu_seconds = 0.0
        self._pool: Executor | None = None
        if self.jobs > 1:
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_start_worker)
            # a pool starts a process per submit while none is idle: every process starts
            # now, and imports what the tasks use while this process reads (and decompresses)
            # the head of the file, instead of when the first tasks arrive
            for _ in range(self.jobs):
                pool.submit(int)
            self._pool = pool

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        if self._pool is not None:
            self._pool.submit(_timed, fn, *args).add_done_callback(
                lambda done: self._hand_on(done, future)
            )
            return future
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # handed to the caller by future.result(), as a pool does
            future.set_exception(exc)
        return future

    def _hand_on(self, done: Future[tuple[T, float]], future: Future[T]) -> None:
        if done.cancelled():
            future.cancel()
            return
        exc = done.exception()
        if exc is not None:
            future.set_exception(exc)
            return
        result, cpu = done.result()
        self.worker_cpu_seconds += cpu
        future.set_result(result)

    def cpu_seconds(self) -> float:
        """This process's CPU time and that of the tasks run elsewhere so far."""
        return time.process_time() + self.worker_cpu_seconds

    def __enter__(self) -> Jobs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc is not None)
