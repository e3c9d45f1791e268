"""Two writers at once: advisory locks (vaegen_utils.locks) and the writers that hold them.

The two-process tests reproduce the races of a shared cache folder: a second process starts while
the first is stalled in the middle of a write (a hook waits on an event), then the first is let go.
Each checks that the second process waited (the lock's "waiting" report, observed through an event)
and that exactly one complete result exists, with nothing lost and no error. Processes are started
with "spawn" (fork after torch's thread pool has started is unsafe); events time out after 120 s so
a broken lock fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from vaegen_utils import io, locks

TIMEOUT = 120.0
SPAWN = multiprocessing.get_context("spawn")


# ------------------------------------------------------------------------------------------
# The lock itself
# ------------------------------------------------------------------------------------------


def test_a_second_holder_waits_and_a_timeout_names_the_holder(tmp_path, monkeypatch):
    path = tmp_path / "entry.lock"
    reports = []
    monkeypatch.setattr(locks, "_report_waiting", lambda lock_path, holder: reports.append(holder))
    with locks.file_lock(path, purpose="test holder"):
        assert locks.holder_of(path)["pid"] == os.getpid()
        outcome = {}

        def other_thread():  # threads of one process exclude each other like processes do
            try:
                with locks.file_lock(path, timeout=0.3):
                    outcome["got"] = True
            except locks.LockTimeout as error:
                outcome["error"] = str(error)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(TIMEOUT)
    assert "got" not in outcome
    assert f"process {os.getpid()} on host {socket.gethostname()}" in outcome["error"]
    assert "test holder" in outcome["error"] and "longer timeout" in outcome["error"]
    assert reports and reports[0]["purpose"] == "test holder"
    with locks.file_lock(path, timeout=0.3):  # released on exit
        pass


def test_the_lock_is_reentrant_in_one_thread_and_released_when_its_process_dies(tmp_path):
    path = tmp_path / "entry.lock"
    with locks.file_lock(path):
        with locks.file_lock(path, timeout=0.1):  # the same thread again: no deadlock
            pass
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vaegen_utils import locks\n"
         "with locks.file_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.LockTimeout):
            with locks.file_lock(path, timeout=0.2):
                pass
        holder.kill()  # as with kill -9 or a crash: no cleanup code runs
        holder.wait()
        with locks.file_lock(path, timeout=TIMEOUT):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_key_locks_are_one_file_per_key(tmp_path):
    first = locks.lock_file_for_key(tmp_path, "train/binary mnist: seed 0")
    assert first == locks.lock_file_for_key(tmp_path, "train/binary mnist: seed 0")
    assert first != locks.lock_file_for_key(tmp_path, "train/binary mnist: seed 1")
    assert first.parent == tmp_path and first.name.startswith("train-binary-mnist--seed-0-")
    with locks.key_lock(tmp_path, "a"), locks.key_lock(tmp_path, "b", timeout=0.1):
        pass


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = io.temporary_prefix("weights.pt")
        names = {
            "live": mine.replace(f".w{os.getpid()}@", f".w{live.pid}@") + "abc",
            "dead": mine.replace(f".w{os.getpid()}@", f".w{dead.pid}@") + "abc",
            "untagged": ".tmp-weights.pt.abc",
            "other_host": f".tmp-weights.pt.w{dead.pid}@another-host.abc",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        assert io.temporary_writer(tmp_path / names["live"]) == (live.pid, mine.split("@")[1].rstrip("."))
        removed = {path.name for path in io.remove_stale_temporaries(tmp_path)}
        assert removed == {names["dead"]}
        removed = {path.name for path in io.remove_stale_temporaries(tmp_path, holding_lock=True)}
        assert removed == {names["untagged"], names["other_host"]}  # a live writer's file stays, always
        assert (tmp_path / names["live"]).is_file()
    finally:
        live.kill()
        live.wait()


# ------------------------------------------------------------------------------------------
# Two processes, one training run folder (issue: a "complete" checkpoint without its model)
# ------------------------------------------------------------------------------------------


def _tiny_training_setup():
    from vaegen_utils import models
    from vaegen_utils.training import TrainConfig

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(3)
    images = torch.bernoulli(torch.full((64, 1, 8, 8), 0.3), generator=generator)
    config = models.MLPVAEConfig(data_shape=(1, 8, 8), latent_dim=2, hidden_sizes=(16,))
    return models.build_model(config, seed=0), images, TrainConfig(epochs=2, batch_size=32, checkpoint_epochs=1)


def _stall_first_checkpoint(in_staging, release):
    """Patch: the first checkpoint write stops after its files are written, before its marker."""
    from vaegen_utils import checkpoints

    real = checkpoints._file_hashes
    calls = []

    def stalled(staging):
        if not calls:
            calls.append(staging)
            in_staging.set()
            assert release.wait(TIMEOUT), "the test never released the stalled writer"
        return real(staging)

    checkpoints._file_hashes = stalled


def _report_waits_to(event):
    real = locks._report_waiting

    def report(path, holder):
        event.set()
        real(path, holder)

    locks._report_waiting = report


def _train_worker(run_dir, role, events, results):
    from vaegen_utils import training

    in_staging, release, second_waiting = events
    if role == "first":
        _stall_first_checkpoint(in_staging, release)
    else:
        _report_waits_to(second_waiting)
    model, images, config = _tiny_training_setup()
    result = training.train(model, images, config, run_dir=run_dir)
    results.put((role, result.resumed_from, training.weights_sha256(result.model)))


def _run_pair(worker, args_first, args_second):
    """Start the first worker, wait until it stalls, start the second, wait until it waits, release."""
    in_staging, release, second_waiting = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    results = SPAWN.Queue()
    events = (in_staging, release, second_waiting)
    first = SPAWN.Process(target=worker, args=(*args_first, "first", events, results))
    second = SPAWN.Process(target=worker, args=(*args_second, "second", events, results))
    first.start()
    try:
        assert in_staging.wait(TIMEOUT), "the first writer never reached its stall point"
        second.start()
        assert second_waiting.wait(TIMEOUT), "the second writer did not wait for the first one's lock"
        release.set()
        outcome = dict((role, rest) for role, *rest in (results.get(timeout=TIMEOUT) for _ in range(2)))
        first.join(TIMEOUT)
        second.join(TIMEOUT)
    finally:
        release.set()
        for process in (first, second):
            if process.is_alive():
                process.kill()
    assert first.exitcode == 0 and second.exitcode == 0
    return outcome


def test_two_trainers_on_one_run_folder_give_one_complete_run(tmp_path):
    from vaegen_utils import training

    run_dir = tmp_path / "run"
    outcome = _run_pair(_train_worker, (run_dir,), (run_dir,))
    assert outcome["first"][0] is None  # trained
    assert outcome["second"][0] == 2  # waited, then found the finished run: no second training
    assert outcome["first"][1] == outcome["second"][1]
    assert training.list_checkpoints(run_dir) == [1, 2]
    for epoch in (1, 2):  # every checkpoint complete, with its model, and passing its hashes
        assert training.weights_sha256(training.load_checkpoint(run_dir, epoch))
    assert training.weights_sha256(training.load_checkpoint(run_dir)) == outcome["first"][1]
    assert not [path for path in (run_dir / "checkpoints").iterdir() if path.name.startswith(".tmp-")]


# ------------------------------------------------------------------------------------------
# Two processes, one cached result (issue: a marker of one writer over the other's file)
# ------------------------------------------------------------------------------------------


def _result_worker(root, role, events, results):
    from vaegen_utils.cache import RunCache

    in_compute, release, second_waiting = events
    if role == "second":
        _report_waits_to(second_waiting)

    def compute():
        if role == "first":
            in_compute.set()
            assert release.wait(TIMEOUT)
        return {"who": role, "values": np.arange(5.0), "nan": float("nan")}

    value = RunCache(root).cached_result("metric", {"k": 1}, compute)
    results.put((role, value["who"], value["values"].tolist()))


def test_two_processes_computing_one_cached_result_compute_it_once(tmp_path):
    from vaegen_utils.cache import RunCache

    outcome = _run_pair(_result_worker, (tmp_path,), (tmp_path,))
    assert outcome["first"] == ["first", [0.0, 1.0, 2.0, 3.0, 4.0]]
    assert outcome["second"] == ["first", [0.0, 1.0, 2.0, 3.0, 4.0]]  # waited and read the first's value
    results = RunCache(tmp_path).find({"k": 1}) / "results"
    marker = json.loads((results / "metric.complete").read_text())
    stored = [path.name for path in results.iterdir() if path.suffix in (".npz", ".json", ".pt")]
    assert stored == [marker["file"]]  # one value file, the one the marker names, with its hash
    assert io_sha256(results / marker["file"]) == marker["sha256"]


def io_sha256(path):
    from vaegen_utils.checks import file_sha256

    return file_sha256(path)


# ------------------------------------------------------------------------------------------
# Two processes, one sample bank (issue: a deleted temp file, a stale manifest, an overwritten chunk)
# ------------------------------------------------------------------------------------------

BANK = dict(steps=2, seed=0, batch_size=4, chunk_size=8)


def _fake_sampler(calls, stall=None):
    """diffusion.sample replaced by seeded noise (image i from seed i): fast, deterministic per image."""
    from vaegen_utils import diffusion

    def fake_sample(model, count, *, start_index, **options):
        calls.append((start_index, count))
        if stall is not None and start_index == stall[0]:
            stall[1].set()
            assert stall[2].wait(TIMEOUT)
        shape = model.config.data_shape
        rows = [torch.rand(shape, generator=torch.Generator().manual_seed(start_index + i)) for i in range(count)]
        return torch.stack(rows)

    diffusion.sample = fake_sample


def _bank_worker(root, num_samples, role, events, results):
    from vaegen_utils import diffusion

    torch.set_num_threads(1)
    in_chunk, release, second_waiting = events
    calls = []
    if role == "first":
        _fake_sampler(calls, stall=(BANK["chunk_size"], in_chunk, release))  # stalls in its second chunk
    else:
        _fake_sampler(calls)
        _report_waits_to(second_waiting)
    model = diffusion.build_diffusion_model(diffusion.tiny_config(), seed=0)
    bank = diffusion.generate_bank(model, num_samples, root=root, **BANK)
    results.put((role, len(bank), calls, bank.uint8(0, len(bank)).sum().item()))


def test_two_processes_generating_one_bank_lose_nothing(tmp_path):
    from vaegen_utils import diffusion
    from vaegen_utils.checked_arrays import read_checked_npz

    outcome = _run_pair(_bank_worker, (tmp_path, 24), (tmp_path, 12))  # the second asks for a smaller bank
    size, calls, _ = outcome["first"]
    assert size == 24 and calls == [(0, 8), (8, 8), (16, 8)]
    size, calls, checksum = outcome["second"]
    assert size == 24 and calls == []  # it waited, then found every chunk it needs: nothing regenerated
    assert checksum == outcome["first"][2]
    folder = next(tmp_path.iterdir())
    manifest = json.loads((folder / diffusion.MANIFEST_FILE).read_text())
    assert manifest["num_samples"] == 24 and [entry["count"] for entry in manifest["chunks"]] == [8, 8, 8]
    for entry in manifest["chunks"]:
        settings = {"bank_key": manifest["key"], "index": entry["index"], "count": entry["count"]}
        assert read_checked_npz(folder / entry["file"], ["images"], settings) is not None
    assert not [path for path in folder.iterdir() if path.name.startswith(".tmp-")]


def test_a_grown_bank_keeps_the_smaller_chunk_that_readers_of_the_old_manifest_use(tmp_path, monkeypatch):
    from vaegen_utils import diffusion

    calls = []
    monkeypatch.setattr(diffusion, "sample", None)
    _fake_sampler(calls)  # sets diffusion.sample (undone by monkeypatch)
    model = diffusion.build_diffusion_model(diffusion.tiny_config(), seed=0)
    small = diffusion.generate_bank(model, 12, root=tmp_path, **BANK)  # chunk 1 holds 4 images
    before = small.uint8(0, 12).clone()
    grown = diffusion.generate_bank(model, 16, root=tmp_path, **BANK)  # chunk 1 regenerated with 8
    assert calls == [(0, 8), (8, 4), (8, 8)]
    assert len(grown) == 16 and torch.equal(grown.uint8(0, 12), before)
    small._chunks.clear()  # a reader that opened the bank before it grew still reads its own chunk
    assert torch.equal(small.uint8(0, 12), before)
