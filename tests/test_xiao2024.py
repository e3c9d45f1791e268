"""Paper A experiment module (vaegen_utils/xiao2024.py) and the consistency of its notebooks."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from vaegen_utils import cache as vcache
from vaegen_utils import estimators, xiao2024

REPO = Path(__file__).resolve().parents[1]
VAE_NOTEBOOKS = sorted(
    path for path in (REPO / "notebooks").glob("xiao2024_fig*.py")
)
# Settings every xiao2024 VAE notebook must share, so the notebooks reuse one cached model set.
SHARED = (
    "SUBSET_SEED", "N_TRAIN_BY_PROFILE", "N_TEST_BY_PROFILE", "SEEDS_BY_PROFILE", "EPOCHS_BY_PROFILE",
    "EVAL_EVERY_BY_PROFILE", "CHECKPOINT_EVERY_BY_PROFILE", "BANK_BLOCKS_BY_PROFILE", "BANK_SAMPLER_BY_PROFILE",
    "BANK_STEPS_BY_PROFILE", "BANK_SEED", "FIT_POINTS_BY_PROFILE", "FIT_SAMPLES", "FIT_LEARNING_RATE",
    "FIT_MAX_STEPS_BY_PROFILE", "FIT_CHECK_EVERY", "FIT_PATIENCE", "FIT_EVAL_SAMPLES_BY_PROFILE",
)


def tiny_study(**changes) -> xiao2024.Study:
    settings = dict(variant="binary_mnist", n_train=20, n_test=20, seeds=[0], epochs=2, eval_every=1, checkpoint_every=1,
                    batch_size=10, latent_dim=2, hidden_width=8)
    settings.update(changes)
    return xiao2024.Study(**settings)


def parameter_values(path: Path) -> dict:
    """Literal assignments of a notebook's parameters cell (the cell tagged `parameters`)."""
    source = path.read_text()
    start = source.index('# %% tags=["parameters"]')
    end = source.index("# %%", start + 10)
    values = {}
    for node in ast.parse(source[start:end]).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass  # PROFILE = current_profile()
    return values


# --------------------------------------------------------------------------------------------
# Settings and errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variant": "cifar"}, "variant must be one of"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [0, 0]}, "seeds must be a non-empty list of distinct"),
        ({"batch_size": 50}, "batch_size must be an integer in 1..20"),
        ({"checkpoint_every": 5}, "checkpoint_every must be an integer in 1..2"),
        ({"bank_blocks": 0}, "k of Algorithm 2"),
        ({"bank": "ddim"}, "bank must be a BankSettings"),
    ],
)
def test_bad_study_settings_fail_early_with_the_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_study(**changes)


def test_bad_method_and_bank_stage_are_named():
    with pytest.raises(ValueError, match="method must be one of"):
        xiao2024.check_method("mixup")
    with pytest.raises(ValueError, match="stage must be 'final' or 'early'"):
        xiao2024.BankSettings(stage="middle")


def test_model_follows_paper_a_and_the_size_settings():
    study = tiny_study(latent_dim=5, hidden_width=7)
    config = study.model_config()
    assert config.data_shape == (1, 32, 32), "paper A App. B.1: 1024 = 32 x 32 inputs"
    assert config.latent_dim == 5 and config.hidden_sizes == (7, 7)
    assert xiao2024.Study(**{**tiny_study().__dict__, "variant": "fashion_mnist"}).model_config().likelihood == "fixed_variance_gaussian"
    assert study.checkpoint_epochs() == [1, 2] and study.bank_size() == 10 * 20


# --------------------------------------------------------------------------------------------
# Training methods on real (tiny) data
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def run_cache(tmp_path):
    return vcache.RunCache(tmp_path / "runs")


def test_images_are_real_and_zero_padded_to_32():
    train, test = xiao2024.load_images(tiny_study())
    assert train.shape == (20, 1, 32, 32) and test.shape == (20, 1, 32, 32)
    assert train[:, :, :2].abs().sum() == 0 and train[:, :, :, -2:].abs().sum() == 0, "the 2-pixel border is padding"
    assert set(train.unique().tolist()) == {0.0, 1.0}, "BinaryMNIST stays binary"


