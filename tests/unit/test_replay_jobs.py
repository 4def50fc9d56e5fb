"""The task pool of a time-ordered replay (stream.offline.jobs): the same results and errors
in this process and in a pool, and the workers' CPU time counted."""

from __future__ import annotations

import pytest

from stream.offline.jobs import Jobs


@pytest.mark.parametrize("jobs", [1, 2])
def test_tasks_give_their_results_and_errors_in_this_process_and_in_a_pool(jobs: int) -> None:
    with Jobs(jobs) as pool:
        assert pool.parallel == (jobs > 1)
        total = pool.submit(sum, range(3_000_000))
        bad = pool.submit(int, "not a number")
        assert total.result() == 3_000_000 * 2_999_999 // 2
        with pytest.raises(ValueError, match="not a number"):
            bad.result()
        # a task run elsewhere counts in worker_cpu_seconds; one run here in this process's
        assert (pool.worker_cpu_seconds > 0) == (jobs > 1)
        assert pool.cpu_seconds() >= pool.worker_cpu_seconds
