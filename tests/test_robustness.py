"""Tests of vaegen_utils.robustness: SKL, the encoder attack, MS-SSIM and G_r (a few seconds)."""

from __future__ import annotations

import math

import pytest
import pytorch_msssim
import torch
import torch.nn as nn

from vaegen_utils import models, robustness
from vaegen_utils.robustness import encoder_attack, gaussian_kl, gaussian_skl, ms_ssim, ssim_and_cs


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearEncoder(nn.Module):
    """q(z|x) = N(W flat(x), diag(exp(2 c))): the SKL is a convex quadratic in the perturbation."""

    data_shape = (1, 16, 16)

    def __init__(self, latent_dim: int = 3, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn((256, latent_dim), generator=generator) * 0.1)
        self.log_std = nn.Parameter(torch.full((latent_dim,), -1.0))

    def encode(self, x):
        mean = x.reshape(x.shape[0], -1) @ self.weight
        return mean, self.log_std.expand_as(mean)


def tiny_vae(seed: int = 0) -> nn.Module:
    config = models.MLPVAEConfig(data_shape=(1, 16, 16), latent_dim=4, hidden_sizes=(32,), likelihood="bernoulli")
    return models.build_model(config, seed=seed)


@pytest.fixture(scope="module")
def references() -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    images = torch.zeros((6, 1, 16, 16))
    images[:, :, 4:12, 6:10] = 1.0
    images = (images + 0.3 * torch.rand(images.shape, generator=generator)).clamp(0, 1)
    images[0] = 0.0  # an all-black image: the random start can only push upwards
    images[1] = 1.0  # an all-white one: only downwards
    return images


# ------------------------------------------------------------------------------------------
# Divergences
# ------------------------------------------------------------------------------------------


