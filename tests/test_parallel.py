"""vaegen_utils.parallel: thread pinning and tasks in worker processes."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from vaegen_utils import parallel


def test_torch_threads_sets_and_restores_and_none_leaves_alone():
    before = torch.get_num_threads()
    with parallel.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with parallel.torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), parallel.torch_threads(1):
        raise RuntimeError("the setting is restored even when the block fails")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        with parallel.torch_threads(0):
            pass


@pytest.mark.parametrize("workers", [1, 2])
def test_run_tasks_returns_every_result_under_its_key_in_order(workers):
    tasks = {"b": partial(pow, 2, 10), "a": partial(divmod, 7, 2), "c": partial(max, [3, 1, 2])}
    lines = []
    results = parallel.run_tasks(tasks, workers=workers, log=lines.append)
    assert list(results) == ["b", "a", "c"]
    assert results == {"b": 1024, "a": (3, 1), "c": 3}
    assert len(lines) == 3 and all("/3]" in line for line in lines)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_task_is_named(workers):
    tasks = {"fine": partial(abs, -1), "broken": partial(int, "not a number")}
    with pytest.raises(RuntimeError, match="task broken failed.*ValueError"):
        parallel.run_tasks(tasks, workers=workers, log=None)


def test_bad_workers_and_tasks_fail_before_anything_runs():
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        parallel.run_tasks({}, workers=0)
    with pytest.raises(TypeError, match="task x is a int, not a callable"):
        parallel.run_tasks({"x": 3}, workers=2)
