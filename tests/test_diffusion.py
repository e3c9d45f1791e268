"""Tests of vaegen_utils.diffusion on a ~40k-parameter UNet at 8x8 (a few seconds in total).

Torch runs single-threaded here (restored afterwards): these ops are tiny, and on a shared 2-core
machine two OpenMP threads wait on each other ~100x longer than the work takes.
"""

from __future__ import annotations

import json

import pytest
import torch

from vaegen_utils import diffusion as D
from vaegen_utils import models, training
from vaegen_utils.data import FIXED_THRESHOLD_LEVEL

CONFIG = D.tiny_config()


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def square_images() -> torch.Tensor:
    """64 images of one white 4x4 square on black, 8x8: a trivial data set."""
    images = torch.zeros((64, 1, 8, 8))
    images[:, :, 2:6, 2:6] = 1.0
    return images


@pytest.fixture(scope="module")
def trained(square_images) -> D.DiffusionTrainResult:
    return D.train_diffusion(CONFIG, square_images, steps=60, batch_size=16, learning_rate=3e-3, seed=0, warmup_steps=5)


def state_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


# ------------------------------------------------------------------------------------------
# Config and helpers
# ------------------------------------------------------------------------------------------


def test_config_round_trips_and_rejects_a_4_level_unet_at_28_pixels():
    config = D.cpu_config()
    assert D.DiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.block_out_channels == (32, 64, 64) and not config.attention
    with pytest.raises(ValueError, match="divisible by 8"):
        D.DiffusionConfig(image_size=28, sample_size=28, block_out_channels=(32, 64, 64, 64))
    D.DiffusionConfig(image_size=28, sample_size=32, block_out_channels=(32, 64, 64, 64))  # padded: fine
    with pytest.raises(ValueError, match="norm_num_groups"):
        D.DiffusionConfig(block_out_channels=(8, 16))


def test_unet_has_no_attention_by_default():
    model = D.build_diffusion_model(CONFIG, seed=0)
    assert not any(type(module).__name__ == "Attention" for module in model.modules())
    with_attention = D.build_diffusion_model(D.tiny_config(attention=True), seed=0)
    assert any(type(module).__name__ == "Attention" for module in with_attention.modules())


def test_padding_binarization_and_quantization_helpers():
    images = torch.rand((3, 1, 28, 28))
    padded = D.pad_images(images, 32)
    assert padded.shape == (3, 1, 32, 32)
    assert torch.equal(padded[..., 2:30, 2:30], images) and padded[..., :2, :].abs().sum() == 0
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    binary = D.binarize_samples(levels)
    assert torch.equal(binary.flatten(), (torch.arange(256) >= FIXED_THRESHOLD_LEVEL).float())
    assert torch.equal(D.binarize_samples(D.uint8_to_float(levels)), binary)  # float input: same rule
    assert torch.equal(D.quantize_uint8(D.uint8_to_float(levels)), levels)  # k/255 round trip is exact


def test_save_and_load_round_trip_the_weights(tmp_path):
    model = D.build_diffusion_model(CONFIG, seed=3)
    D.save_diffusion(model, tmp_path / "m")
    loaded = D.load_diffusion(tmp_path / "m")
    assert loaded.config == CONFIG and state_equal(model, loaded)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["weights_sha256"] == D.weights_sha256(model)
    (tmp_path / "m" / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="SHA-256"):
        D.load_diffusion(tmp_path / "m")


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def test_training_loss_decreases_on_a_trivial_data_set(trained):
    losses = trained.losses
    assert len(losses) == 60 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    assert not state_equal(trained.model, trained.raw_model)  # the EMA differs from the raw weights