def test_symmetric_kl_matches_a_hand_computed_value_and_is_symmetric():
    m1, s1, m2, s2 = 0.0, 1.0, 1.0, 2.0
    kl12 = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5  # 0.4431
    kl21 = math.log(s1 / s2) + (s2**2 + (m1 - m2) ** 2) / (2 * s1**2) - 0.5  # 1.3069
    args = [torch.tensor([[value]]) for value in (m1, math.log(s1), m2, math.log(s2))]
    assert float(gaussian_kl(*args)) == pytest.approx(kl12, rel=1e-6)
    assert float(gaussian_skl(*args)) == pytest.approx(0.5 * (kl12 + kl21), rel=1e-6)  # 0.875
    assert float(gaussian_skl(*args)) == pytest.approx(0.875, rel=1e-6)
    # Not Kuzina's AttackNVAE bug, which adds KL(q2||q2) = 0 instead of KL(q2||q1):
    assert float(gaussian_skl(*args)) != pytest.approx(0.5 * kl12, rel=1e-3)
    generator = torch.Generator().manual_seed(0)
    a = [torch.randn((5, 7), generator=generator) for _ in range(4)]
    assert torch.allclose(gaussian_skl(a[0], a[1], a[2], a[3]), gaussian_skl(a[2], a[3], a[0], a[1]))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(a[0], a[1].exp()), torch.distributions.Normal(a[2], a[3].exp())
    ).sum(-1)
    assert torch.allclose(gaussian_kl(*a), reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(gaussian_skl(a[0], a[1], a[0], a[1]), torch.zeros(5))


# ------------------------------------------------------------------------------------------
# The attack
# ------------------------------------------------------------------------------------------


def test_attack_respects_the_ball_and_the_data_range_and_climbs_monotonically_on_a_linear_encoder(references):
    encoder = LinearEncoder()
    steps_seen = []

    def check(step, x_adv, eps, objective):
        steps_seen.append(step)
        assert float(eps.abs().max()) <= 0.1 + 1e-6
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
        assert torch.allclose(x_adv - references.unsqueeze(1), eps, atol=1e-6)

    result = encoder_attack(encoder, references, radius=0.1, steps=25, restarts=4, learning_rate=1.0, seed=0, callback=check)
    assert steps_seen == list(range(26))
    assert float(result.max_abs_epsilon.max()) <= 0.1 + 1e-6
    # Convex objective + projection onto a box: every projected ascent step is non-decreasing.
    differences = result.trace[1:] - result.trace[:-1]
    assert float(differences.min()) >= -1e-5 * float(result.trace.abs().max())
    assert (result.objective > result.initial_objective.max(dim=1).values).all()
    # Saturates the ball where the data range allows it (a linear objective pushes to the corners).
    assert float(result.epsilon[2:].abs().max()) == pytest.approx(0.1, abs=1e-6)
    assert float(result.epsilon[0].min()) >= 0.0 and float(result.epsilon[1].max()) <= 0.0  # black / white images


def test_attack_on_a_vae_encoder_increases_the_objective_and_is_deterministic(references):
    model = tiny_vae()
    result = encoder_attack(model, references, radius=0.1, steps=15, restarts=3, seed=1)
    again = encoder_attack(model, references, radius=0.1, steps=15, restarts=3, seed=1)
    other = encoder_attack(model, references, radius=0.1, steps=15, restarts=3, seed=2)
    assert torch.equal(result.x_adversarial, again.x_adversarial) and torch.equal(result.trace, again.trace)
    assert not torch.equal(result.x_adversarial, other.x_adversarial)
    assert (result.objective > result.initial_objective.mean(dim=1)).all()
    assert (result.restart_objective >= result.trace.max(dim=0).values - 1e-6).all()  # best iterate kept
    # Bookkeeping: the reported objective is the best restart's, and its input is the one returned.
    assert torch.equal(result.objective, result.restart_objective.max(dim=1).values)
    index = torch.arange(len(references))
    assert torch.equal(result.x_adversarial, result.restart_adversarial[index, result.best_restart])
    mean, log_std = model.encode(result.x_adversarial)
    ref_mean, ref_log_std = model.encode(references)
    assert torch.allclose(gaussian_skl(mean, log_std, ref_mean, ref_log_std), result.objective, rtol=1e-4, atol=1e-6)
    assert float(result.epsilon.abs().max()) <= 0.1 + 1e-6
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


def test_attack_rejects_images_outside_the_data_range():
    with pytest.raises(ValueError, match="data_range"):
        encoder_attack(LinearEncoder(), torch.full((1, 1, 16, 16), 1.5))


def test_reference_images_are_stratified():
    labels = torch.arange(100) % 10
    chosen = robustness.reference_images(torch.zeros(100, 1, 4, 4), labels, 50, seed=0)
    assert len(chosen) == 50 == len(set(chosen.tolist()))
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [5] * 10


# ------------------------------------------------------------------------------------------
# MS-SSIM
# ------------------------------------------------------------------------------------------


def test_pytorch_msssim_ms_ssim_does_not_fit_32_pixel_images():
    """Why ms_ssim loops over scales itself: the package's 5-scale check fails for any window >= 3 px."""
    x = torch.rand((2, 1, 32, 32))
    with pytest.raises(AssertionError):
        pytorch_msssim.ms_ssim(x, x, data_range=1.0, win_size=3)
    with pytest.raises(AssertionError):
        pytorch_msssim.ms_ssim(x, x, data_range=1.0, win_size=3, weights=[0.5, 0.5])


def test_single_scale_ssim_matches_a_hand_computation():
    a = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], dtype=torch.float64)
    b = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.6, 0.5], [0.8, 0.3, 0.4]], dtype=torch.float64)
    g = torch.exp(-torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) ** 2 / (2 * 1.5**2))
    g = g / g.sum()
    w = torch.outer(g, g)
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a, var_b = (w * a * a).sum() - mu_a**2, (w * b * b).sum() - mu_b**2
    cov = (w * a * b).sum() - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    ssim = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs
    got_ssim, got_cs = ssim_and_cs(a.float().view(1, 1, 3, 3), b.float().view(1, 1, 3, 3), window_size=3)
    assert float(got_ssim) == pytest.approx(float(ssim), abs=1e-5)
    assert float(got_cs) == pytest.approx(float(cs), abs=1e-5)
    # And equals the package's public single-scale SSIM where that applies (odd window, big image).
    x, y = torch.rand((3, 1, 20, 20), generator=torch.Generator().manual_seed(0)).split([2, 1])[0].split(1)
    public = pytorch_msssim.ssim(x, y, data_range=1.0, win_size=11, size_average=False)
    assert torch.allclose(ssim_and_cs(x, y, window_size=11)[0], public, atol=1e-6)


