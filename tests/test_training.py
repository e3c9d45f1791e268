"""Tests of the training engine (vaegen_utils.training) on tiny MLP VAEs and fixed synthetic data.

Every model here is an MLP VAE on 1x8x8 binary images with one hidden layer of 32 units and a
2-d latent; the data are 256 binary images drawn once from a seeded generator (four noisy
prototypes), so each training run takes well under a second.
"""

from __future__ import annotations

import copy
import io as std_io
import os
import subprocess
import sys

import pytest
import torch

from vaegen_utils import checkpoints, io, models, training
from vaegen_utils.training import NonFiniteLossError, TrainConfig, model_sample_mixture, retrain_encoder, train

DATA_SHAPE = (1, 8, 8)


def tiny_config(**changes) -> models.MLPVAEConfig:
    settings = dict(data_shape=DATA_SHAPE, latent_dim=2, hidden_sizes=(32,), likelihood="bernoulli")
    return models.MLPVAEConfig(**{**settings, **changes})


def tiny_model(seed: int = 0) -> torch.nn.Module:
    return models.build_model(tiny_config(), seed=seed)


def ensemble_of(members):
    from vaegen_utils.ensemble import EnsembleMLPVAE

    return EnsembleMLPVAE.from_members(members)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """256 fixed binary images (N, 1, 8, 8): four random prototypes with 10% of pixels flipped."""
    generator = torch.Generator().manual_seed(1234)
    prototypes = torch.rand((4, *DATA_SHAPE), generator=generator).round()  # (4, 1, 8, 8)
    labels = torch.randint(0, 4, (256,), generator=generator)
    flips = torch.bernoulli(torch.full((256, *DATA_SHAPE), 0.1), generator=generator)
    return (prototypes[labels] + flips) % 2  # (256, 1, 8, 8) in {0, 1}


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(99)
    return torch.bernoulli(torch.full((64, *DATA_SHAPE), 0.3), generator=generator)


def parameters_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def without_seconds(history):
    return [{key: value for key, value in row.items() if key != "seconds"} for row in history]


# ------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_parameters_and_history(images, test_images):
    config = TrainConfig(epochs=3, batch_size=32, seed=7, eval_epochs=[1, 3], eval_at_start=True)
    eval_sets = {"train": images, "test": test_images}
    first = train(tiny_model(1), images, config, eval_sets=eval_sets)
    second = train(tiny_model(1), images, config, eval_sets=eval_sets)
    assert parameters_equal(first.model, second.model)
    assert without_seconds(first.history) == without_seconds(second.history)
    assert [(row["epoch"], row["split"]) for row in first.history] == [
        (0, "train"), (0, "test"), (1, "train"), (1, "test"), (3, "train"), (3, "test")
    ]
    assert first.history[-1]["step"] == 3 * 8  # 256 images / batch 32 = 8 steps per epoch


def test_another_seed_changes_training_and_training_improves_the_elbo(images):
    config = TrainConfig(epochs=3, batch_size=32, seed=0, eval_at_start=True)
    result = train(tiny_model(1), images, config, eval_sets={"train": images})
    other = train(tiny_model(1), images, config.with_changes(seed=1), eval_sets={"train": images})
    assert not parameters_equal(result.model, other.model)
    start, end = result.history[0], result.history[-1]
    assert end["elbo"] > start["elbo"]
    # bits/dim is the negative ELBO in base 2 per data dimension (paper B, footnotes 1 and 3)
    assert end["bits_per_dim"] == pytest.approx(-end["elbo"] / (64 * 0.6931471805599453), rel=1e-12)
    assert end["elbo"] == pytest.approx(-end["rate"] - end["distortion"], rel=1e-6)  # float32 per point


def test_evaluation_is_deterministic_and_leaves_training_mode_alone(images):
    model = tiny_model(3)
    model.train()
    first = training.evaluate(model, images, batch_size=50, seed=0)
    second = training.evaluate(model, images, batch_size=50, seed=0)
    assert first == second
    assert model.training
    assert training.evaluate(model, images, batch_size=50, seed=1) != first


