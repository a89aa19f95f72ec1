"""Local workers: how threads and GPUs are shared out, and what their exit codes mean."""

from __future__ import annotations

import pytest

from tunecli.engine.cluster import workers
from tunecli.errors import SpecError

COUNTS = {"finished": 4}


def test_plan_shares_gpus_and_threads() -> None:
    envs = workers.plan(None, "0,1", 2)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "0", "1", "1"]
    assert all(e["TUNECLI_WORKERS_HERE"] == "4" for e in envs)
    assert "CUDA_VISIBLE_DEVICES" not in workers.plan(3, None, 1)[0]


def test_plan_refuses_a_bad_device_list() -> None:
    with pytest.raises(SpecError, match="--devices"):
        workers.plan(None, "0,gpu1", 1)


@pytest.mark.parametrize(("codes", "counts", "budget", "early", "failed", "words"), [
    ([0, 0], {"finished": 4}, 4, False, False, ""),
    ([0, -9], {"finished": 4}, 4, False, False, "worker 2 was killed by SIGKILL"),
    ([0, -9], {"finished": 3}, 4, False, True, "3 of 4 trials finished"),
    ([0, 0], {"finished": 3}, 4, True, False, ""),      # a timeout or an exhausted grid
    ([0, 2], {"finished": 0}, 4, True, True, "worker 2 exited with code 2"),
])
def test_problem_reads_each_exit_code(codes, counts, budget, early, failed, words) -> None:
    message, is_failure = workers.problem(codes, counts, budget, early)
    assert is_failure == failed
    assert words in message and (message == "") == (words == "")