def test_batches_are_a_pure_function_of_seed_and_step():
    n, batch = 10, 4
    stream = torch.cat([D.batch_indices(0, step, batch, n) for step in range(5)])  # 20 = two epochs
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    assert torch.equal(D.batch_indices(0, 3, batch, n), stream[12:16])
    assert not torch.equal(D.batch_indices(1, 0, batch, n), D.batch_indices(0, 0, batch, n))


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(square_images, tmp_path):
    settings = dict(batch_size=16, learning_rate=3e-3, seed=1, warmup_steps=5, checkpoint_steps=[8])
    full = D.train_diffusion(CONFIG, square_images, steps=16, run_dir=tmp_path / "full", **settings)
    # "Killed" after the checkpoint at step 8: a first session that ends there, a stale temp folder
    # from an interrupted checkpoint write, then a rerun to the end.
    first = D.train_diffusion(CONFIG, square_images, steps=8, run_dir=tmp_path / "resumed", **settings)
    (tmp_path / "resumed" / "checkpoints" / ".tmp-step_0000012.abc").mkdir()
    resumed = D.train_diffusion(CONFIG, square_images, steps=16, run_dir=tmp_path / "resumed", **settings)
    assert first.resumed_from is None and resumed.resumed_from == 8
    assert state_equal(full.raw_model, resumed.raw_model) and state_equal(full.model, resumed.model)
    assert full.losses == resumed.losses
    assert D.list_checkpoints(tmp_path / "resumed") == [8, 16]
    assert state_equal(D.load_checkpoint(tmp_path / "full", 16), full.model)
    assert state_equal(D.load_checkpoint(tmp_path / "full", 8, ema=False), first.raw_model)
    # A finished run returns at once with the same model.
    again = D.train_diffusion(CONFIG, square_images, steps=16, run_dir=tmp_path / "full", **settings)
    assert again.resumed_from == 16 and state_equal(again.model, full.model)
    # Another setup in the same folder is refused before training.
    with pytest.raises(ValueError, match="different setup"):
        D.train_diffusion(CONFIG, square_images, steps=16, run_dir=tmp_path / "full", **{**settings, "learning_rate": 1e-3})


def test_bfloat16_training_runs_and_nan_data_is_refused(square_images):
    result = D.train_diffusion(CONFIG, square_images, steps=3, batch_size=8, precision="bfloat16", warmup_steps=0)
    assert len(result.losses) == 3 and all(l == l for l in result.losses)
    bad = square_images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        D.train_diffusion(CONFIG, bad, steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.train_diffusion(CONFIG, square_images * 2 - 1, steps=1)


def test_nan_guard_names_the_step(square_images):
    # A learning rate of 1e30 makes the weights overflow in step 1, so step 2's loss is not finite.
    with pytest.raises(D.DiffusionNonFiniteLossError, match="step 2") as caught:
        D.train_diffusion(CONFIG, square_images, steps=3, learning_rate=1e30, warmup_steps=0, grad_clip=None,
                          batch_size=8, ema_decay=None)
    assert caught.value.step == 2


# ------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ddim", "heun"])
def test_sampling_is_deterministic_in_range_and_per_image(trained, sampler):
    first = D.sample(trained.model, 6, sampler=sampler, steps=4, seed=5, batch_size=4)
    again = D.sample(trained.model, 6, sampler=sampler, steps=4, seed=5, batch_size=4)
    assert first.shape == (6, 1, 8, 8) and torch.equal(first, again)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    other = D.sample(trained.model, 6, sampler=sampler, steps=4, seed=6, batch_size=4)
    assert not torch.equal(first, other)
    tail = D.sample(trained.model, 2, sampler=sampler, steps=4, seed=5, start_index=4, batch_size=4)
    assert torch.allclose(tail, first[4:], atol=1e-5)  # image i depends on (seed, i) only


def test_trained_model_samples_look_like_the_square(trained):
    images = D.sample(trained.model, 8, steps=10, seed=0)
    inside, outside = images[..., 2:6, 2:6].mean(), torch.cat([images[..., :2, :], images[..., 6:, :]], -2).mean()
    assert inside > outside + 0.2, (float(inside), float(outside))


def test_sampling_with_padding_inside_the_model_crops_back(square_images):
    config = D.tiny_config(image_size=6, sample_size=8)
    model = D.build_diffusion_model(config, seed=0)
    assert model.to_model_space(torch.zeros(1, 1, 6, 6)).shape == (1, 1, 8, 8)
    images = D.sample(model, 3, steps=2, seed=0)
    assert images.shape == (3, 1, 6, 6)
    result = D.train_diffusion(config, square_images[..., 1:7, 1:7], steps=2, batch_size=8, warmup_steps=0)
    assert len(result.losses) == 2


# ------------------------------------------------------------------------------------------
# Sample banks
# ------------------------------------------------------------------------------------------


def test_bank_generation_is_resumable_and_chunk_reads_are_consistent(trained, tmp_path):
    settings = dict(steps=3, seed=2, batch_size=3, chunk_size=4)
    killed = D.generate_bank(trained.model, 10, root=tmp_path / "a", max_new_chunks=1, **settings)
    assert len(killed) == 4
    resumed = D.generate_bank(trained.model, 10, root=tmp_path / "a", **settings)
    straight = D.generate_bank(trained.model, 10, root=tmp_path / "b", **settings)
    assert len(resumed) == len(straight) == 10
    assert torch.equal(resumed.uint8(0, 10), straight.uint8(0, 10))
    # Chunk boundaries are invisible to readers, and the stored levels are the sampler's images.
    assert torch.equal(resumed.uint8(2, 9), torch.cat([resumed.uint8(2, 4), resumed.uint8(4, 8), resumed.uint8(8, 9)]))
    expected = D.quantize_uint8(D.sample(trained.model, 10, sampler="ddim", steps=3, seed=2, batch_size=3))
    assert torch.equal(resumed.uint8(0, 10), expected)
    assert torch.equal(resumed.images(0, 10), D.uint8_to_float(expected))
    manifest = resumed.manifest
    assert manifest["settings"]["weights_sha256"] == D.weights_sha256(trained.model)
    assert manifest["settings"]["sampler"] == "ddim" and manifest["settings"]["steps"] == 3
    assert [entry["count"] for entry in manifest["chunks"]] == [4, 4, 2]
    # Growing the bank keeps its prefix and regenerates the partial last chunk whole.
    grown = D.generate_bank(trained.model, 12, root=tmp_path / "a", **settings)
    assert len(grown) == 12 and torch.equal(grown.uint8(0, 10), straight.uint8(0, 10))
    # A corrupt chunk is detected on reading and regenerated by the next generate_bank call.
    chunk_file = grown.folder / manifest["chunks"][1]["file"]
    chunk_file.write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="corrupt"), pytest.warns(UserWarning):
        D.SampleBank(grown.folder).uint8(4, 8)
    repaired = D.generate_bank(trained.model, 12, root=tmp_path / "a", **settings)
    assert torch.equal(repaired.uint8(0, 12), grown.uint8(0, 12))
    assert D.open_bank(trained.model, root=tmp_path / "a", **settings).folder == repaired.folder