# ------------------------------------------------------------------------------------------
# Checkpoints and resume
# ------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(images, test_images, tmp_path):
    crash_at_epoch = {"value": None}
    calls = []

    def same_images_every_epoch(epoch):  # a data_source; raising simulates a crash during epoch 3
        calls.append(epoch)
        if epoch == crash_at_epoch["value"]:
            raise Interrupted(f"simulated crash in epoch {epoch}")
        return images

    def mixture(model):  # the batch transform draws from its own generator, which must resume too
        return model_sample_mixture(model, alpha=0.25)

    config = TrainConfig(epochs=4, batch_size=32, checkpoint_epochs=[2], eval_epochs=[1, 2, 3, 4])
    eval_sets = {"test": test_images}
    straight_model = tiny_model(5)
    straight = train(
        straight_model, images, config, eval_sets=eval_sets, run_dir=tmp_path / "straight",
        data_source=same_images_every_epoch, batch_transform=mixture(straight_model),
    )

    crash_at_epoch["value"] = 3
    crashed_model = tiny_model(5)
    with pytest.raises(Interrupted):
        train(
            crashed_model, images, config, eval_sets=eval_sets, run_dir=tmp_path / "resumed",
            data_source=same_images_every_epoch, batch_transform=mixture(crashed_model),
        )
    assert training.list_checkpoints(tmp_path / "resumed") == [2]

    crash_at_epoch["value"] = None
    fresh_model = tiny_model(5)  # rebuilt as after a restart; the checkpoint's weights must be loaded
    resumed = train(
        fresh_model, images, config, eval_sets=eval_sets, run_dir=tmp_path / "resumed",
        data_source=same_images_every_epoch, batch_transform=mixture(fresh_model),
    )
    assert resumed.resumed_from == 2
    assert parameters_equal(resumed.model, straight.model)
    assert without_seconds(resumed.history) == without_seconds(straight.history)
    assert training.list_checkpoints(tmp_path / "resumed") == [2, 4]

    # A finished run returns at once from its last checkpoint, without calling the data source.
    calls.clear()
    again_model = tiny_model(5)
    again = train(
        again_model, images, config, eval_sets=eval_sets, run_dir=tmp_path / "resumed",
        data_source=same_images_every_epoch, batch_transform=mixture(again_model),
    )
    assert again.resumed_from == 4 and parameters_equal(again.model, straight.model)
    assert calls == []


def test_load_checkpoint_returns_the_model_of_each_saved_epoch(images, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, checkpoint_epochs=1)
    run_dir = tmp_path / "run"
    result = train(tiny_model(0), images, config, run_dir=run_dir)
    assert training.list_checkpoints(run_dir) == [1, 2]
    final = training.load_checkpoint(run_dir)
    assert parameters_equal(final, result.model)
    first_epoch = training.load_checkpoint(run_dir, 1)
    assert not parameters_equal(first_epoch, result.model)
    one_epoch = train(tiny_model(0), images, config.with_changes(epochs=1, checkpoint_epochs=None))
    assert parameters_equal(first_epoch, one_epoch.model)
    with pytest.raises(FileNotFoundError, match="available epochs"):
        training.load_checkpoint(run_dir, 3)


