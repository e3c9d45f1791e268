"""Tests of vaegen_utils.decomposition: gap arithmetic, estimators, a tiny end-to-end run.

The arithmetic is checked on hand-made numbers; the end-to-end test replaces MNIST by fixed synthetic
binary images (monkeypatched `zhang2022.load_images`) and the diffusion sample bank by a fake one, so
it needs no data set and no diffusion model; every cache lives in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vaegen_utils import decomposition, estimators, models, training, xiao2024, zhang2022
from vaegen_utils.cache import RunCache

N_TRAIN, N_TEST = 20, 20

# One seed's levels (nats) with round gaps: model 5, remaining 3, residual amortization 2,
# inference generalization 10; G_g = -80 - (-100) = 20.
LEVELS = {
    "train_elbo_all": [-80.0],
    "test_elbo_all": [-100.0],
    "train_elbo": [-82.0],
    "train_elbo_optimal": [-81.0],
    "train_log_p": [-78.0],
    "test_elbo": [-98.0],
    "test_elbo_retrained": [-88.0],
    "test_elbo_optimal": [-86.0],
    "test_log_p": [-83.0],
    "test_iwae_amortized": [-90.0],
}


# ------------------------------------------------------------------------------------------
# Pure arithmetic
# ------------------------------------------------------------------------------------------


def test_decompose_on_known_numbers():
    gaps = decomposition.decompose(LEVELS)
    expected = {
        "model_gap": 5.0,
        "remaining_variational_gap": 3.0,
        "residual_amortization_gap": 2.0,
        "inference_generalization_gap": 10.0,
        "amortization_gap": 12.0,
        "generalization_gap": 20.0,
        "total": 20.0,  # log p(train) - ELBO_test = -78 - (-98)
        "train_variational_gap": 4.0,
    }
    assert set(gaps) == set(decomposition.GAPS)
    for name, value in expected.items():
        assert gaps[name] == pytest.approx([value]), name


def test_the_stack_sums_to_the_total_and_amortization_splits_per_seed():
    generator = torch.Generator().manual_seed(0)
    levels = {name: (torch.randn(3, generator=generator, dtype=torch.float64) * 10 - 90).tolist()
              for name in decomposition.LEVELS}
    gaps = decomposition.decompose(levels)
    for seed in range(3):
        assert sum(gaps[name][seed] for name in decomposition.STACK) == pytest.approx(gaps["total"][seed])
        assert gaps["amortization_gap"][seed] == pytest.approx(
            gaps["inference_generalization_gap"][seed] + gaps["residual_amortization_gap"][seed])


def test_decompose_rejects_missing_levels_and_ragged_seeds():
    with pytest.raises(ValueError, match="lack"):
        decomposition.decompose({name: LEVELS[name] for name in list(LEVELS)[1:]})
    with pytest.raises(ValueError, match="same non-zero number of seeds"):
        decomposition.decompose({**LEVELS, "test_log_p": [-83.0, -84.0]})


def test_summary_table_and_smallest():
    other = {name: [value[0] + 1.0, value[0] - 1.0] for name, value in LEVELS.items()}
    other["test_elbo"] = [-89.0, -93.0]  # retrained -87, -89: inference generalization gap 2 and 4, smaller than 10
    summarised = decomposition.summary({"normal": LEVELS, "dmaapx": other})
    assert summarised["normal"]["inference_generalization_gap"] == {"mean": 10.0, "sd": 0.0, "per_seed": [10.0]}
    assert summarised["dmaapx"]["inference_generalization_gap"]["mean"] == pytest.approx(3.0)
    assert summarised["dmaapx"]["inference_generalization_gap"]["sd"] == pytest.approx(math.sqrt(2.0))
    assert decomposition.smallest(summarised, "inference_generalization_gap") == "dmaapx"
    table = decomposition.markdown_table(summarised, {"normal": "Normal", "dmaapx": "DMaaPx"}, ["model_gap", "total"])
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| method | model gap |")
    assert "| Normal | 5.00 ± 0.00 | 20.00 ± 0.00 |" in lines


# ------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------


def tiny_setup(**changes) -> decomposition.Setup:
    base = zhang2022.BaseRun(dataset="binary_mnist", n_train=N_TRAIN, n_test=N_TEST, seeds=(0, 1), epochs=1,
                             checkpoint_every=1, eval_every=1, num_hidden_layers=1, batch_size=10)
    settings = dict(
        base=base,
        retrain=zhang2022.RetrainSettings(epochs=1, batch_size=10),
        fit=estimators.PerPointSettings(n_points=4, num_samples=2, max_steps=4, check_every=2, patience=0, eval_samples=3),
        bank_blocks=2,
        iwae_samples=5,
        elbo_samples=2,
    )
    return decomposition.Setup(**{**settings, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"beta": 0.0}, "beta must be a positive number"),
        ({"beta": True}, "beta must be a positive number"),
        ({"alpha": 1.5}, "alpha"),
        ({"augment_p": 2.0}, "augment_p"),
        ({"bank_blocks": 0}, "bank_blocks"),
        ({"iwae_samples": 0}, "iwae_samples"),
        ({"fit": estimators.PerPointSettings(n_points=N_TEST + 1)}, "exceeds"),
    ],
)
def test_setup_rejects_bad_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_setup(**changes)


def test_setup_rejects_greyscale_mnist_and_unknown_methods():
    base = zhang2022.BaseRun(dataset="mnist", n_train=N_TRAIN, n_test=N_TEST, seeds=(0,), epochs=1,
                             checkpoint_every=1, eval_every=1)
    with pytest.raises(ValueError, match="binary MNIST"):
        tiny_setup(base=base)
    with pytest.raises(ValueError, match="method must be one of"):
        decomposition.check_method("aug_tuned")
    assert tiny_setup().label("beta") == "β = 0.1" and tiny_setup(beta=0.5).label("beta") == "β = 0.5"


# ------------------------------------------------------------------------------------------
# Estimators
# ------------------------------------------------------------------------------------------


def test_iwae_with_the_encoder_as_proposal_equals_iwae_bound():
    model = models.build_model(models.zhang2022_mlp(num_hidden_layers=1), seed=0)
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mean, log_std = model.encode(x)
    ours = estimators.iwae_with_proposal(model, x, mean, log_std, 7, generator=torch.Generator().manual_seed(5))
    reference = estimators.iwae_bound(model, x, 7, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, reference)
    with pytest.raises(ValueError, match="holds 6 points"):
        estimators._FixedProposal(model, mean, log_std).encode(x[:3])


# ------------------------------------------------------------------------------------------
# End to end on 20 fake images, 1 epoch
# ------------------------------------------------------------------------------------------


class FakeSource:
    """Stands in for a diffusion sample bank's data source: fixed 'synthetic' images per epoch."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __call__(self, epoch: int) -> torch.Tensor:
        return self.images

    def describe(self) -> str:
        return "fake_bank_source"


