"""Tests of vaegen_utils.bozkurt2021: budgets, split plumbing, curve shapes and one tiny cached sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaegen_utils import bozkurt2021 as c
from vaegen_utils import tetrominoes
from vaegen_utils.cache import RunCache
from vaegen_utils.ensemble import EnsembleConvVAE, EnsembleMLPVAE


def test_paper_constants():
    assert c.BETAS == (0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0)
    assert c.PAPER_ITERATIONS == 257_000 and c.BATCH_SIZE == 128 and c.MI_BATCH_SIZE == 512


def test_iteration_budget_converts_to_whole_epochs():
    assert c.steps_per_epoch(16_384) == 128 and c.steps_per_epoch(81_920) == 640 and c.steps_per_epoch(82_021) == 641
    assert c.epochs_for_iterations(257_000, 16_384) == 2008  # papers.md C.5: ~2,008 epochs of 16k
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
                dict(max_train=0)):
        with pytest.raises(ValueError):
            c.SweepSpec(**{"architecture": "mlp1", "iterations": 10, **bad})


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