def test_an_interrupted_checkpoint_write_is_ignored_and_stale_staging_folders_removed(images, tmp_path, monkeypatch):
    config = TrainConfig(epochs=2, batch_size=64, checkpoint_epochs=[1])
    straight = train(tiny_model(0), images, config, run_dir=tmp_path / "straight")
    run_dir = tmp_path / "run"
    real_hashes = checkpoints._file_hashes

    def killed_while_writing_epoch_2(staging):  # the files are written, the marker not yet
        if staging.name.startswith(".tmp-epoch_0002."):
            raise Interrupted("killed while writing the checkpoint of epoch 2")
        return real_hashes(staging)

    monkeypatch.setattr(checkpoints, "_file_hashes", killed_while_writing_epoch_2)
    with pytest.raises(Interrupted):
        train(tiny_model(0), images, config, run_dir=run_dir)
    monkeypatch.undo()
    assert training.list_checkpoints(run_dir) == [1]
    # What a killed writer leaves behind: a staging folder of an older version (no writer tag) and
    # one tagged with a process that has exited. Both go; the previous checkpoint is resumed.
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = [".tmp-epoch_0002.abc", f"{io.temporary_prefix('epoch_0002')}xyz".replace(f"w{os.getpid()}@", f"w{finished.pid}@")]
    for name in stale:
        (run_dir / "checkpoints" / name).mkdir()
    resumed = train(tiny_model(0), images, config, run_dir=run_dir)
    assert resumed.resumed_from == 1
    assert parameters_equal(resumed.model, straight.model)
    assert training.list_checkpoints(run_dir) == [1, 2]
    assert not [path for path in (run_dir / "checkpoints").iterdir() if path.name.startswith(".tmp-")]


def test_a_run_dir_of_another_config_is_refused_before_training(images, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_model(0), images, TrainConfig(epochs=1, batch_size=64), run_dir=run_dir)
    model = tiny_model(0)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"(?s)different setup.*learning_rate.*delete .*run.*another run_dir"):
        train(model, images, TrainConfig(epochs=1, batch_size=64, learning_rate=2e-3), run_dir=run_dir)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    with pytest.raises(ValueError, match="train_images"):
        train(tiny_model(0), images[:128], TrainConfig(epochs=1, batch_size=64), run_dir=run_dir)
    # Another initialisation (or a model object already changed by an interrupted call) is another run.
    with pytest.raises(ValueError, match=r"(?s)initial_weights_sha256.*build it again"):
        train(tiny_model(1), images, TrainConfig(epochs=1, batch_size=64), run_dir=run_dir)


def test_a_run_dir_without_checkpoints_can_be_taken_over(images, tmp_path):
    run_dir = tmp_path / "run"
    config = TrainConfig(epochs=1, batch_size=64, checkpoint_epochs=None)
    with pytest.raises(NonFiniteLossError):  # crashes in epoch 1, before any checkpoint
        train(tiny_model(0), images, config, run_dir=run_dir, data_source=lambda epoch: images * float("nan"))
    result = train(tiny_model(0), images, config.with_changes(learning_rate=1e-4), run_dir=run_dir)
    assert result.resumed_from is None and training.list_checkpoints(run_dir) == [1]


def test_retraining_different_checkpoints_into_one_run_dir_is_refused(images, tmp_path):
    model = tiny_model(0)
    retrain_encoder(model, images, epochs=1, run_dir=tmp_path / "optimal")
    changed = train(copy.deepcopy(model), images, TrainConfig(epochs=1, batch_size=64)).model
    with pytest.raises(ValueError, match="initial_weights_sha256"):
        retrain_encoder(changed, images, epochs=1, run_dir=tmp_path / "optimal")
    again = retrain_encoder(model, images, epochs=1, run_dir=tmp_path / "optimal")
    assert again.resumed_from == 1


# ------------------------------------------------------------------------------------------
# Ensembles: every member trains exactly as it would alone
# ------------------------------------------------------------------------------------------


