"""Shared test settings.

Unit tests use small tensors: they gain nothing from threads, and on a busy 2-core machine
OpenMP spin-waits can make each step ~100x slower. Every test module therefore runs with one torch
thread (restored afterwards). Notebooks run in their own kernels and are unaffected.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