@pytest.mark.parametrize("method", ["normal", "aug_naive", "aug_tuned"])
def test_each_method_trains_and_gap_g_is_train_minus_test(method, run_cache):
    study = tiny_study()
    curves = xiao2024.gap_curves(study, method, None, cache=run_cache)
    assert curves["epochs"] == [1, 2]
    for train, test, gap in zip(curves["train_elbo"], curves["test_elbo"], curves["G_g"]):
        assert gap == pytest.approx([a - b for a, b in zip(train, test)])
        assert all(math.isfinite(v) and v < 0 for v in train + test)


def test_augmented_runs_differ_from_normal_and_reruns_hit_the_cache(run_cache):
    study = tiny_study()
    normal = xiao2024.learning_curves(study, "normal", cache=run_cache)
    naive = xiao2024.learning_curves(study, "aug_naive", cache=run_cache)
    assert normal["train_elbo"] != naive["train_elbo"], "augmentation must change what the VAE trains on"
    assert xiao2024.run_key(study, "normal") != xiao2024.run_key(study, "aug_naive")
    again = xiao2024.learning_curves(study, "normal", cache=run_cache)
    assert again == normal


def test_amortization_gap_is_non_negative_on_average(run_cache):
    fit = estimators.PerPointSettings(n_points=5, num_samples=1, learning_rate=1e-2, max_steps=100, check_every=20,
                                    patience=2, eval_samples=50)
    result = xiao2024.gaps_at_checkpoint(tiny_study(), "normal", 2, fit, cache=run_cache)
    assert result["G_a"][0] == pytest.approx(result["optimal_elbo"][0] - result["amortized_elbo"][0])
    assert result["G_a"][0] > -0.5, "q* starts at the encoder's output and only improves the ELBO (up to MC noise)"


def test_dmaapx_reads_k_blocks_of_the_bank(monkeypatch, run_cache):
    """DMaaPx (Algorithm 2) asks the bank for k x N samples and trains on block (epoch - 1) mod k."""
    requests = []

    class FakeBank:
        def data_source(self, block_size, *, num_blocks, binarize, pad_to):
            requests.append((block_size, num_blocks, binarize, pad_to))
            generator = torch.Generator().manual_seed(0)
            blocks = [(torch.rand(block_size, 1, 32, 32, generator=generator) > 0.5).float() for _ in range(num_blocks)]

            class Source:
                def __call__(self, epoch):
                    return blocks[(epoch - 1) % num_blocks]

                def describe(self):
                    return f"fake-bank(k={num_blocks})"

            return Source()

    def fake_sample_bank(dataset, num_samples, **settings):
        assert dataset == "binary_mnist" and num_samples == 3 * 20
        return FakeBank()

    monkeypatch.setattr(xiao2024.synthetic, "sample_bank", fake_sample_bank)
    study = tiny_study(bank_blocks=3)
    curves = xiao2024.learning_curves(study, "dmaapx", cache=run_cache)
    assert requests[0] == (20, 3, True, 32)
    assert len(curves["test_elbo"]) == 2
    assert xiao2024.run_key(study, "dmaapx") != xiao2024.run_key(study, "normal")


def test_robustness_attack_stays_in_budget(run_cache):
    attack = xiao2024.AttackSettings(n_reference=4, restarts=2, steps=3)
    result = xiao2024.robustness(tiny_study(), "normal", attack, cache=run_cache)
    assert max(result["max_abs_epsilon"]) <= attack.radius + 1e-6
    assert all(math.isfinite(v) for v in result["G_r"])
    assert all(0 <= v <= 1 for v in result["input_ms_ssim"])


# --------------------------------------------------------------------------------------------
# Notebooks
# --------------------------------------------------------------------------------------------


def test_vae_notebooks_share_their_settings():
    assert len(VAE_NOTEBOOKS) >= 3, VAE_NOTEBOOKS
    values = {path.stem: parameter_values(path) for path in VAE_NOTEBOOKS}
    reference_name = "xiao2024_fig02_synthetic_data"
    reference = values[reference_name]
    for name, settings in values.items():
        for key in SHARED:
            if key in settings:
                assert settings[key] == reference[key], (
                    f"{name} sets {key} = {settings[key]!r} but {reference_name} has {reference[key]!r}; keep them equal so "
                    "the notebooks share one cached model set"
                )