def test_ensemble_members_match_standalone_runs_step_for_step(images, test_images):
    seeds, betas, noise_seeds = [11, 12, 13], [0.5, 1.0, 2.0], [21, 22, 23]
    singles = [tiny_model(seed) for seed in seeds]
    ensemble = ensemble_of([copy.deepcopy(model) for model in singles])
    # 4 epochs x 8 steps = 32 Adam steps, evaluated at epochs 2 and 4.
    common = dict(epochs=4, batch_size=32, seed=3, eval_epochs=[2, 4])
    ensemble_result = train(
        ensemble, images, TrainConfig(beta=betas, member_seeds=noise_seeds, **common), eval_sets={"test": test_images}
    )
    for index, (single, beta, noise_seed) in enumerate(zip(singles, betas, noise_seeds)):
        single_result = train(
            single, images, TrainConfig(beta=beta, member_seeds=[noise_seed], **common), eval_sets={"test": test_images}
        )
        member = ensemble.member(index)
        # Tolerance: a batched matmul (baddbmm) and a plain Linear sum in different orders, so each
        # forward/backward differs by float32 rounding, which Adam (dividing by sqrt(v)) can enlarge
        # for weights with tiny gradients. Measured after these 32 steps: at most 6e-8 absolute
        # (6e-6 relative, on weights near zero); rtol 1e-4 / atol 1e-6 leaves a 15x margin, while a
        # wrong noise seed or beta moves the weights by 3e-2 to 4e-2 (checked below).
        for (name, expected), actual in zip(single.state_dict().items(), member.state_dict().values()):
            torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6, msg=f"member {index}: {name}")
        for single_row, ensemble_row in zip(single_result.history, ensemble_result.history):
            for metric in training.METRICS:
                assert ensemble_row[metric][index] == pytest.approx(single_row[metric], rel=1e-5)
        assert [row["elbo"] for row in ensemble_result.rows("test", member=index)] == [
            row["elbo"][index] for row in ensemble_result.history
        ]
    # The check has teeth: member 0 trained with another noise seed is far outside the tolerance.
    wrong_noise = tiny_model(seeds[0])
    train(wrong_noise, images, TrainConfig(beta=betas[0], member_seeds=[99], **common))
    expected, actual = wrong_noise.state_dict(), ensemble.member(0).state_dict()
    assert max((expected[name] - actual[name]).abs().max() for name in expected) > 1e-3