@pytest.mark.parametrize("window", [11, 7, 3])
def test_ssim_and_ms_ssim_match_the_packages_public_functions_where_they_apply(window):
    """Our own lines (no private pytorch_msssim helpers) against its public ssim and ms_ssim, on
    grey images large enough for its 5-scale check (> (win - 1) * 16 px; 1 channel, where averaging
    over channels before or after combining the scales is the same). The package takes odd windows
    only; the even 14-tap default differs only in the window's centre, checked by hand below."""
    generator = torch.Generator().manual_seed(7)
    x = torch.rand((3, 1, 224, 224), generator=generator)
    y = (x + 0.2 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    public_ssim = pytorch_msssim.ssim(x, y, data_range=1.0, win_size=window, size_average=False)
    assert torch.allclose(ssim_and_cs(x, y, window_size=window)[0], public_ssim, atol=1e-6, rtol=0)
    public_window = robustness.gaussian_window(window, 1.5).repeat(1, 1, 1, 1)
    public = pytorch_msssim.ms_ssim(x, y, data_range=1.0, win=public_window, size_average=False)
    ours = ms_ssim(x, y, window_size=window, combine="standard")
    assert torch.allclose(ours, public, atol=1e-6, rtol=0), (ours, public)
    assert (ours < 0.99).all() and (ours > 0.1).all()  # a non-trivial pair, not two identical images


def test_an_even_window_is_centred_on_tap_size_over_2():
    offsets = torch.tensor([-7.0, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6])  # 14 taps, as jorge-pessoa's code
    expected = torch.exp(-(offsets**2) / (2 * 1.5**2))
    assert torch.allclose(robustness.gaussian_window(14, 1.5), expected / expected.sum(), atol=1e-7)


@pytest.mark.parametrize("combine", ["kuzina", "standard"])
def test_ms_ssim_hand_cases(combine):
    generator = torch.Generator().manual_seed(3)
    x = torch.rand((4, 1, 32, 32), generator=generator)
    assert torch.allclose(ms_ssim(x, x, combine=combine), torch.ones(4), atol=1e-5)
    y = torch.rand((4, 1, 32, 32), generator=generator)
    assert torch.allclose(ms_ssim(x, y, combine=combine), ms_ssim(y, x, combine=combine), atol=1e-6)
    assert (ms_ssim(x, y, combine=combine) < 0.5).all()
    # Constant images c1, c2: cs = 1 at every scale and ssim = luminance term l = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1).
    c1, c2 = 0.3, 0.6
    luminance = (2 * c1 * c2 + 1e-4) / (c1**2 + c2**2 + 1e-4)
    exponent = robustness.MS_SSIM_WEIGHTS[-1] * (4 if combine == "kuzina" else 1)
    got = ms_ssim(torch.full((1, 1, 28, 28), c1), torch.full((1, 1, 28, 28), c2), combine=combine)
    assert float(got) == pytest.approx(luminance**exponent, rel=1e-4)
    # A small perturbation keeps the similarity high; a bigger one lowers it.
    noise = torch.randn((4, 1, 32, 32), generator=generator)
    assert (ms_ssim(x, (x + 0.01 * noise).clamp(0, 1), combine=combine) > ms_ssim(x, (x + 0.1 * noise).clamp(0, 1), combine=combine)).all()


def test_ms_ssim_rejects_mismatched_or_too_small_images():
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="at least 16"):
        ms_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# ------------------------------------------------------------------------------------------
# Robustness gap
# ------------------------------------------------------------------------------------------


def test_robustness_gap_on_a_tiny_vae(references):
    model = tiny_vae()
    attack = encoder_attack(model, references, radius=0.1, steps=10, restarts=3, seed=0)
    gap = robustness.robustness_gap(model, references, attack)
    assert gap.input_ms_ssim.shape == gap.reconstruction_ms_ssim.shape == (6, 3)
    assert gap.gap == pytest.approx(float((gap.input_ms_ssim - gap.reconstruction_ms_ssim).mean()))
    assert math.isfinite(gap.gap) and (gap.input_ms_ssim <= 1 + 1e-6).all()
    assert robustness.robustness_gap(model, references, attack).gap == gap.gap  # deterministic
    best = robustness.robustness_gap(model, references, attack, use="best", latent="mean")
    assert best.per_pair.shape == (6, 1)
    expected = ms_ssim(references, attack.x_adversarial).view(6, 1)
    assert torch.allclose(best.input_ms_ssim, expected)
    with pytest.raises(ValueError, match="attacked"):
        robustness.robustness_gap(model, references.flip(0), attack)


def test_an_input_independent_encoder_has_reconstruction_ms_ssim_one(references):
    model = tiny_vae()

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
            self.likelihood = model.likelihood

        def encode(self, x):
            mean, log_std = model.encode(torch.zeros_like(x))
            return mean, log_std

        def decode(self, z):
            return model.decode(z)

    constant = Constant()
    attack = encoder_attack(constant, references, steps=3, restarts=2)
    assert torch.allclose(attack.objective, torch.zeros(6), atol=1e-6)
    gap = robustness.robustness_gap(constant, references, attack, latent="mean")
    assert torch.allclose(gap.reconstruction_ms_ssim, torch.ones(6, 2), atol=1e-5)
