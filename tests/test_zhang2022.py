"""Tests of vaegen_utils.zhang2022 (paper B's orchestration): settings, shapes, cache reuse.

The real MNIST loader is replaced by fixed synthetic binary images (monkeypatched `load_images`), so
the tests need no data set and run in seconds; every cache lives in a temporary folder.
"""

from __future__ import annotations

import ast
import math

import pytest
import torch

from vaegen_utils import estimators, paths, training, zhang2022
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
        ({"seeds": ()}, "non-empty list"),
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
# The three notebooks must describe the same runs, or they would not share the cache
# ------------------------------------------------------------------------------------------

NOTEBOOKS = ["zhang2022_fig1a_overfitting", "zhang2022_fig1b_optimal_inference", "zhang2022_fig2_self_consistent"]
BASE_SETTINGS = ["NUM_HIDDEN_LAYERS", "BATCH_SIZE", "LEARNING_RATE", "SUBSET_SEED", "N_TRAIN_BY_PROFILE",
                 "EPOCHS_BY_PROFILE", "CHECKPOINT_EVERY_BY_PROFILE", "EVAL_EVERY_BY_PROFILE", "SEEDS_BY_PROFILE",
                 "N_TEST_BY_PROFILE"]
RETRAIN_SETTINGS = ["RETRAIN_EPOCHS_BY_PROFILE", "RETRAIN_EVAL_EVERY_BY_PROFILE", "RETRAIN_LEARNING_RATE", "RETRAIN_SEED"]


def parameters(notebook: str) -> dict:
    """The literal assignments of a notebook's parameters cell (the first `# %%` cell tagged parameters)."""
    source = (paths.repo_root() / "notebooks" / f"{notebook}.py").read_text(encoding="utf-8")
    cell = source.split('# %% tags=["parameters"]', 1)[1].split("\n# %%", 1)[0]
    values = {}
    for node in ast.parse(cell).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass  # PROFILE = current_profile()
    return values


def test_the_three_notebooks_share_the_base_run_and_the_retraining_settings():
    cells = {notebook: parameters(notebook) for notebook in NOTEBOOKS}
    for name in BASE_SETTINGS:
        values = {notebook: cells[notebook].get(name) for notebook in NOTEBOOKS}
        assert len({repr(value) for value in values.values()}) == 1, f"{name} differs between the notebooks: {values}"
    for name in RETRAIN_SETTINGS:
        values = {notebook: cells[notebook].get(name) for notebook in NOTEBOOKS[1:]}
        assert len({repr(value) for value in values.values()}) == 1, f"{name} differs between fig1b and fig2: {values}"