@pytest.fixture()
def fake_data(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    template = torch.rand(1, 1, 28, 28, generator=generator)
    train = torch.bernoulli(template.expand(N_TRAIN, 1, 28, 28).contiguous(), generator=generator)
    test = torch.bernoulli(template.expand(N_TEST, 1, 28, 28).contiguous(), generator=generator)
    synthetic = torch.bernoulli(template.expand(N_TRAIN, 1, 28, 28).contiguous(), generator=generator)
    monkeypatch.setattr(zhang2022, "load_images", lambda run: (train, test[: run.n_test]))

    class FakeBank:
        def data_source(self, block_size, *, num_blocks, binarize, pad_to):
            assert (block_size, binarize, pad_to) == (N_TRAIN, True, None)
            return FakeSource(synthetic)

    monkeypatch.setattr(decomposition, "bank", lambda setup, progress=None: FakeBank())
    zhang2022.base_key.cache_clear()
    decomposition.method_key.cache_clear()
    yield
    zhang2022.base_key.cache_clear()
    decomposition.method_key.cache_clear()


def test_end_to_end_on_twenty_images_and_rerun_from_the_cache(fake_data, tmp_path, monkeypatch):
    setup, cache = tiny_setup(), RunCache(tmp_path)
    measured = decomposition.measure_all(setup, cache=cache)
    assert list(measured) == list(decomposition.METHODS)
    for method, levels in measured.items():
        for name in decomposition.LEVELS:
            assert len(levels[name]) == 2 and all(math.isfinite(v) for v in levels[name]), (method, name)
    # The self-consistent encoder sits on normal training's decoder: the decoder-only levels are shared.
    for name in decomposition.DECODER_LEVELS:
        assert measured["self_consistent"][name] == measured["normal"][name]
    assert measured["self_consistent"]["test_elbo"] != measured["normal"]["test_elbo"]
    # beta changed the training; the retrained-on-test encoder fits the test images better than the amortized one.
    assert measured["beta"]["train_elbo_all"] != measured["normal"]["train_elbo_all"]
    summarised = decomposition.summary(measured)
    assert set(summarised) == set(decomposition.METHODS)
    assert all(len(summarised[m]["total"]["per_seed"]) == 2 for m in summarised)

    # Second pass: nothing is trained or estimated again.
    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed although the result is cached")

    for module, name in [(training, "retrain_encoder"), (estimators, "fit_optimal_posterior"), (estimators, "iwae_bound"),
                         (estimators, "gaussian_elbo")]:
        monkeypatch.setattr(module, name, forbidden)
    assert decomposition.measure_all(setup, cache=cache) == measured
    assert decomposition.train_method(setup, "dmaapx", cache=cache).resumed_from == setup.epoch
    with pytest.raises(ValueError, match="not trained from scratch"):
        decomposition.train_method(setup, "self_consistent", cache=cache)


# ------------------------------------------------------------------------------------------
# The notebook shares the zhang2022 models and the xiao2024 bank
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_setup_reuses_the_zhang2022_models_and_the_xiao2024_bank(profile):
    setup = decomposition.setup(profile)
    base = zhang2022.base_run(profile)
    # The normal models are zhang2022's (same cache key) except in the paper profile, which trains on
    # the shipped diffusion model's 1000 images (DMaaPx needs a DM trained on the VAE's own data).
    if profile == "paper":
        assert setup.base.n_train == 1000 and setup.base == dataclasses.replace(base, n_train=1000)
    else:
        assert setup.base == base and zhang2022.base_key(setup.base) == zhang2022.base_key(base)
    assert setup.retrain == zhang2022.retrain_settings(profile)
    assert setup.bank == xiao2024.bank_settings(profile)
    if profile != "paper":  # the bank blocks of xiao2024's study (paper: k = 1000 there, 10 here)
        assert setup.bank_blocks == xiao2024.study(profile, "binary_mnist").bank_blocks


def test_setup_overrides_and_refuses_unknown_sizes():
    setup = decomposition.setup("smoke", epochs=3, seeds=[4], n_points=5, stage="early")
    assert setup.base.epochs == 3 and setup.base.seeds == (4,) and setup.fit.n_points == 5 and setup.bank.stage == "early"
    assert decomposition.setup("smoke", n_points=None).fit.n_points == decomposition.SETUP_BY_PROFILE["smoke"]["n_points"]
    with pytest.raises(ValueError, match=r"unknown decomposition.setup size field\(s\) 'n_point'"):
        decomposition.setup("smoke", n_point=5)

