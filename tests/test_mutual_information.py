"""The rate split R = I_q[x; z] + KL(q(z) || p(z)) (paper C, Eq. 5) against cases with known MI.

Ground truths: N well-separated narrow posteriors (q(z) is N disjoint bumps, MI = log N);
identical posteriors (q(z) = q(z|x), MI = 0); a linear-Gaussian encoder on Gaussian data, where
q(z) is Gaussian and MI and the marginal KL have closed forms. Everything is seeded.
"""

from __future__ import annotations

import math

import pytest
import torch

from vaegen_utils import estimators
from vaegen_utils.ensemble import EnsembleMLPVAE
from vaegen_utils.estimators import (
    full_aggregate_log_density,
    gaussian_log_density,
    minibatch_aggregate_log_density,
    pairwise_gaussian_log_density,
    rate_decomposition_full,
    rate_decomposition_minibatch,
)
from vaegen_utils.models import MLPVAEConfig, build_model


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def separated_posteriors(num_points: int, latent_dim: int = 3, width: float = 1e-3, spacing: float = 0.05):
    """Means on a line `spacing` apart (50 widths by default): every z lies in exactly one component."""
    mean = torch.zeros(num_points, latent_dim, dtype=torch.float64)
    mean[:, 0] = spacing * (torch.arange(num_points, dtype=torch.float64) - num_points / 2)
    mean[:, 1:] = torch.randn(num_points, latent_dim - 1, generator=generator(0), dtype=torch.float64)
    log_std = torch.full_like(mean, math.log(width))
    return mean, log_std


def linear_gaussian_case(num_points: int, *, scale: float = 1.0, noise_std: float = 0.5, latent_dim: int = 2):
    """x_n ~ N(0, I), q(z|x) = N(scale * x, noise_std^2 I): q(z) -> N(0, (scale^2 + noise_std^2) I).

    Per latent dimension MI = 1/2 log(1 + scale^2 / noise_std^2) and
    KL(q(z) || p(z)) = 1/2 (v - 1 - log v) with v = scale^2 + noise_std^2.
    """
    x = torch.randn(num_points, latent_dim, generator=generator(1), dtype=torch.float64)
    mean = scale * x
    log_std = torch.full_like(mean, math.log(noise_std))
    variance = scale**2 + noise_std**2
    mutual_information = latent_dim * 0.5 * math.log(1 + scale**2 / noise_std**2)
    marginal_kl = latent_dim * 0.5 * (variance - 1 - math.log(variance))
    return mean, log_std, mutual_information, marginal_kl


# ------------------------------------------------------------------------------------ building blocks


def test_pairwise_log_density_matches_direct_evaluation():
    mean = torch.randn(7, 4, generator=generator(2), dtype=torch.float64)
    log_std = -2.0 + torch.randn(7, 4, generator=generator(3), dtype=torch.float64)
    z = torch.randn(5, 4, generator=generator(4), dtype=torch.float64)
    pairwise = pairwise_gaussian_log_density(z, mean, log_std)  # (5, 7)
    direct = gaussian_log_density(z.unsqueeze(-2), mean.unsqueeze(-3), log_std.unsqueeze(-3))  # (5, 7)
    assert pairwise.shape == (5, 7)
    torch.testing.assert_close(pairwise, direct, rtol=1e-10, atol=1e-8)


def test_pairwise_log_density_is_accurate_for_very_narrow_posteriors():
    """No cancellation for posteriors e^-20 wide at |z| ~ 30 (an expanded quadratic form loses
    thousands of nats here: 1e-16 * 900 * e^40 ~ 2e4)."""
    mean = 30.0 * torch.randn(6, 10, generator=generator(5), dtype=torch.float64)
    log_std = torch.full_like(mean, -20.0)
    z = mean + torch.exp(log_std) * torch.randn(6, 10, generator=generator(6), dtype=torch.float64)
    diagonal = pairwise_gaussian_log_density(z, mean, log_std).diagonal()
    torch.testing.assert_close(diagonal, gaussian_log_density(z, mean, log_std), rtol=0, atol=1e-9)


def test_full_aggregate_density_does_not_depend_on_the_chunk_size():
    mean, log_std = separated_posteriors(50, width=0.7, spacing=0.5)
    z = torch.randn(9, 3, generator=generator(7), dtype=torch.float64)
    reference = full_aggregate_log_density(z, mean, log_std, component_chunk=50)
    for chunk in (1, 7, 13):
        torch.testing.assert_close(full_aggregate_log_density(z, mean, log_std, component_chunk=chunk), reference)