def test_beta_list_must_match_the_number_of_members(images):
    ensemble = ensemble_of([tiny_model(0), tiny_model(1)])
    with pytest.raises(ValueError, match="one beta per member"):
        train(ensemble, images, TrainConfig(epochs=1, beta=[1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="one beta per member"):
        train(tiny_model(0), images, TrainConfig(epochs=1, beta=[1.0, 2.0]))
    with pytest.raises(ValueError, match="one seed per member"):
        train(ensemble, images, TrainConfig(epochs=1, member_seeds=[1, 2, 3]))


# ------------------------------------------------------------------------------------------
# Encoder-only training (paper B's optimal inference and self-consistent training)
# ------------------------------------------------------------------------------------------


def test_retrain_encoder_changes_only_the_encoder_of_a_copy(images, test_images):
    model = tiny_model(4)
    original = copy.deepcopy(model.state_dict())
    result = retrain_encoder(model, test_images, epochs=2, batch_size=16, eval_sets={"test": test_images})
    retrained = result.model
    assert retrained is not model
    assert all(torch.equal(original[name], value) for name, value in model.state_dict().items())  # caller untouched
    for before, after in zip(model.decoder_parameters(), retrained.decoder_parameters()):
        assert torch.equal(before, after)  # decoder bit-identical (paper B, eq. 12: theta fixed)
    encoder_pairs = zip(model.encoder_parameters(), retrained.encoder_parameters())
    assert any(not torch.equal(before, after) for before, after in encoder_pairs)
    assert all(parameter.requires_grad for parameter in retrained.parameters())  # frozen only during the run
    # Optimal inference fits q to the test data, so the test ELBO improves.
    amortized = training.evaluate(model, test_images)["elbo"]
    assert result.final("test")["elbo"] > amortized


def test_self_consistent_encoder_training_with_the_model_sample_mixture(images):
    model = tiny_model(4)
    mixture = model_sample_mixture(model, alpha=0.5)  # paper B, eq. 16
    result = retrain_encoder(model, images, epochs=1, batch_size=32, batch_transform=mixture)
    for before, after in zip(model.decoder_parameters(), result.model.decoder_parameters()):
        assert torch.equal(before, after)


def test_encoder_only_training_of_an_ensemble_keeps_every_decoder(images):
    ensemble = ensemble_of([tiny_model(0), tiny_model(1)])
    result = retrain_encoder(ensemble, images, epochs=1, batch_size=64)
    for before, after in zip(ensemble.decoder_parameters(), result.model.decoder_parameters()):
        assert torch.equal(before, after)


def test_model_sample_mixture_appends_an_equal_number_of_binary_model_samples(images):
    model = tiny_model(0)
    generator = torch.Generator().manual_seed(0)
    batch = images[:10]
    mixed = model_sample_mixture(model, alpha=0.5)(batch, generator)  # paper B eq. 16 with alpha = 0.5
    assert mixed.shape == (20, *DATA_SHAPE)
    assert torch.equal(mixed[:10], batch)
    samples = mixed[10:]
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    assert not samples.requires_grad
    assert model_sample_mixture(model, alpha=0.0)(batch, generator) is batch
    assert model_sample_mixture(model, alpha=0.75)(batch, generator).shape[0] == 40  # 30 samples: 75%
    assert model_sample_mixture(model, alpha=1.0)(batch, generator).shape[0] == 10  # samples only
    with pytest.raises(ValueError, match="alpha"):
        model_sample_mixture(model, alpha=1.5)
    ensemble = ensemble_of([tiny_model(0), tiny_model(1)])
    mixed = model_sample_mixture(ensemble, alpha=0.5)(batch, generator)
    assert mixed.shape == (2, 20, *DATA_SHAPE)
    assert torch.equal(mixed[0, :10], batch) and torch.equal(mixed[1, :10], batch)


# ------------------------------------------------------------------------------------------
# NaN guard
# ------------------------------------------------------------------------------------------


def test_nan_guard_names_epoch_step_and_terms_and_skips_the_bad_step(images):
    poisoned = images.clone()
    poisoned[:] = float("nan")
    model = tiny_model(0)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 5") as raised:
        source = lambda epoch: images if epoch == 1 else poisoned  # noqa: E731
        train(model, images, TrainConfig(epochs=3, batch_size=64), data_source=source)
    error = raised.value
    assert (error.epoch, error.step, error.member) == (2, 5, None)  # 4 steps per epoch: the first of epoch 2
    assert not torch.isfinite(torch.tensor(error.rate)) or not torch.isfinite(torch.tensor(error.distortion))
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())  # bad step not applied


def test_nan_guard_names_the_ensemble_member(images):
    ensemble = ensemble_of([tiny_model(0), tiny_model(1), tiny_model(2)])
    with torch.no_grad():
        ensemble.decoder_parameters()[0][1].fill_(float("nan"))  # break member 1 only
    with pytest.raises(NonFiniteLossError, match="ensemble member 1") as raised:
        train(ensemble, images, TrainConfig(epochs=1, batch_size=64))
    assert raised.value.member == 1 and raised.value.step == 1
    assert raised.value.rate == pytest.approx(raised.value.rate)  # the rate is finite: the decoder broke


def test_huge_learning_rate_is_stopped_by_the_guard(images):
    # One Adam step moves every weight by ~1e30, so the next forward pass overflows float32.
    config = TrainConfig(epochs=2, batch_size=16, learning_rate=1e30)
    with pytest.raises(NonFiniteLossError, match="lower the learning rate"):
        train(tiny_model(0), images, config)


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(epochs=2.5), "epochs must be an integer"),
        (dict(epochs=3, batch_size=0), "batch_size"),
        (dict(epochs=3, learning_rate=0.0), "learning_rate must be > 0"),
        (dict(epochs=3, learning_rate=float("nan")), "learning_rate must be a finite number"),
        (dict(epochs=3, beta=-0.1), "beta must be >= 0"),
        (dict(epochs=3, beta=[]), "beta is an empty list"),
        (dict(epochs=3, beta=[1.0, -2.0]), "every beta must be >= 0"),
        (dict(epochs=3, checkpoint_epochs=[4]), r"checkpoint_epochs contains 4, outside 1..3"),
        (dict(epochs=3, checkpoint_epochs=[0]), r"outside 1..3"),
        (dict(epochs=3, eval_epochs=5), r"every 5 epochs"),
        (dict(epochs=3, trainable="decoder"), "trainable must be one of"),
        (dict(epochs=3, member_seeds=[]), "member_seeds must be a non-empty list"),
        (dict(epochs=3, beta=[1.0, 2.0], member_seeds=[1, 2, 3]), "one of each per ensemble member"),
        (dict(epochs=3, seed=-1), "seed must be an integer >= 0"),
        (dict(epochs=3, precision="float16"), "precision must be one of"),
    ],
)
def test_bad_train_configs_raise_actionable_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_config_normalisation_and_json_round_trip():
    config = TrainConfig(epochs=10, checkpoint_epochs=5, eval_epochs=[10, 2, 2], beta=[1, 2])
    assert config.checkpoint_epochs == [5, 10] and config.eval_epochs == [2, 10] and config.beta == [1.0, 2.0]
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.resolved_checkpoint_epochs() == [5, 10]
    assert TrainConfig(epochs=4, eval_at_start=True).resolved_eval_epochs() == [0, 4]
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\)"):
        TrainConfig.from_dict({"epochs": 1, "lr": 0.1})


