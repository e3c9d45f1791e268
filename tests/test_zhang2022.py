"""Tests of vaegen_utils.zhang2022 (paper B's orchestration): settings, shapes, cache reuse.

The real MNIST loader is replaced by fixed synthetic binary images (monkeypatched `load_images`), so
the tests need no data set and run in seconds; every cache lives in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from vaegen_utils import estimators, training, zhang2022
from vaegen_utils.cache import RunCache

N_TRAIN, N_TEST = 40, 20


@pytest.fixture()
def fake_images(monkeypatch):
    """Fixed binary 28x28 images instead of MNIST (training: 40, test: 20)."""
    generator = torch.Generator().manual_seed(3)
    probabilities = torch.rand(1, 1, 28, 28, generator=generator)  # one shared "digit" template
    train = torch.bernoulli(probabilities.expand(N_TRAIN, 1, 28, 28).contiguous(), generator=generator)
    test = torch.bernoulli(probabilities.expand(N_TEST, 1, 28, 28).contiguous(), generator=generator)
    monkeypatch.setattr(zhang2022, "load_images", lambda run: (train, test[: run.n_test]))
    zhang2022.base_key.cache_clear()  # its memo would otherwise hold keys of other images
    yield train, test
    zhang2022.base_key.cache_clear()


def tiny_run(**changes) -> zhang2022.BaseRun:
    settings = dict(dataset="binary_mnist", n_train=N_TRAIN, n_test=N_TEST, seeds=(0, 1), epochs=3,
                    checkpoint_every=2, eval_every=1, num_hidden_layers=1, batch_size=20)
    return zhang2022.BaseRun(**{**settings, **changes})


RETRAIN = zhang2022.RetrainSettings(epochs=1, batch_size=20)
FIT = estimators.PerPointSettings(n_points=4, num_samples=2, max_steps=6, check_every=2, patience=0, eval_samples=5)


# ------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "cifar10"}, "dataset must be one of"),
        ({"seeds": ()}, "seeds needs at least 1 value"),
        ({"seeds": "01"}, "seeds must be a list"),
        ({"seeds": (0, 0)}, "distinct"),
        ({"seeds": (0, -1)}, "seeds"),
        ({"checkpoint_every": 4}, "checkpoint_every"),
        ({"eval_every": 0}, "eval_every"),
        ({"n_test": 10_001}, "n_test"),
        ({"n_train": 0}, "n_train"),
        ({"learning_rate": 0.0}, "learning_rate"),
    ],
)
def test_base_run_rejects_bad_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_run(**changes)


def test_base_run_schedules_and_configs():
    run = tiny_run(epochs=5, checkpoint_every=2, eval_every=3, seeds=[4, 5])
    assert run.seeds == (4, 5)  # lists become tuples: the settings are hashable cache-key material
    assert run.checkpoint_epochs() == [2, 4, 5]  # the final epoch always has a checkpoint
    assert run.eval_epochs() == [2, 3, 4, 5]  # every checkpoint is evaluated too
    config = run.train_config()
    assert config.member_seeds == [4, 5] and config.checkpoint_epochs == [2, 4, 5]
    assert run.model_config().likelihood == "bernoulli"
    assert tiny_run(dataset="mnist").model_config().likelihood == "discretized_logistic"


@pytest.mark.parametrize("alpha", [0, 0.0, 0.25, 0.5, 1, 1.0])
def test_alpha_in_the_unit_interval_is_accepted(alpha):
    assert zhang2022.check_alpha(alpha) == float(alpha)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, True, "0.5", None])
def test_alpha_outside_the_unit_interval_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        zhang2022.check_alpha(alpha)


def test_retrain_modes_validate_alpha(fake_images, tmp_path):
    run, cache = tiny_run(), RunCache(tmp_path)
    with pytest.raises(ValueError, match="alpha=None"):
        zhang2022.retrain_at_checkpoint(run, 2, RETRAIN, mode="optimal_inference", alpha=0.5, cache=cache)
    with pytest.raises(ValueError, match="mode must be one of"):
        zhang2022.retrain_at_checkpoint(run, 2, RETRAIN, mode="wake", cache=cache)
    with pytest.raises(ValueError, match="alpha"):
        zhang2022.self_consistent(run, RETRAIN, alpha=2.0, cache=cache)
    with pytest.raises(ValueError, match="no checkpoint"):
        zhang2022.load_checkpoint(run, 1, cache=cache)
    assert not any(tmp_path.iterdir()), "bad settings must be rejected before anything is trained"


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (zhang2022.RetrainSettings, {"epochs": 0}, "epochs"),
        (zhang2022.RetrainSettings, {"epochs": 2, "eval_every": 3}, "eval_every"),
        (estimators.PerPointSettings, {"n_points": 0}, "n_points"),
        (estimators.PerPointSettings, {"n_points": 4, "patience": -1}, "patience"),
        (estimators.PerPointSettings, {"n_points": 4, "learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_retrain_and_per_point_settings_validate(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


# ------------------------------------------------------------------------------------------
# The pipeline: shapes and cache reuse
# ------------------------------------------------------------------------------------------


def test_every_function_returns_the_documented_shapes_and_reruns_from_the_cache(fake_images, tmp_path, monkeypatch):
    run, cache = tiny_run(), RunCache(tmp_path)
    seeds, checkpoints = len(run.seeds), run.checkpoint_epochs()  # 2 seeds, checkpoints [2, 3]

    curves = zhang2022.learning_curves(run, cache=cache)
    assert curves["epochs"] == [1, 2, 3] and curves["checkpoint_epochs"] == [2, 3]
    assert [len(row) for row in curves["train_bpd"]] == [seeds] * 3 and len(curves["test_bpd"]) == 3
    amortized = zhang2022.amortized_at_checkpoints(run, cache=cache)
    assert amortized["epochs"] == checkpoints and amortized["test_bpd"] == [curves["test_bpd"][1], curves["test_bpd"][2]]

    optimal = zhang2022.optimal_inference(run, RETRAIN, cache=cache)
    consistent = zhang2022.self_consistent(run, RETRAIN, alpha=0.5, cache=cache)
    sweep = zhang2022.alpha_sweep(run, RETRAIN, [0, 0.5, 1], cache=cache)
    per_point = zhang2022.per_point_optimal(run, FIT, RETRAIN, cache=cache)
    iwae = zhang2022.iwae_comparison(run, RETRAIN, num_samples=3, n_points=4, cache=cache)
    official = zhang2022.official_comparison(run, RETRAIN, epoch=2, cache=cache)
    samples = zhang2022.model_samples(run, n=3, cache=cache)
    for result in (optimal, consistent):
        assert result["epochs"] == checkpoints
        assert [len(row) for row in result["test_bpd"]] == [seeds] * len(checkpoints)
        assert all(math.isfinite(value) and value > 0 for row in result["test_bpd"] for value in row)
    assert sweep["epoch"] == 3 and sweep["alphas"] == [0.0, 0.5, 1.0] and len(sweep["test_bpd"]) == 3
    assert sweep["test_bpd"][1] == consistent["test_bpd"][-1], "alpha = 0.5 at the last checkpoint is one shared cache entry"
    for name in ("amortized_bpd", "optimal_inference_bpd", "per_point_bpd", "fraction_converged", "mean_steps"):
        assert [len(row) for row in per_point[name]] == [seeds] * len(checkpoints), name
    assert set(zhang2022.ENCODERS) <= set(iwae) and all(len(iwae[e]["iwae_bpd"]) == seeds for e in zhang2022.ENCODERS)
    assert official["n_images"] == N_TEST and len(official["self_consistent_bpd"]) == seeds
    assert tuple(samples.shape) == (seeds, 3, 1, 28, 28) and set(samples.unique().tolist()) <= {0.0, 1.0}

    # Second pass: nothing may be trained or estimated again; the cache answers everything.
    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed although the result is cached")

    for module, name in [(training, "retrain_encoder"), (estimators, "amortization_gap"), (estimators, "iwae_bound"),
                         (estimators, "gaussian_elbo")]:
        monkeypatch.setattr(module, name, forbidden)
    base = zhang2022.train_base(run, cache=cache)
    assert base.resumed_from == run.epochs, "the finished base run is loaded, not retrained"
    assert zhang2022.optimal_inference(run, RETRAIN, cache=cache) == optimal
    assert zhang2022.self_consistent(run, RETRAIN, alpha=0.5, cache=cache) == consistent
    assert zhang2022.alpha_sweep(run, RETRAIN, [0, 0.5, 1], cache=cache) == sweep
    assert zhang2022.per_point_optimal(run, FIT, RETRAIN, cache=cache) == per_point
    assert zhang2022.iwae_comparison(run, RETRAIN, num_samples=3, n_points=4, cache=cache) == iwae
    assert torch.equal(zhang2022.model_samples(run, n=3, cache=cache), samples)
    assert all(path.name.split("-", 1)[1].startswith("zhang2022-") for path in tmp_path.iterdir())


def test_retraining_freezes_the_decoder_and_alpha_changes_the_run(fake_images, tmp_path):
    run, cache = tiny_run(), RunCache(tmp_path)
    checkpoint = zhang2022.load_checkpoint(run, 2, cache=cache)
    wake = zhang2022.retrained_model(run, 2, RETRAIN, mode="self_consistent", alpha=0.0, cache=cache)
    half = zhang2022.retrained_model(run, 2, RETRAIN, mode="self_consistent", alpha=0.5, cache=cache)
    for model in (wake, half):  # paper B eqs. 12/16: theta fixed, only phi trained
        for before, after in zip(checkpoint.decoder_parameters(), model.decoder_parameters()):
            assert torch.equal(before, after)
        assert any(not torch.equal(b, a) for b, a in zip(checkpoint.encoder_parameters(), model.encoder_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(wake.encoder_parameters(), half.encoder_parameters()))


def test_per_point_subset_larger_than_the_test_set_is_rejected(fake_images, tmp_path):
    big = estimators.PerPointSettings(n_points=N_TEST + 1)
    with pytest.raises(ValueError, match="n_points"):
        zhang2022.per_point_optimal(tiny_run(), big, RETRAIN, cache=RunCache(tmp_path))


# ------------------------------------------------------------------------------------------
# Named runs and figure settings: one definition per profile, overrides, refusals
# ------------------------------------------------------------------------------------------

PROFILES = ("smoke", "cpu", "paper")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_builds_valid_settings_and_the_notebooks_share_their_runs(profile):
    fig1a, fig1b, fig2 = (zhang2022.fig1a_settings(profile), zhang2022.fig1b_settings(profile),
                          zhang2022.fig2_settings(profile))
    # One definition: the three notebooks (and the gap decomposition) get the same base run and retraining.
    assert fig1a.run == fig1b.run == fig2.binary == zhang2022.base_run(profile)
    assert fig2.grey == zhang2022.base_run(profile, "mnist") and fig2.grey.dataset == "mnist"
    assert fig1b.retrain == fig2.retrain == zhang2022.retrain_settings(profile)
    assert fig1b.per_point.n_points <= fig1b.run.n_test and fig2.iwae_images <= fig2.binary.n_test
    assert set(zhang2022.SWEEP_ALPHAS_COMPARED) <= set(fig2.alphas) and fig2.alpha in fig2.alphas
    for settings in (fig1a, fig1b, fig2):  # the results JSON's config
        assert json.loads(json.dumps(settings.to_dict())) == settings.to_dict()
    # The greyscale run differs from the binary one only where its profile table says so.
    differing = {name for name in zhang2022.BaseRun.__dataclass_fields__ if getattr(fig2.binary, name) != getattr(fig2.grey, name)}
    assert differing <= {"dataset", "epochs"}


def test_notebooks_needing_the_same_model_get_one_cache_key(fake_images):
    fig1a, fig2 = zhang2022.fig1a_settings("smoke"), zhang2022.fig2_settings("smoke")
    assert zhang2022.base_key(fig1a.run) == zhang2022.base_key(fig2.binary)
    assert zhang2022.base_key(fig2.binary) != zhang2022.base_key(fig2.grey)
    # Overrides that spell the profile's value (or None) give the very same run, hence the same cache entry.
    same = zhang2022.fig1a_settings("smoke", epochs=2, seeds=[0, 1], n_train=None)
    assert same == fig1a and zhang2022.base_key(same.run) == zhang2022.base_key(fig1a.run)
    assert zhang2022.base_key(zhang2022.fig1a_settings("smoke", epochs=3).run) != zhang2022.base_key(fig1a.run)


def test_overrides_change_only_their_field_and_none_keeps_the_profile_value():
    cpu = zhang2022.base_run("cpu")
    assert zhang2022.base_run("cpu", epochs=None, seeds=None) == cpu
    longer = zhang2022.fig1a_settings("cpu", epochs=80, seeds=[4, 5]).run
    assert (longer.epochs, longer.seeds) == (80, (4, 5))
    assert dataclasses.replace(longer, epochs=cpu.epochs, seeds=cpu.seeds) == cpu
    assert zhang2022.base_run("cpu", n_train=60_000).n_train is None  # all images: one spelling, one cache key
    # The gap decomposition's paper profile: paper B's base run on 1000 images.
    assert zhang2022.base_run("paper", n_train=1000) == dataclasses.replace(zhang2022.base_run("paper"), n_train=1000)

    fig1b = zhang2022.fig1b_settings("cpu", retrain_epochs=7, per_point_n_points=4, per_point_max_steps=30, epochs=40)
    assert fig1b.retrain == dataclasses.replace(zhang2022.retrain_settings("cpu"), epochs=7)
    assert (fig1b.per_point.n_points, fig1b.per_point.max_steps) == (4, 30) and fig1b.run.epochs == 40
    assert fig1b.per_point.learning_rate == zhang2022.fig1b_settings("cpu").per_point.learning_rate

    fig2 = zhang2022.fig2_settings("cpu", epochs=80, seeds=[1], alphas=[0, 0.5, 1], iwae_samples=5, compare_epoch=40)
    assert fig2.binary.epochs == fig2.grey.epochs == 80, "plain base-run overrides apply to both models"
    assert fig2.binary.seeds == fig2.grey.seeds == (1,) and fig2.alphas == (0.0, 0.5, 1.0)
    assert (fig2.iwae_samples, fig2.compare_epoch) == (5, 40)
    grey_only = zhang2022.fig2_settings("cpu", epochs=80, grey_epochs=40)
    assert (grey_only.binary.epochs, grey_only.grey.epochs) == (80, 40), "grey_<field> wins for the greyscale model"
    assert zhang2022.fig2_settings("cpu", grey_epochs=None) == zhang2022.fig2_settings("cpu")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: zhang2022.base_run("cpu", epoch=10), r"'epoch' \(did you mean 'epochs'\?\).*valid fields: .*epochs"),
        (lambda: zhang2022.base_run("cpu", dataset="cifar10"), "unknown dataset 'cifar10'"),
        (lambda: zhang2022.base_run("gpu"), "unknown profile 'gpu'"),
        (lambda: zhang2022.retrain_settings("cpu", epoch=3), r"did you mean 'epochs'"),
        (lambda: zhang2022.fig1a_settings("cpu", retrain_epochs=3), r"'retrain_epochs'.*valid fields"),
        (lambda: zhang2022.fig1b_settings("cpu", retrain_epoch=3), r"did you mean 'retrain_epochs'"),
        (lambda: zhang2022.fig1b_settings("cpu", per_point_points=3), r"valid fields: .*per_point_n_points"),
        (lambda: zhang2022.fig2_settings("cpu", grey_epoch=3), r"did you mean 'grey_epochs'"),
        (lambda: zhang2022.fig2_settings("cpu", alpha_s=[0.5]), r"valid fields: .*alphas"),
    ],
)
def test_unknown_override_names_are_refused_with_the_valid_ones(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: zhang2022.base_run("cpu", seeds="15"), "seeds must be a list.*got the string '15'"),
        (lambda: zhang2022.fig1a_settings("cpu", seeds="0"), "seeds must be a list"),
        (lambda: zhang2022.fig2_settings("cpu", grey_seeds="01"), "seeds must be a list"),
        (lambda: zhang2022.fig2_settings("cpu", alphas="0.5"), "alphas must be a list.*got the string"),
        (lambda: zhang2022.fig2_settings("cpu", alphas=[0.5, 1.0]), r"alphas must include \[0.0, 0.5, 1.0\]"),
        (lambda: zhang2022.fig2_settings("cpu", alphas=[0, 0.5, 1, 2]), r"alphas\[3\] must be <= 1"),
        (lambda: zhang2022.fig2_settings("cpu", alpha="0.5"), "alpha must be a number"),
        (lambda: zhang2022.fig2_settings("cpu", compare_epoch=30), "unknown compare_epoch 30"),
        (lambda: zhang2022.fig2_settings("smoke", iwae_images=51), "iwae_images must be an integer in 1..50"),
        (lambda: zhang2022.fig1b_settings("smoke", per_point_n_points=51), "n_points=51 exceeds the run's n_test=50"),
        (lambda: zhang2022.fig1a_settings("cpu", epochs=10, checkpoint_every=20), "checkpoint_every"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_alpha_sweep_refuses_a_string_of_alphas(fake_images, tmp_path):
    with pytest.raises(ValueError, match="alphas must be a list"):
        zhang2022.alpha_sweep(tiny_run(), RETRAIN, "0.5", cache=RunCache(tmp_path))
    assert not any(tmp_path.iterdir())
