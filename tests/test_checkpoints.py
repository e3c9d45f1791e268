"""Checkpoints that cannot change silently, stay small, and give errors whose advice works.

- every file of a checkpoint is hashed into its marker; a flipped byte anywhere refuses resume and
  load, naming the folder to delete, and deleting it recovers the same final model;
- only the latest checkpoint of an unfinished run keeps the optimizer / RNG state; a finished run
  keeps weights and history only, and resuming still reproduces an uninterrupted run bit for bit;
- a missing or truncated history.json names the file and a fix that works;
- nothing in a checkpoint is unpickled with code: a crafted training_state.pt does not run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vaegen_utils import io, models, training
from vaegen_utils.training import TrainConfig, train

DATA_SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return torch.bernoulli(torch.full((96, *DATA_SHAPE), 0.3), generator=generator)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    config = models.MLPVAEConfig(data_shape=DATA_SHAPE, latent_dim=2, hidden_sizes=(16,))
    return models.build_model(config, seed=seed)


def same_parameters(first, second) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


class Killed(Exception):
    pass


def crash_in(epoch_to_crash: int, images: torch.Tensor):
    def source(epoch):
        if epoch == epoch_to_crash:
            raise Killed(f"killed in epoch {epoch}")
        return images

    source.describe = lambda: "same-images"
    return source


CONFIG = TrainConfig(epochs=4, batch_size=32, checkpoint_epochs=[1, 2, 3], eval_epochs=[2, 4])


def interrupted_run(run_dir: Path, images: torch.Tensor, crash_epoch: int = 4) -> None:
    """A run of CONFIG killed during `crash_epoch` (checkpoints up to crash_epoch - 1 exist)."""
    with pytest.raises(Killed):
        train(tiny_model(), images, CONFIG, run_dir=run_dir, data_source=crash_in(crash_epoch, images),
              eval_sets={"test": images[:32]})


def finish(run_dir: Path, images: torch.Tensor) -> training.TrainResult:
    return train(tiny_model(), images, CONFIG, run_dir=run_dir, data_source=crash_in(-1, images),
                 eval_sets={"test": images[:32]})


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def straight(images, tmp_path_factory) -> training.TrainResult:
    return finish(tmp_path_factory.mktemp("straight") / "run", images)


# ------------------------------------------------------------------------------------------
# What a checkpoint keeps
# ------------------------------------------------------------------------------------------


def test_only_the_latest_checkpoint_of_an_unfinished_run_keeps_the_training_state(images, tmp_path, straight):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir, images)
    with_state = [epoch for epoch in training.list_checkpoints(run_dir)
                  if (training.checkpoint_folder(run_dir, epoch) / training.STATE_FILE).exists()]
    assert training.list_checkpoints(run_dir) == [1, 2, 3] and with_state == [3]
    resumed = finish(run_dir, images)
    assert resumed.resumed_from == 3
    assert same_parameters(resumed.model, straight.model)  # bit for bit, as if never interrupted
    for epoch in (1, 2, 3, 4):  # finished: weights, config and history only, every file hashed
        folder = training.checkpoint_folder(run_dir, epoch)
        marker = json.loads((folder / "complete").read_text())
        assert sorted(marker["files"]) == ["history.json", "model/config.json", "model/weights.pt"]
        assert not (folder / training.STATE_FILE).exists()
    assert marker["finished"] and marker["train_seconds"] == pytest.approx(resumed.train_seconds)
    again = finish(run_dir, images)  # a finished run returns at once from weights and history
    assert again.resumed_from == 4 and same_parameters(again.model, straight.model)
    assert again.history == resumed.history and again.train_seconds == pytest.approx(resumed.train_seconds)


def test_a_finished_run_missing_a_checkpoint_it_asks_for_retrains_it(images, tmp_path, straight):
    run_dir = tmp_path / "run"
    finish(run_dir, images)
    shutil.rmtree(training.checkpoint_folder(run_dir, 2))  # as `cache clean --keep-final` leaves it
    with pytest.warns(UserWarning, match=r"lacks the checkpoints of epochs \[2\].*training again"):
        rebuilt = finish(run_dir, images)
    assert rebuilt.resumed_from is None and training.list_checkpoints(run_dir) == [1, 2, 3, 4]
    assert same_parameters(rebuilt.model, straight.model)
    assert same_parameters(training.load_checkpoint(run_dir, 2), training.load_checkpoint(straight.run_dir, 2))


# ------------------------------------------------------------------------------------------
# Item 1: one flipped byte anywhere is refused, and the advice recovers the same model
# ------------------------------------------------------------------------------------------


def test_a_flipped_byte_in_the_training_state_refuses_resume_and_the_fix_works(images, tmp_path, straight):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir, images)
    folder = training.checkpoint_folder(run_dir, 3)
    flip_middle_byte(folder / training.STATE_FILE)
    with pytest.raises(ValueError, match=rf"(?s)training_state.pt does not match the SHA-256.*Delete the checkpoint folder {folder}"):
        finish(run_dir, images)
    shutil.rmtree(folder)  # the advice; epochs 1 and 2 hold weights only, so training starts over
    with pytest.warns(UserWarning, match=r"epochs \[1, 2\].*hold weights only.*training from the start"):
        recovered = finish(run_dir, images)
    assert same_parameters(recovered.model, straight.model)


@pytest.mark.parametrize("damaged", ["model/weights.pt", "model/config.json", "history.json"])
def test_a_flipped_byte_in_any_file_of_a_finished_run_refuses_load_and_resume(images, tmp_path, straight, damaged):
    run_dir = tmp_path / "run"
    finish(run_dir, images)
    folder = training.checkpoint_folder(run_dir, 4)
    flip_middle_byte(folder / damaged)
    message = rf"(?s){Path(damaged).name} does not match the SHA-256.*Delete the checkpoint folder {folder}"
    with pytest.raises(ValueError, match=message):
        training.load_checkpoint(run_dir)
    with pytest.raises(ValueError, match=message):
        finish(run_dir, images)
    shutil.rmtree(folder)
    with pytest.warns(UserWarning, match="training from the start"):
        assert same_parameters(finish(run_dir, images).model, straight.model)


# ------------------------------------------------------------------------------------------
# Item 7: history.json missing or truncated
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_truncated_history_names_the_file_and_the_fix_works(images, tmp_path, straight, damage):
    run_dir = tmp_path / "run"
    finish(run_dir, images)
    folder = training.checkpoint_folder(run_dir, 4)
    history = folder / training.HISTORY_FILE
    if damage == "missing":
        history.unlink()
        error = FileNotFoundError
    else:
        history.write_text(history.read_text()[:40])
        error = ValueError
    with pytest.raises(error, match=rf"(?s){history}.*Delete the checkpoint folder {folder}"):
        finish(run_dir, images)
    with pytest.raises(error, match=rf"(?s){history}.*Delete the checkpoint folder {folder}"):
        training.load_history(run_dir)
    shutil.rmtree(folder)  # the advice, taken literally
    with pytest.warns(UserWarning):
        recovered = finish(run_dir, images)
    assert same_parameters(recovered.model, straight.model)
    assert [row["epoch"] for row in recovered.history] == [2, 4]


def test_checkpoints_of_the_previous_format_still_load_and_resume(images, tmp_path, straight):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir, images)
    for epoch in training.list_checkpoints(run_dir):  # markers without file hashes or seconds
        marker_path = training.checkpoint_folder(run_dir, epoch) / "complete"
        marker = json.loads(marker_path.read_text())
        marker_path.write_text(json.dumps({"epoch": marker["epoch"], "step": marker["step"]}))
    assert finish(run_dir, images).resumed_from == 3
    assert same_parameters(training.load_checkpoint(run_dir), straight.model)


# ------------------------------------------------------------------------------------------
# Item 4: nothing in a checkpoint is unpickled with code
# ------------------------------------------------------------------------------------------


class _TouchOnLoad:
    """A pickle payload that creates a file when unpickled with code execution allowed."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_crafted_training_state_with_a_matching_hash_does_not_run(images, tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir, images)
    folder = training.checkpoint_folder(run_dir, 3)
    evidence = tmp_path / "code-ran"
    state = folder / training.STATE_FILE
    torch.save({"optimizer": _TouchOnLoad(evidence)}, state)
    marker = json.loads((folder / "complete").read_text())  # an attacker can fix the hash, too
    marker["files"][training.STATE_FILE] = io_sha256(state)
    (folder / "complete").write_text(json.dumps(marker))
    with pytest.raises(ValueError, match=rf"(?s)could not read {state}.*corrupt"):
        finish(run_dir, images)
    assert not evidence.exists()
    torch.load(state, weights_only=False)  # the payload is real: full unpickling would have run it
    assert evidence.exists()


def io_sha256(path: Path) -> str:
    from vaegen_utils.checks import file_sha256

    return file_sha256(path)


def test_every_torch_load_in_the_package_refuses_code():
    package = Path(training.__file__).parent
    loads = [(path.name, line.strip()) for path in package.glob("*.py") for line in path.read_text().splitlines()
             if "torch.load(" in line and not line.lstrip().startswith(("#", '"'))]
    assert loads, "expected torch.load calls (models, training, diffusion)"
    assert all("weights_only=True" in line for _, line in loads), loads


# ------------------------------------------------------------------------------------------
# io.read_json names the file for every kind of damage
# ------------------------------------------------------------------------------------------


def test_read_json_names_the_file_for_invalid_utf8_invalid_json_and_a_missing_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(ValueError, match=rf"{path} is not valid UTF-8.*Delete it and rerun"):
        io.read_json(path)
    path.write_text('{"a": ')
    with pytest.raises(ValueError, match=rf"{path} is not valid JSON.*Rerun the notebook"):
        io.read_json(path, fix="Rerun the notebook.")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nothing.json'} is missing\. Rerun"):
        io.read_json(tmp_path / "nothing.json", fix="Rerun the notebook.")
    path.write_text("[1]")
    assert io.read_json(path) == [1]