# --------------------------------------------------------------------------------------------
# CIFAR-10 path (no offline source: fixture images), residual net, one run per seed
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def cifar_images(monkeypatch):
    """Stand-in CIFAR-10 images (k/255 values, 3×32×32) for the per-seed residual-net path."""
    generator = torch.Generator().manual_seed(1)

    def fake_images(dataset, n_train, subset_seed, n_test):
        assert dataset == "cifar10"
        levels = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), generator=generator).float() / 255
        return levels[:n_train], levels[n_train:]

    monkeypatch.setattr(xiao2024, "_images", fake_images)
    monkeypatch.setattr(xiao2024, "_test_labels", lambda dataset, n_test: None)


def cifar_study(**changes) -> xiao2024.Study:
    return tiny_study(**{"variant": "cifar10", "seeds": [0, 1], "latent_dim": 64, "hidden_width": 8, **changes})


def test_cifar_study_uses_paper_a_residual_net_and_checks_the_latent_grid():
    config = cifar_study().model_config()
    assert type(config).__name__ == "ResidualConvVAEConfig"
    assert config.latent_channels == 1 and config.channels == 8 and config.likelihood == "discretized_mixture_of_logistics"
    assert cifar_study().per_seed and not tiny_study().per_seed
    with pytest.raises(ValueError, match="latent_dim must be 64"):
        cifar_study(latent_dim=32)


def test_cifar_trains_one_run_per_seed_and_reports_every_seed(cifar_images, run_cache):
    study = cifar_study()
    results = xiao2024.train_method(study, "aug_tuned", cache=run_cache)
    assert len(results) == 2, "BatchNorm nets: one cached run per seed"
    curves = xiao2024.gap_curves(study, "aug_tuned", None, cache=run_cache)
    assert all(len(row) == 2 for row in curves["test_elbo"]), curves["test_elbo"]
    assert curves["test_elbo"][-1][0] != curves["test_elbo"][-1][1], "the seeds are different models"
    fit = estimators.PerPointSettings(n_points=3, num_samples=1, learning_rate=1e-2, max_steps=20, check_every=10,
                                    patience=1, eval_samples=5)
    assert len(xiao2024.gaps_at_checkpoint(study, "aug_tuned", 2, fit, cache=run_cache)["G_a"]) == 2
    attack = xiao2024.AttackSettings(n_reference=2, restarts=1, steps=2, radius=0.05)
    result = xiao2024.robustness(study, "aug_tuned", attack, cache=run_cache)
    assert len(result["G_r"]) == 2 and max(result["max_abs_epsilon"]) <= 0.05 + 1e-6


def test_cifar_dmaapx_trains_its_own_diffusion_model_first(cifar_images, monkeypatch, run_cache):
    """CIFAR-10 has no shipped DM: DMaaPx asks synthetic to train one on the study's own images."""
    calls = {}

    def fake_diffusion_model(dataset, *, retrain, steps, n_train, subset_seed, progress=None):
        calls["dm"] = (dataset, retrain, steps, n_train, subset_seed)
        return "trained-dm"

    class Source:
        def __call__(self, epoch):
            return torch.full((20, 3, 32, 32), epoch / 255)

        def describe(self):
            return "fake-cifar-bank"

    class Bank:
        def data_source(self, block_size, *, num_blocks, binarize, pad_to):
            calls["source"] = (block_size, num_blocks, binarize, pad_to)
            return Source()

    def fake_sample_bank(dataset, num_samples, *, model, **settings):
        calls["bank"] = (dataset, num_samples, model)
        return Bank()

    monkeypatch.setattr(xiao2024.synthetic, "diffusion_model", fake_diffusion_model)
    monkeypatch.setattr(xiao2024.synthetic, "sample_bank", fake_sample_bank)
    study = cifar_study(bank=xiao2024.BankSettings(dm_steps=7), bank_blocks=2)
    curves = xiao2024.learning_curves(study, "dmaapx", cache=run_cache)
    assert calls["dm"] == ("cifar10", True, 7, 20, 0)
    assert calls["bank"] == ("cifar10", 40, "trained-dm") and calls["source"] == (20, 2, False, 32)
    assert len(curves["test_elbo"][-1]) == 2
