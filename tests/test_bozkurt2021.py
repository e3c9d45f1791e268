"""Tests of vaegen_utils.bozkurt2021: named runs, figure settings, budgets, splits, curves, a tiny cached sweep."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from vaegen_utils import bozkurt2021 as c
from vaegen_utils import tetrominoes
from vaegen_utils.cache import RunCache
from vaegen_utils.ensemble import EnsembleConvVAE, EnsembleMLPVAE
from vaegen_utils.profiles import PROFILES


def test_paper_constants():
    assert c.BETAS == (0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0)
    assert c.PAPER_ITERATIONS == 257_000 and c.BATCH_SIZE == 128 and c.MI_BATCH_SIZE == 512


def test_iteration_budget_converts_to_whole_epochs():
    assert c.steps_per_epoch(16_384) == 128 and c.steps_per_epoch(81_920) == 640 and c.steps_per_epoch(82_021) == 641
    assert c.epochs_for_iterations(257_000, 16_384) == 2008  # §4.3's 257k iterations: ~2,008 epochs of 16k
    assert c.epochs_for_iterations(257_000, 81_920) == 402
    assert c.epochs_for_iterations(10, 81_920) == 1  # at least one epoch
    with pytest.raises(ValueError):
        c.epochs_for_iterations(0, 100)


def test_model_configs_are_the_papers_networks():
    mlp = c.model_config("mlp3")
    assert mlp.hidden_sizes == (512, 512, 512) and mlp.latent_dim == 10 and mlp.likelihood == "bernoulli"
    cnn = c.model_config("cnn1", (3, 32, 32))
    assert cnn.channels == 64 and cnn.kernel_size == 4 and cnn.stride == 2 and cnn.num_layers == 1
    assert c.model_config("mlp1", (1, 28, 28)).data_shape == (1, 28, 28)
    with pytest.raises(ValueError, match="unknown architecture"):
        c.model_config("resnet")


def test_labels_follow_the_papers_notation(tmp_path):
    assert c.short_count(16_384) == "16k" and c.short_count(147_456) == "147k" and c.short_count(600) == "600"
    data = tetrominoes.load_tetrominoes(strata=(2, 2, 2, 2, 2), data_dir=tmp_path)  # 32 points, generated in a blink
    split = c.tetromino_split(data, "cv-8")
    assert split.num_train == 8 and split.num_test == 24 and split.label == "CV(8/24)"
    assert c.tetromino_split(data, "random").label == "CV(16/16)"
    assert c.tetromino_split(data, "checkerboard").label.startswith("Checkerboard(")


def test_split_data_gathers_rows_lazily_and_consistently(tmp_path):
    data = tetrominoes.load_tetrominoes(strata=(2, 2, 2, 2, 2), data_dir=tmp_path)
    split = c.tetromino_split(data, "cv-8")
    torch.testing.assert_close(split.train, data.images[torch.from_numpy(split.train_indices)])
    torch.testing.assert_close(split.train_subset(3), split.train[:3])
    torch.testing.assert_close(split.test_rows([2, 0]), split.test[[2, 0]])
    torch.testing.assert_close(split.train_rows([5]), split.train[[5]])
    assert split.spec()["num_train"] == 8 and split.spec()["dataset"] == "tetrominoes"


def test_difficult_example_is_at_the_requested_percentile():
    distances = np.arange(1.0, 101.0)  # 1 ... 100
    neighbours = {"distances": distances, "test_rows": np.arange(100) + 1000, "train_rows": np.arange(100)}
    example = c.difficult_example(neighbours, 90.0)
    assert example["percentile_distance"] == pytest.approx(np.percentile(distances, 90))
    assert example["test_row"] == 1000 + 89 and example["train_row"] == 89


def test_curve_mean_sd_and_gap():
    runs = [
        {"betas": [0.1, 1.0], "train": {"rate": [4, 2], "distortion": [10, 12], "elbo": [-14, -14]},
         "test": {"rate": [4, 2], "distortion": [11, 12], "elbo": [-15, -14]}},
        {"betas": [0.1, 1.0], "train": {"rate": [6, 2], "distortion": [10, 14], "elbo": [-16, -16]},
         "test": {"rate": [6, 2], "distortion": [13, 14], "elbo": [-19, -16]}},
    ]
    curve = c.Curve.from_runs(runs)
    assert curve.num_restarts == 2
    np.testing.assert_allclose(curve.mean("train", "rate"), [5, 2])
    np.testing.assert_allclose(curve.sd("train", "rate"), [math.sqrt(2), 0])
    np.testing.assert_allclose(curve.gap(), [[1, 0], [3, 0]])
    assert curve.to_dict()["test_distortion_mean"] == [12, 13]
    with pytest.raises(ValueError, match="β grid"):
        c.Curve.from_runs([runs[0], {**runs[1], "betas": [0.1, 2.0]}])


def test_sweep_spec_validates_and_derives_a_train_config():
    spec = c.SweepSpec("mlp1", 300, restart=1)
    config = spec.train_config(16_384)
    assert config.epochs == 2 and config.batch_size == 128 and config.beta == list(c.BETAS)
    assert config.member_seeds == [spec.noise_seed] * 12 and config.precision == "bfloat16"
    assert spec.init_seed != c.SweepSpec("mlp1", 300, restart=2).init_seed
    assert spec.to_dict()["betas"] == list(c.BETAS)
    for bad in (dict(architecture="mlp2"), dict(iterations=0), dict(precision="half"), dict(betas=()),
                dict(max_train=0), dict(betas=[0.1, -1.0]), dict(learning_rate=0.0)):
        with pytest.raises(ValueError):
            c.SweepSpec(**{"architecture": "mlp1", "iterations": 10, **bad})
    assert c.SweepSpec("mlp1", 10, betas=np.array([0.1, 1.0])).betas == (0.1, 1.0)  # a 1-D array is a list


@pytest.mark.parametrize("betas", ["15", "0.5", 0.5, b"15", {0.1, 1.0}])
def test_sweep_spec_refuses_betas_that_are_not_a_list(betas):
    # A string used to be read one character at a time: betas="15" trained β = (1.0, 5.0).
    with pytest.raises(ValueError, match="betas must be a list"):
        c.SweepSpec("mlp1", 10, betas=betas)
    with pytest.raises(ValueError, match="betas must be a list"):
        c.fig03_settings("smoke", betas=betas)


def test_sweep_spec_names_its_valid_fields_for_a_misspelt_one():
    with pytest.raises(ValueError, match=r"unknown SweepSpec field\(s\) 'iteration' \(did you mean 'iterations'\?\); "
                                         r"valid fields: architecture, iterations"):
        c.SweepSpec(architecture="mlp1", iteration=10)


# ---------------------------------------------------------------------------------------- named runs


SETTINGS_BUILDERS = [c.fig01_settings, c.fig03_settings, c.fig04_settings, c.fig07_settings, c.fig08_settings]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("builder", SETTINGS_BUILDERS, ids=lambda builder: builder.__name__)
def test_every_figure_has_valid_settings_in_every_profile(builder, profile):
    settings = builder(profile)
    assert settings.profile == profile
    document = settings.to_dict()
    assert json.loads(json.dumps(document)) == document  # JSON-ready for the results file
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.profile = "cpu"
    for key, spec in settings.sweeps():
        assert isinstance(spec, c.SweepSpec) and spec.betas == c.betas(profile), key
    if builder is not c.fig01_settings:
        assert settings.betas == c.betas(profile) and settings.sweeps()


def test_profile_grids_and_budgets():
    assert c.betas("paper") == c.BETAS and c.betas("cpu") == c.CPU_BETAS and set(c.CPU_BETAS) <= set(c.BETAS)
    assert c.betas("smoke") == c.SMOKE_BETAS
    for profile in PROFILES:
        assert c.sweep(profile, c.DENSE_SPLIT, "mlp3").iterations == c.SWEEPS[profile]["iterations"]
        assert c.sweep(profile, c.SPARSE_SPLIT, "mlp3").iterations == c.SWEEPS[profile]["sparse_mlp3_iterations"]
        assert c.sweep(profile, c.SPARSE_SPLIT, "cnn3").iterations == c.SWEEPS[profile]["cnn_iterations"]
        assert len(c.curve(profile, c.SPARSE_SPLIT, "mlp1")) == c.RESTARTS[profile]["sparse_mlp_restarts"]
        assert len(c.curve(profile, c.DENSE_SPLIT, "mlp1")) == c.RESTARTS[profile]["restarts"]
    paper = c.sweep("paper", c.SPARSE_SPLIT, "mlp3", restart=4)
    assert (paper.iterations, paper.restart, paper.betas, paper.max_train) == (c.PAPER_ITERATIONS, 4, c.BETAS, None)
    assert len(c.curve("paper", c.SPARSE_SPLIT, "cnn1")) == c.PAPER_RESTARTS


@pytest.mark.parametrize("profile", PROFILES)
def test_notebooks_that_need_the_same_sweep_get_the_same_definition(profile):
    fig01, fig03, fig04 = c.fig01_settings(profile), c.fig03_settings(profile), c.fig04_settings(profile)
    fig08 = c.fig08_settings(profile)
    for architecture in ("mlp1", "mlp3"):  # fig08 reads fig03's CV(16k/147k) MLP sweeps, every restart
        assert fig08.curves[architecture] == fig03.curves[(c.SPARSE_SPLIT, architecture)]
        assert [spec.to_dict() for spec in fig08.curves[architecture]] == [
            c.sweep(profile, c.SPARSE_SPLIT, architecture, restart).to_dict()
            for restart in range(len(fig08.curves[architecture]))
        ]
    # fig04's CV(16k/147k) 1-layer curve is restart 0 of fig03's (same spec, same cache entry).
    assert fig04.curves[("cv", "16k", "mlp1")][0] == fig03.curves[(c.SPARSE_SPLIT, "mlp1")][0]
    assert fig01.nn_max_test == fig03.nn_max_test  # one nearest-neighbour search serves Figs. 2 and 3
    float32 = fig08.float32_check
    assert float32.precision == "float32"
    assert dataclasses.replace(float32, precision="bfloat16") == fig03.curves[(c.SPARSE_SPLIT, "mlp1")][0]


def test_overrides_change_every_sweep_they_name_and_none_keeps_the_profile():
    assert c.fig03_settings("cpu", iterations=None, betas=None) == c.fig03_settings("cpu")
    changed = c.fig03_settings("cpu", iterations=100, betas=[0.1, 1.0], sparse_mlp_restarts=3)
    assert changed.curves[(c.DENSE_SPLIT, "mlp1")][0].iterations == 100
    assert changed.curves[(c.SPARSE_SPLIT, "mlp3")][0].iterations == c.SWEEPS["cpu"]["sparse_mlp3_iterations"]
    assert all(spec.betas == (0.1, 1.0) for _, spec in changed.sweeps()) and changed.betas == (0.1, 1.0)
    assert len(changed.curves[(c.SPARSE_SPLIT, "mlp1")]) == 3 and len(changed.curves[(c.DENSE_SPLIT, "mlp1")]) == 1
    both = c.fig03_settings("cpu", checkerboard_architectures=["mlp1", "mlp3"])
    assert (c.CHECKERBOARD_SPLIT, "mlp3") in both.curves
    fig04 = c.fig04_settings("cpu", sizes=["8k", "16k", "33k"], architectures=["mlp1", "mlp3"], restarts=2)
    assert len(fig04.curves) == 12 and all(len(specs) == 2 for specs in fig04.curves.values())
    # Fig. 4 compares sizes at one budget: the 3-layer MLP on CV(16k) is not given fig03's longer one.
    assert {spec.iterations for _, spec in fig04.sweeps()} == {c.SWEEPS["cpu"]["iterations"]}
    fig07 = c.fig07_settings("cpu", num_train=500, datasets=["mnist"], seed=3)
    assert fig07.split() == "cv-500" and fig07.seed == 3 and set(fig07.curves) == {("mnist", "mlp1"), ("mnist", "mlp3")}
    assert all(spec.eval_points == c.FIG07["cpu"]["eval_points"] and spec.max_train is None for _, spec in fig07.sweeps())
    fig08 = c.fig08_settings("smoke", bf16_check_architecture="mlp3", mi_batch_size=32)
    assert fig08.float32_check.architecture == "mlp3" and fig08.mi_batch_size == 32
    assert c.sweep("cpu", c.SPARSE_SPLIT, "mlp1", eval_points=50).eval_points == 50


@pytest.mark.parametrize(
    ("builder", "overrides", "message"),
    [
        (c.fig03_settings, {"iteration": 10}, r"'iteration' \(did you mean 'iterations'\?\); valid fields: "),
        (c.fig04_settings, {"size": ["8k"]}, r"'size' \(did you mean 'sizes'\?\)"),
        (c.fig01_settings, {"betas": [1.0]}, r"unknown cpu-profile setting field\(s\) 'betas'"),
        (c.fig03_settings, {"checkerboard_architectures": "mlp1"}, "checkerboard_architectures must be a list"),
        (c.fig04_settings, {"sizes": "8k"}, "sizes must be a list"),
        (c.fig04_settings, {"sizes": ["9k"]}, r"unknown sizes\[0\] '9k'"),
        (c.fig07_settings, {"datasets": "mnist"}, "datasets must be a list"),
        (c.fig07_settings, {"num_train": 1.5}, "num_train must be an integer"),
        (c.fig08_settings, {"bf16_check_architecture": "mlp2"}, "unknown bf16_check_architecture 'mlp2'"),
        (c.fig03_settings, {"restarts": 0}, "restarts must be an integer >= 1"),
        (c.fig01_settings, {"splits": "random"}, "splits must be a list"),
    ],
)
def test_builders_refuse_bad_overrides_before_any_work(builder, overrides, message):
    with pytest.raises(ValueError, match=message):
        builder("cpu", **overrides)


def test_a_profile_change_is_one_edit_that_every_notebook_follows(monkeypatch):
    monkeypatch.setitem(c.SWEEPS, "cpu", {**c.SWEEPS["cpu"], "iterations": 999, "eval_points": 77})
    for builder in SETTINGS_BUILDERS[1:]:
        assert any(spec.iterations == 999 for _, spec in builder("cpu").sweeps()), builder.__name__
    assert all(spec.eval_points == 77 for _, spec in c.fig03_settings("cpu").sweeps())
    assert c.sweep("cpu", c.DENSE_SPLIT, "mlp1").iterations == 999


@pytest.mark.parametrize("architecture", ["mlp1", "cnn1"])
def test_a_tiny_sweep_trains_once_and_is_served_from_the_cache(architecture, tmp_path):
    data = tetrominoes.load_tetrominoes(strata=(2, 2, 2, 2, 2), data_dir=tmp_path / "data")
    split = c.tetromino_split(data, "cv-16")
    cache = RunCache(tmp_path / "cache")
    spec = c.SweepSpec(architecture, 1, betas=(0.1, 1.0, 5.0), eval_points=8, precision="float32")
    result = c.run_sweep(spec, split, cache=cache)
    assert result["iterations"] == 1 and result["epochs"] == 1 and result["num_train"] == 16
    assert len(result["test"]["distortion"]) == 3 and result["eval_points"] == {"train": 8, "test": 8}
    trained = c.train_sweep(spec, split, cache=cache).model
    assert isinstance(trained, EnsembleMLPVAE if architecture == "mlp1" else EnsembleConvVAE)
    assert c.run_sweep(spec, split, cache=cache) == result  # cached: identical numbers, no training
    images = c.sweep_reconstructions(spec, split, [0, 3], cache=cache)
    assert images.shape == (3, 2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    decomposition = c.sweep_rate_decomposition(spec, split, estimator="full", cache=cache)
    assert decomposition["num_data"] == 16 and len(decomposition["mutual_information"]) == 3
    assert max(decomposition["mutual_information"]) <= math.log(16) + 1e-9
    neighbours = c.nearest_neighbours(split, max_test=5, cache=cache)
    assert len(neighbours["distances"]) == 5 and neighbours["train_rows"].max() < 16
