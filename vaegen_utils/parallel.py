"""Run independent experiment tasks side by side in worker processes, and pin torch's thread count.

Why: the small MLP VAEs of the papers do not use two cores well. On this project's 2-core machine one
training step of paper A's MLP (1024-512-512-16, batch 100) takes 11.4 ms on two torch threads and
15.7 ms on one, so two single-thread trainings side by side in two processes do 1.5x the work per
second; two trainings of 1000 steps took 26.7 s one after the other and 19.5 s in two workers,
~4 s of it starting them (`parallel_vs_sequential` in benchmarks/bench.py, 2026-11-21).

The thread count also changes the numbers (a matrix product sums in a different order), so a task
that pins its threads with `torch_threads(n)` gives the same numbers in a worker and in the notebook's
own kernel. `run_tasks` does not pin anything itself; the task does.

Workers are started with "spawn" (a forked child of a process that already ran OpenMP code can hang)
and inherit the environment, so they see the same cache folder and data. Every task must be
picklable: a `functools.partial` of a module-level function with plain-data arguments.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Hashable, Iterator, Mapping

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` torch intra-op threads (None: leave the setting alone); restores it."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1 or None (keep the process's setting), got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers() -> int:
    """Worker processes to use by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _start_worker(threads: int) -> None:
    # Same intra-op thread count as the parent, so anything a task computes outside its own
    # `torch_threads` block (e.g. cache-key fingerprints) matches what the parent computes.
    torch.set_num_threads(threads)


def _call(task: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = task()
    return result, time.perf_counter() - start


def run_tasks(
    tasks: Mapping[Hashable, Callable[[], Any]],
    *,
    workers: int,
    describe: Callable[[Hashable], str] = str,
    log: Callable[[str], None] | None = print,
) -> dict:
    """{key: task()} for every task, computed in `workers` processes (1: here, one after the other).

    Tasks run in the order given (put the longest first for the shortest wall time). A failing task
    stops the others and raises a RuntimeError that names it; finished tasks keep whatever they
    cached. `log` gets one line per finished task (None: silent).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1 (processes side by side; 1 runs here), got {workers!r}")
    tasks = dict(tasks)
    for key, task in tasks.items():
        if not callable(task):
            raise TypeError(f"task {describe(key)} is a {type(task).__name__}, not a callable")
    results: dict = {}
    say = log or (lambda line: None)
    if workers == 1 or len(tasks) <= 1:
        for index, (key, task) in enumerate(tasks.items(), 1):
            try:
                results[key], seconds = _call(task)
            except Exception as error:
                raise RuntimeError(f"task {describe(key)} failed: {type(error).__name__}: {error}") from error
            say(f"[{index}/{len(tasks)}] {describe(key)}: {seconds:.0f} s")
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context, initializer=_start_worker,
        initargs=(torch.get_num_threads(),),
    ) as pool:
        pending = {pool.submit(_call, task): key for key, task in tasks.items()}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    key = pending.pop(future)
                    try:
                        results[key], seconds = future.result()
                    except Exception as error:
                        raise RuntimeError(f"task {describe(key)} failed in a worker process: {type(error).__name__}: {error}") from error
                    say(f"[{len(results)}/{len(tasks)}] {describe(key)}: {seconds:.0f} s")
                    sys.stdout.flush()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return {key: results[key] for key in tasks}
