"""`python -m vaegen_utils.cache du | clean`: sizes per paper key and kind, and safe removal."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from vaegen_utils import cache_usage, locks, models, training
from vaegen_utils.cache import RunCache, train_cached
from vaegen_utils.training import TrainConfig

DATA_SHAPE = (1, 8, 8)
CONFIG = TrainConfig(epochs=3, batch_size=32, checkpoint_epochs=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    return torch.bernoulli(torch.full((64, *DATA_SHAPE), 0.3), generator=generator)


def tiny_config() -> models.MLPVAEConfig:
    return models.MLPVAEConfig(data_shape=DATA_SHAPE, latent_dim=2, hidden_sizes=(16,))


def fill_cache(root, images):
    """A finished zhang2022 run, an unfinished xiao2024 run, two bozkurt2021 results, a sample bank."""
    runs = RunCache(root / "runs")
    finished = train_cached(tiny_config(), CONFIG, {"dataset": "s"}, images, cache=runs, name="zhang2022-s-e3")

    def killed(epoch):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        return images

    killed.describe = lambda: "killed-in-epoch-2"
    with pytest.raises(KeyboardInterrupt):
        train_cached(tiny_config(), CONFIG, {"dataset": "s"}, images, data_source=killed, cache=runs, name="xiao2024-s-e3")
    for beta in (0.5, 1.0):
        runs.cached_result("rd", {"kind": "bozkurt2021-rd", "beta": beta}, lambda: {"rate": np.arange(3.0)})
    bank = root / "sample_banks" / "0123456789abcdef-xiao2024-binary_mnist-final"
    bank.mkdir(parents=True)
    (bank / "manifest.json").write_text("{}")
    return runs, finished


FINAL_ONLY = CONFIG.with_changes(checkpoint_epochs=None)


def test_du_reports_sizes_per_paper_key_and_kind(images, tmp_path, capsys):
    fill_cache(tmp_path, images)
    assert cache_usage.main(["--cache-dir", str(tmp_path), "du"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = {tuple(line.split()[:2]): line.split() for line in out[2:] if line.strip()}
    assert next(line for line in out if line.startswith("total")).split()[1:3] == ["5", "4"]  # entries, checkpoints
    assert lines[("zhang2022", "training")][2:5] == ["1", "3", "0"]  # finished: 3 checkpoints, none with state
    assert lines[("xiao2024", "training")][2:5] == ["1", "1", "1"]  # unfinished: its latest keeps the state
    assert lines[("bozkurt2021", "rd")][2:4] == ["2", "0"]
    assert lines[("xiao2024", "sample_bank")][2] == "1"


def test_clean_dry_run_removes_nothing_and_keep_final_keeps_finished_models(images, tmp_path, capsys):
    runs, finished = fill_cache(tmp_path, images)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    cache_usage.main(["--cache-dir", str(tmp_path), "clean", "--keep-final", "--dry-run"])
    out = capsys.readouterr().out
    assert "3 entries removed, 1 reduced to their final checkpoint, 0 skipped; would free" in out
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before

    final_only = train_cached(tiny_config(), FINAL_ONLY, {"dataset": "s"}, images, cache=runs, name="zhang2022-final-only")
    report = cache_usage.clean(tmp_path, keep_final=True)
    assert len(report.removed) == 3 and report.thinned == [finished.run_dir.parent] and report.freed_bytes > 0
    assert training.list_checkpoints(finished.run_dir) == [3]
    assert len(list((tmp_path / "sample_banks").iterdir())) == 1  # banks are kept
    # A run that asked only for its final checkpoint is used as it is ...
    again = train_cached(tiny_config(), FINAL_ONLY, {"dataset": "s"}, images, cache=runs, name="zhang2022-final-only")
    assert again.resumed_from == 3 and same_parameters(again.model, final_only.model)
    # ... one whose config asks for epochs 1 and 2 as well rebuilds them, ending with the same model.
    with pytest.warns(UserWarning, match=r"lacks the checkpoints of epochs \[1, 2\]"):
        rebuilt = train_cached(tiny_config(), CONFIG, {"dataset": "s"}, images, cache=runs, name="zhang2022-s-e3")
    assert training.list_checkpoints(finished.run_dir) == [1, 2, 3]
    assert same_parameters(rebuilt.model, finished.model)


def same_parameters(first, second) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_clean_older_than_and_entries_in_use(images, tmp_path):
    runs, finished = fill_cache(tmp_path, images)
    old = time.time() - 10 * 86400
    for path in finished.run_dir.parent.rglob("*"):
        os.utime(path, (old, old))
    bank = next((tmp_path / "sample_banks").iterdir())
    held, release = threading.Event(), threading.Event()

    def hold_the_bank():
        with locks.file_lock(bank / ".lock"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold_the_bank)
    holder.start()
    try:
        assert held.wait(60)
        report = cache_usage.clean(tmp_path, older_than_days=5)
        assert report.removed == [finished.run_dir.parent]  # the only entry unused for 5 days
        report = cache_usage.clean(tmp_path)
        assert [path for path, _ in report.skipped_in_use] == [bank]  # held by another thread: kept
        assert bank.is_dir() and list((tmp_path / "runs").iterdir()) == []
    finally:
        release.set()
        holder.join()


def test_the_module_runs_from_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vaegen_utils.cache", "--cache-dir", str(tmp_path), "du"],
                            capture_output=True, text=True, check=True)
    assert "paper key" in result.stdout and "total" in result.stdout