def test_bad_data_is_refused_before_training(images):
    config = TrainConfig(epochs=1, batch_size=64)
    with pytest.raises(ValueError, match=r"shape \(256, 64\).*expects \(N, 1, 8, 8\)"):
        train(tiny_model(0), images.flatten(1), config)
    with pytest.raises(ValueError, match="eval_sets"):
        train(tiny_model(0), images, config, eval_sets={"test": images[:, :, :4]})
    with pytest.raises(ValueError, match="drop_last"):
        train(tiny_model(0), images[:10], config.with_changes(drop_last=True))
    with pytest.raises(ValueError, match=r"returned 128 images but train_images has 256"):
        train(tiny_model(0), images, config, data_source=lambda epoch: images[:128])


def test_drop_last_and_partial_batches_count_steps(images):
    config = TrainConfig(epochs=1, batch_size=32)
    result = train(tiny_model(0), images[:100], config, eval_sets={"x": images[:8]})
    assert result.history[-1]["step"] == 4  # 32 + 32 + 32 + 4
    result = train(tiny_model(0), images[:100], config.with_changes(drop_last=True), eval_sets={"x": images[:8]})
    assert result.history[-1]["step"] == 3


# ------------------------------------------------------------------------------------------
# Progress bar
# ------------------------------------------------------------------------------------------


def test_progress_bar_is_silent_unless_interactive_or_requested(images, monkeypatch):
    buffer = std_io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    train(tiny_model(0), images, TrainConfig(epochs=1, batch_size=64))
    assert buffer.getvalue() == ""  # a StringIO is not a TTY, like a CI log
    train(tiny_model(0), images, TrainConfig(epochs=1, batch_size=64), progress=True)
    assert "step" in buffer.getvalue()


def test_fused_adam_is_used_when_available():
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = training._make_adam([parameter], 1e-3)
    assert optimizer.defaults.get("fused") or optimizer.defaults.get("foreach")



def test_bfloat16_training_learns_like_float32_and_evaluates_in_float32(images):
    """bf16 autocast changes rounding, not the objective: both runs improve the ELBO by a similar
    amount, they are not bitwise equal (so autocast was really on), and evaluation stays float32."""
    config = TrainConfig(epochs=4, batch_size=32, seed=0, eval_at_start=True)
    float32_run = train(tiny_model(2), images, config, eval_sets={"train": images})
    bfloat16_run = train(tiny_model(2), images, config.with_changes(precision="bfloat16"), eval_sets={"train": images})
    assert not parameters_equal(float32_run.model, bfloat16_run.model)
    assert all(parameter.dtype == torch.float32 for parameter in bfloat16_run.model.parameters())
    start = float32_run.history[0]["elbo"]
    assert bfloat16_run.history[0]["elbo"] == start  # same initial weights, float32 evaluation
    gain_float32 = float32_run.history[-1]["elbo"] - start
    gain_bfloat16 = bfloat16_run.history[-1]["elbo"] - start
    assert gain_float32 > 0 and gain_bfloat16 > 0
    assert gain_bfloat16 == pytest.approx(gain_float32, rel=0.25)
