"""Paper A experiment module (vaegen_utils/xiao2024.py): the named runs and figure settings per
profile, the training methods, gaps and attack on tiny real data, and the CIFAR-10 path."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from vaegen_utils import cache as vcache
from vaegen_utils import estimators, profiles, xiao2024


def tiny_study(**changes) -> xiao2024.Study:
    settings = dict(variant="binary_mnist", n_train=20, n_test=20, seeds=[0], epochs=2, eval_every=1, checkpoint_every=1,
                    batch_size=10, latent_dim=2, hidden_width=8)
    settings.update(changes)
    return xiao2024.Study(**settings)


# --------------------------------------------------------------------------------------------
# Settings and errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variant": "cifar"}, "unknown variant 'cifar' \\(did you mean 'cifar10'\\?\\)"),
        ({"seeds": []}, "seeds needs at least 1 value"),
        ({"seeds": "15"}, "seeds must be a list such as \\[0, 1, 2\\], got the string '15'"),
        ({"seeds": [0, 0]}, "seeds must be distinct"),
        ({"seeds": [0, -1]}, "seeds\\[1\\] must be an integer >= 0"),
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
    with pytest.raises(ValueError, match="unknown method 'mixup'"):
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
# Named runs and figure settings, per profile
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_every_builder_gives_valid_settings_for_every_profile(profile):
    for variant in xiao2024.VARIANTS:
        run = xiao2024.study(profile, variant)
        assert run.variant == variant and run.bank == xiao2024.bank_settings(profile)
        assert isinstance(xiao2024.attack_settings(profile, variant), xiao2024.AttackSettings)
    assert xiao2024.fit_settings(profile).n_points <= xiao2024.study(profile, "binary_mnist").n_test
    figures = [xiao2024.fig02_settings(profile), xiao2024.fig02c_settings(profile), xiao2024.fig04_settings(profile),
               xiao2024.fig07_settings(profile)]
    for settings in figures:
        assert settings.runs(), type(settings).__name__
        assert all(method in xiao2024.METHODS for _, method in settings.runs())
        assert json.loads(json.dumps(settings.to_dict())), "to_dict() goes into the results JSON as is"
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.methods = ("normal",)


def test_paper_profile_follows_paper_a():
    run = xiao2024.study("paper", "binary_mnist")
    assert (run.epochs, run.seeds, run.latent_dim, run.hidden_width) == (1000, (0, 1, 2), 16, 512)  # Sec. 5, App. B.1
    assert run.bank_blocks == 1000 and run.bank.sampler == "heun" and run.bank.steps == 18  # Alg. 2 (k = T), App. D
    cifar = xiao2024.study("paper", "cifar10").model_config()
    assert (cifar.latent_channels, cifar.channels) == (1, 256)  # Tables 4-6: m_z = 1, n_c = 256
    assert xiao2024.attack_settings("paper", "binary_mnist") == xiao2024.AttackSettings()  # Table 2, MNIST-type
    colour = xiao2024.attack_settings("paper", "cifar10")
    assert (colour.n_reference, colour.steps, colour.radius, colour.restarts) == (20, 100, 0.05, 10)  # Table 2, CIFAR-10
    assert "fashion_mnist_mol" in xiao2024.fig02_settings("paper").variants  # Fig. 12 only in paper
    assert "fashion_mnist_mol" not in xiao2024.fig02_settings("cpu").variants


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_notebooks_that_need_the_same_model_get_the_same_run(profile):
    fig02, fig02c = xiao2024.fig02_settings(profile), xiao2024.fig02c_settings(profile)
    fig04, fig07 = xiao2024.fig04_settings(profile), xiao2024.fig07_settings(profile)
    base = xiao2024.study(profile, "binary_mnist")
    assert fig02.studies == fig02c.studies  # fig02c attacks fig02's models
    assert fig02.studies["binary_mnist"] == base == fig04.base == fig07.base == fig07.size_study(16, 512)
    assert fig04.k_study(base.bank_blocks) == base, "fig04's k run at the profile's k is fig02's DMaaPx run"
    if profile != "smoke":
        assert fig04.stage_study("final") == fig04.k_study(xiao2024.PLATEAU_K)
        assert fig04.stage_study("early").bank == xiao2024.bank_settings(profile, stage="early")
    shared = {(run, method) for run, method in fig02.runs()} & {(run, method) for run, method in fig07.runs()}
    assert {(base, "normal"), (base, "dmaapx")} <= shared


def test_the_shared_run_has_one_cache_key():
    fig02, fig07 = xiao2024.fig02_settings("smoke"), xiao2024.fig07_settings("smoke")
    assert xiao2024.run_key(fig02.studies["binary_mnist"], "normal") == xiao2024.run_key(fig07.size_study(16, 512), "normal")
    assert xiao2024.run_key(fig07.size_study(2, 512), "normal") != xiao2024.run_key(fig07.base, "normal")


def test_overrides_replace_the_profile_value_and_none_keeps_it():
    cpu = xiao2024.study("cpu", "binary_mnist")
    assert xiao2024.study("cpu", "binary_mnist", epochs=None, seeds=None) == cpu
    changed = xiao2024.study("cpu", "binary_mnist", epochs=80, seeds=[0, 1])
    assert (changed.epochs, changed.seeds) == (80, (0, 1)) and changed.n_train == cpu.n_train
    assert xiao2024.study("cpu", "binary_mnist", bank=xiao2024.bank_settings("cpu", stage="early")).bank.stage == "early"
    fig02 = xiao2024.fig02_settings("cpu", epochs=80, variants=["binary_mnist"])
    assert fig02.variants == ("binary_mnist",) and fig02.studies["binary_mnist"].epochs == 80
    assert xiao2024.fig02_settings("cpu", variants=None).variants == xiao2024.fig02_settings("cpu").variants
    assert xiao2024.fig04_settings("cpu", k_values=[1, 10]).runs()[-1][0].bank_blocks == 10
    assert xiao2024.fig04_settings("smoke").quality_k == 2, "smoke's sweep stops at k = 2: the DM comparison uses it"
    fig07 = xiao2024.fig07_settings("cpu", latent_sweep={"normal": [2, 16]}, width_sweep={"normal": {2: [32, 64]}}, epochs=100)
    assert fig07.plan() == {("normal", 2, 512): True, ("normal", 16, 512): True, ("normal", 2, 32): False,
                            ("normal", 2, 64): False}
    assert fig07.base.epochs == 100 and fig07.cifar_base.epochs == 50, "epochs override the MLP runs; CIFAR has its own"
    assert xiao2024.fit_settings("cpu", max_steps=None) == xiao2024.fit_settings("cpu")
    assert xiao2024.fit_settings("cpu", max_steps=600).max_steps == 600
    assert xiao2024.attack_settings("cpu", "binary_mnist", restarts=3).restarts == 3


def test_fig07_plan_measures_g_a_on_the_latent_sweep_only():
    settings = xiao2024.fig07_settings("cpu")
    plan = settings.plan()
    assert (settings.small_latent, settings.large_latent, settings.base_width) == (2, 64, 512)
    assert plan["normal", 2, 512] and plan["normal", 64, 512] and plan["dmaapx", 16, 512]  # latent sweep
    assert not plan["normal", 2, 16] and not plan["dmaapx", 2, 128]  # width sweep only
    assert len(plan) == 5 + 3 + 6 + 6 - 2 + 3 - 1  # latent + dmaapx latent + two width sweeps + dmaapx widths, overlaps once
    assert settings.cifar_sizes() == [(1, 32), (8, 32)]
    assert [run.latent_dim for run, _ in settings.runs()[-2:]] == [64, 512] and all(
        method == "normal" for _, method in settings.runs()[-2:])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: xiao2024.study("cpu", "binary_mnist", epoch=80), "unknown xiao2024.study override field.*'epoch' \\(did you mean 'epochs'\\?\\)"),
        (lambda: xiao2024.study("cpu", "binary_mnist", seeds="15"), "seeds must be a list .*got the string '15'"),
        (lambda: xiao2024.study("gpu", "binary_mnist"), "unknown profile 'gpu'"),
        (lambda: xiao2024.study("cpu", "mnist"), "unknown variant 'mnist'"),
        (lambda: xiao2024.fit_settings("cpu", max_step=10), "'max_step' \\(did you mean 'max_steps'\\?\\)"),
        (lambda: xiao2024.attack_settings("cpu", "binary_mnist", radius="0.1"), "radius must be a number"),
        (lambda: xiao2024.fig02_settings("cpu", variants="binary_mnist"), "variants must be a list .*got the string"),
        (lambda: xiao2024.fig02_settings("cpu", variant=["binary_mnist"]), "unknown xiao2024.fig02_settings override field.*'variant' \\(did you mean 'variants'\\?\\)"),
        (lambda: xiao2024.fig02c_settings("cpu", epochz=3), "'epochz' \\(did you mean 'epochs'\\?\\)"),
        (lambda: xiao2024.fig04_settings("cpu", k_values="15"), "k_values must be a list .*got the string '15'"),
        (lambda: xiao2024.fig04_settings("cpu", k_values=[1, 2, 5]), "must contain plateau_k=10"),
        (lambda: xiao2024.fig04_settings("cpu", k_values=[10, 1]), "ascending and distinct"),
        (lambda: xiao2024.fig07_settings("cpu", latent_sweep={"normal": "16"}), "latent_sweep\\['normal'\\] must be a list"),
        (lambda: xiao2024.fig07_settings("cpu", latent_sweep={"fresh": [2]}), "unknown latent_sweep method 'fresh'"),
        (lambda: xiao2024.fig07_settings("cpu", width_sweep={"dmaapx": {2: [32]}}), "width_sweep needs latent sizes for 'normal'"),
        (lambda: xiao2024.fig07_settings("cpu", cifar_epoch=3), "'cifar_epoch' \\(did you mean 'cifar_epochs'\\?\\)"),
    ],
)
def test_bad_overrides_are_refused_with_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


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