def test_data_source_gives_a_fresh_block_every_epoch_then_cycles(trained, tmp_path):
    bank = D.generate_bank(trained.model, 12, steps=2, seed=0, batch_size=6, chunk_size=5, root=tmp_path)
    source = bank.data_source(4)
    assert source.num_blocks == 3
    blocks = [source(epoch) for epoch in (1, 2, 3, 4)]
    assert torch.equal(blocks[0], bank.images(0, 4)) and torch.equal(blocks[2], bank.images(8, 12))
    assert not torch.equal(blocks[0], blocks[1]) and torch.equal(blocks[3], blocks[0])
    two = bank.data_source(4, num_blocks=2, binarize=True, pad_to=12)
    assert torch.equal(two(3), two(1)) and two(1).shape == (4, 1, 12, 12)
    assert set(two(1).unique().tolist()) <= {0.0, 1.0}
    assert "num_blocks=2" in two.describe() and bank.key[:16] in two.describe()
    with pytest.raises(ValueError, match="generate a larger bank"):
        bank.data_source(5, num_blocks=3)


def test_bank_data_source_plugs_into_the_training_engine(trained, tmp_path):
    bank = D.generate_bank(trained.model, 16, steps=2, seed=0, batch_size=8, chunk_size=8, root=tmp_path)
    real = torch.zeros((8, 1, 8, 8))
    real[:, :, 2:6, 2:6] = 1.0
    vae = models.build_model(models.MLPVAEConfig(data_shape=(1, 8, 8), latent_dim=2, hidden_sizes=(16,), likelihood="bernoulli"), seed=0)
    seen = []
    source = bank.data_source(8, binarize=True)

    def recording_source(epoch):
        images = source(epoch)
        seen.append(images)
        return images

    config = training.TrainConfig(epochs=3, batch_size=4, eval_epochs=[3])
    result = training.train(vae, real, config, eval_sets={"train": real}, data_source=recording_source)
    assert len(seen) == 3 and torch.equal(seen[0], seen[2]) and not torch.equal(seen[0], seen[1])
    assert result.final("train")["elbo"] < 0


def test_memorization_report_flags_copies_of_the_training_set():
    generator = torch.Generator().manual_seed(0)
    train = torch.rand((50, 1, 8, 8), generator=generator)
    test = torch.rand((30, 1, 8, 8), generator=generator)
    copies = D.memorization_report(train[:20], train, test)
    assert copies["sample_median"] == 0.0 and copies["near_copy_fraction"] == 1.0
    fresh = D.memorization_report(torch.rand((20, 1, 8, 8), generator=generator), train, test)
    assert fresh["sample_median"] > 0.5 * fresh["test_median"] and fresh["near_copy_fraction"] < 0.2