def test_minibatch_density_with_the_whole_set_as_batch_is_the_exact_mixture():
    """B = N: the weights are 1/N everywhere, so Esmaeili's estimate is exactly log q(z)."""
    mean, log_std = separated_posteriors(20, width=0.8, spacing=0.6)
    z = mean + torch.exp(log_std) * torch.randn(mean.shape, generator=generator(8), dtype=torch.float64)
    torch.testing.assert_close(
        minibatch_aggregate_log_density(z, mean, log_std, num_data=20), full_aggregate_log_density(z, mean, log_std)
    )


def test_minibatch_density_weights_the_own_component_by_one_over_n():
    """Separated components: only the diagonal term survives, log q(z_b) = log q(z_b|x_b) - log N."""
    mean, log_std = separated_posteriors(16)
    z = mean + torch.exp(log_std) * torch.randn(mean.shape, generator=generator(9), dtype=torch.float64)
    estimate = minibatch_aggregate_log_density(z, mean, log_std, num_data=10_000)
    expected = gaussian_log_density(z, mean, log_std) - math.log(10_000)
    torch.testing.assert_close(estimate, expected, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------ known MI


@pytest.mark.parametrize("estimator", ["minibatch", "full"])
def test_separated_narrow_posteriors_have_mi_log_n(estimator):
    num_points = 300
    mean, log_std = separated_posteriors(num_points)
    if estimator == "minibatch":
        result = rate_decomposition_minibatch(mean, log_std, batch_size=64, generator=generator(10))
        assert result.batch_size == 64
    else:
        result = rate_decomposition_full(mean, log_std, num_samples=2, generator=generator(10))
    assert result.num_data == num_points and result.log_num_data == pytest.approx(math.log(num_points))
    assert float(result.mutual_information) == pytest.approx(math.log(num_points), abs=1e-9)


def test_minibatch_estimator_without_reweighting_saturates_at_log_b():
    """num_data = B turns Esmaeili's estimator into the plain batch mixture, capped at log B."""
    mean, log_std = separated_posteriors(256)
    result = rate_decomposition_minibatch(mean, log_std, batch_size=32, num_data=32, generator=generator(11))
    assert float(result.mutual_information) == pytest.approx(math.log(32), abs=1e-9)


@pytest.mark.parametrize("estimator", ["minibatch", "full"])
def test_identical_posteriors_have_zero_mi_and_the_whole_rate_is_marginal_kl(estimator):
    mean = torch.tensor([0.7, -1.2, 0.1], dtype=torch.float64).expand(2000, 3).clone()
    log_std = torch.tensor([-0.5, 0.2, -1.0], dtype=torch.float64).expand(2000, 3).clone()
    if estimator == "minibatch":
        result = rate_decomposition_minibatch(mean, log_std, batch_size=50, generator=generator(12))
    else:
        result = rate_decomposition_full(mean, log_std, num_samples=4, generator=generator(12))
    assert float(result.mutual_information) == pytest.approx(0.0, abs=1e-9)
    # KL(q(z) || p(z)) = KL(q(z|x) || p(z)), the analytic rate, up to Monte Carlo error (>= 2,000
    # samples of log q(z|x) - log p(z), whose standard deviation is ~1.5 nats here: SE ~ 0.03).
    assert float(result.marginal_kl) == pytest.approx(float(result.rate), abs=0.12)


def test_linear_gaussian_full_estimator_matches_closed_form():
    mean, log_std, expected_mi, expected_kl = linear_gaussian_case(4000)
    result = rate_decomposition_full(mean, log_std, num_samples=4, generator=generator(13))
    # Tolerances: 16,000 queries give an MC standard error of ~0.01 nats; the empirical q(x) of 4,000
    # points differs from N(0, I) by O(1/sqrt(N)) in MI.
    assert float(result.mutual_information) == pytest.approx(expected_mi, abs=0.04)
    assert float(result.marginal_kl) == pytest.approx(expected_kl, abs=0.04)


def test_linear_gaussian_minibatch_estimator_matches_closed_form():
    mean, log_std, expected_mi, expected_kl = linear_gaussian_case(8192)
    result = rate_decomposition_minibatch(mean, log_std, batch_size=512, generator=generator(14))
    # 511 other batch members stand for the mixture's 8,191 others: a small positive bias in log q(z)
    # (Jensen), a few hundredths of a nat here.
    assert float(result.mutual_information) == pytest.approx(expected_mi, abs=0.06)
    assert float(result.marginal_kl) == pytest.approx(expected_kl, abs=0.06)


# ------------------------------------------------------------------------------------ the rate split


@pytest.mark.parametrize("estimator", ["minibatch", "full"])
def test_rate_split_holds(estimator):
    """MI + KL is exactly the sampled rate, and the analytic rate up to Monte Carlo error."""
    mean = 2.0 * torch.randn(3000, 4, generator=generator(15), dtype=torch.float64)
    log_std = -1.0 + 0.3 * torch.randn(3000, 4, generator=generator(16), dtype=torch.float64)
    if estimator == "minibatch":
        result = rate_decomposition_minibatch(mean, log_std, batch_size=512, generator=generator(17))
    else:
        result = rate_decomposition_full(mean, log_std, num_samples=3, generator=generator(17))
    total = result.mutual_information + result.marginal_kl
    torch.testing.assert_close(total, result.rate_sampled, rtol=0, atol=1e-10)
    # Per sample, log q(z|x) - log p(z) has a standard deviation of ~sqrt(Z/2 + ...) ~ 3 nats here;
    # over >= 3,000 samples its mean is within ~0.06 nats (1 SE) of the analytic rate.
    assert float(total) == pytest.approx(float(result.rate), abs=0.25)
    assert float(result.mutual_information) <= result.log_num_data + 1e-12


@pytest.mark.parametrize("estimator", [rate_decomposition_minibatch, rate_decomposition_full])
def test_extremely_narrow_far_posteriors_still_give_mi_log_n(estimator):
    """The regime of small-β encoders: sigma = e^-20 at |z| up to ~40 (an MI above log N was a bug)."""
    mean, log_std = separated_posteriors(80, width=math.exp(-20.0), spacing=1.0)
    result = estimator(mean, log_std, generator=generator(23))
    assert float(result.mutual_information) == pytest.approx(math.log(80), abs=1e-9)


def test_mutual_information_is_never_above_log_n():
    mean, log_std = separated_posteriors(100, width=0.05, spacing=0.2)
    for estimator in (rate_decomposition_minibatch, rate_decomposition_full):
        result = estimator(mean, log_std, generator=generator(18))
        assert 0.0 < float(result.mutual_information) <= math.log(100) + 1e-12


def test_full_estimator_subsamples_queries_but_keeps_every_component():
    mean, log_std = separated_posteriors(500)
    result = rate_decomposition_full(mean, log_std, max_queries=40, generator=generator(19))
    assert result.num_queries == 40 and result.num_data == 500
    assert float(result.mutual_information) == pytest.approx(math.log(500), abs=1e-9)


def test_leading_dimensions_give_one_result_per_member():
    """An ensemble's (M, N, Z) outputs: member 0 separated (log N), member 1 identical posteriors (0)."""
    separated_mean, separated_log_std = separated_posteriors(128)
    identical_mean = torch.zeros_like(separated_mean)
    identical_log_std = torch.full_like(separated_mean, -0.3)
    mean = torch.stack([separated_mean, identical_mean])  # (2, 128, 3)
    log_std = torch.stack([separated_log_std, identical_log_std])
    for result in (
        rate_decomposition_minibatch(mean, log_std, batch_size=32, generator=generator(20)),
        rate_decomposition_full(mean, log_std, generator=generator(20)),
    ):
        assert result.mutual_information.shape == (2,)
        assert result.mutual_information[0].item() == pytest.approx(math.log(128), abs=1e-9)
        assert result.mutual_information[1].item() == pytest.approx(0.0, abs=1e-9)
        assert result.to_dict()["log_num_data"] == pytest.approx(math.log(128))


# ------------------------------------------------------------------------------------ model wrappers


def test_wrappers_encode_the_data_and_accept_ensembles():
    config = MLPVAEConfig(data_shape=(1, 4, 4), latent_dim=2, hidden_sizes=(8,), encoder_std="exp")
    images = torch.rand(300, 1, 4, 4, generator=generator(21)).round()
    model = build_model(config, seed=0)
    ensemble = EnsembleMLPVAE.build(config, [0, 1, 2])
    for estimator in ("minibatch", "full"):
        single = estimators.mutual_information(model, images, estimator=estimator, batch_size=64, generator=generator(22))
        assert single.mutual_information.shape == () and single.num_data == 300
        stacked = estimators.mutual_information(ensemble, images, estimator=estimator, batch_size=64, generator=generator(22))
        assert stacked.mutual_information.shape == (3,)
        assert bool((stacked.mutual_information <= math.log(300) + 1e-12).all())
    mean, log_std = estimators.encode_dataset(ensemble, images, batch_size=7)
    assert mean.shape == log_std.shape == (3, 300, 2)
    torch.testing.assert_close(mean[1], ensemble.member(1).encode(images)[0].detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rate_decomposition_full(torch.zeros(1, 3), torch.zeros(1, 3)), "N >= 2"),
        (lambda: rate_decomposition_full(torch.zeros(5, 3), torch.zeros(5, 2)), "one shape"),
        (lambda: rate_decomposition_minibatch(torch.zeros(5, 3), torch.zeros(5, 3), batch_size=0), "batch_size must be an integer >= 1"),
        (lambda: minibatch_aggregate_log_density(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), 3), "smaller"),
        (lambda: estimators.mutual_information(None, torch.zeros(2, 1), estimator="exact"), "unknown estimator"),
    ],
)
def test_bad_arguments_raise_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
