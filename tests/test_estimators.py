"""Estimators against analytic truth on the linear Gaussian VAE (vaegen_utils.linear_gaussian).

Ground truth: exact log p(x), exact posterior, closed-form ELBO. Statistical assertions average
over data points and use margins of a few Monte Carlo standard errors (SE = sample std / sqrt(N)
of the per-point quantity), so they fail only for a real bias. Everything is seeded.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaegen_utils import estimators
from vaegen_utils.estimators import (
    ElboTerms,
    amortization_gap,
    beta_elbo,
    bits_per_dim,
    fit_optimal_posterior,
    gaussian_elbo,
    gaussian_kl_to_standard_normal,
    gaussian_log_density,
    iwae_bound,
    reparameterize,
    standard_normal_log_density,
)
from vaegen_utils.linear_gaussian import LinearGaussianVAE

DATA_DIM, LATENT_DIM, SIGMA = 10, 3, 0.5


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def standard_error(values: torch.Tensor) -> float:
    return (values.std() / math.sqrt(values.numel())).item()


def exact_model(seed: int = 0) -> LinearGaussianVAE:
    """Orthogonal W: the exact posterior is diagonal and the encoder is set to it."""
    return LinearGaussianVAE.from_seed(DATA_DIM, LATENT_DIM, seed=seed, sigma=SIGMA, orthogonal=True, dtype=torch.float64)


def perturbed_model(seed: int = 0, shift: float = 0.5, widen: float = 0.4) -> LinearGaussianVAE:
    """Correlated W (non-diagonal posterior) and an encoder moved off the optimal diagonal one:
    mean shifted by `shift`, std widened by exp(widen), so q is a proper but poor proposal
    (ELBO ~16 nats below log p(x)) whose importance weights are well behaved."""
    model = LinearGaussianVAE.from_seed(DATA_DIM, LATENT_DIM, seed=seed, sigma=SIGMA, dtype=torch.float64)
    with torch.no_grad():
        model.encoder_bias += shift
        model.encoder_log_std += widen
    return model


def data(model: LinearGaussianVAE, count: int, seed: int = 1) -> torch.Tensor:
    return model.sample(count, generator(seed))


class StackedEnsemble(nn.Module):
    """A fake M-member ensemble with the ensemble interface: encode -> (M, B, Z),
    log_likelihood(x, z (..., M, B, Z)) -> (..., M, B); x shared (B, D) or per member (M, B, D)."""

    def __init__(self, members: list[LinearGaussianVAE]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.data_shape = members[0].data_shape
        self.latent_dim = members[0].latent_dim
        self.likelihood = members[0].likelihood

    def _member_x(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return x if x.dim() == 2 else x[index]

    def encode(self, x):
        outputs = [member.encode(self._member_x(x, i)) for i, member in enumerate(self.members)]
        return torch.stack([mean for mean, _ in outputs]), torch.stack([log_std for _, log_std in outputs])

    def log_likelihood(self, x, z):
        return torch.stack(
            [member.log_likelihood(self._member_x(x, i), z[..., i, :, :]) for i, member in enumerate(self.members)], dim=-2
        )


# --- closed-form helpers ------------------------------------------------------------------------


def test_bits_per_dim_hand_values():
    assert bits_per_dim(-784 * math.log(2.0), 784) == pytest.approx(1.0)
    assert bits_per_dim(-100.0, 784) == pytest.approx(100 / (784 * math.log(2.0)))  # 0.18401... bpd
    torch.testing.assert_close(bits_per_dim(torch.tensor([-3072 * 4.6 * math.log(2.0)]), 3072), torch.tensor([4.6]))


def test_gaussian_kl_matches_torch_and_monte_carlo():
    g = generator(0)
    mean, log_std = torch.randn(4, 3, generator=g, dtype=torch.float64), 0.5 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    analytic = gaussian_kl_to_standard_normal(mean, log_std)
    q, p = torch.distributions.Normal(mean, log_std.exp()), torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(analytic, torch.distributions.kl_divergence(q, p).sum(-1))
    z = reparameterize(mean, log_std, 200_000, g)  # (S, 4, 3)
    log_ratio = gaussian_log_density(z, mean, log_std) - standard_normal_log_density(z)  # (S, 4)
    monte_carlo, error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(200_000)
    assert ((monte_carlo - analytic).abs() < 5 * error).all()


def test_log_densities_match_torch_normal():
    g = generator(1)
    z, mean, log_std = (torch.randn(5, 4, generator=g) for _ in range(3))
    torch.testing.assert_close(gaussian_log_density(z, mean, log_std), torch.distributions.Normal(mean, log_std.exp()).log_prob(z).sum(-1))
    torch.testing.assert_close(standard_normal_log_density(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))
    assert reparameterize(mean, log_std).shape == (5, 4) and reparameterize(mean, log_std, 7).shape == (7, 5, 4)


def test_linear_gaussian_exact_quantities():
    """The reference model itself: log p(x) against torch's MultivariateNormal, the posterior
    against Bayes' rule p(z|x) = p(x|z) p(z) / p(x) at a few points, and the ELBO identity."""
    model = perturbed_model()
    x = data(model, 6)
    weight, bias = model.weight.detach(), model.bias.detach()
    covariance = weight @ weight.T + SIGMA**2 * torch.eye(DATA_DIM, dtype=torch.float64)
    torch.testing.assert_close(model.exact_log_marginal(x), torch.distributions.MultivariateNormal(bias, covariance).log_prob(x))
    posterior = model.exact_posterior(x)
    z = torch.randn(6, LATENT_DIM, generator=generator(2), dtype=torch.float64)
    bayes = model.log_likelihood(x, z) + standard_normal_log_density(z) - model.exact_log_marginal(x)
    exact = torch.distributions.MultivariateNormal(posterior.mean, posterior.covariance).log_prob(z)
    torch.testing.assert_close(bayes, exact)
    # ELBO of the optimal diagonal q = log p(x) - (sum log Lambda_jj - log det Lambda) / 2 > 0 gap
    optimal = model.exact_elbo(x, posterior.mean, model.optimal_diagonal_log_std().expand(6, -1))
    torch.testing.assert_close(model.exact_log_marginal(x) - optimal, torch.full((6,), model.optimal_diagonal_gap(), dtype=torch.float64))
    assert model.optimal_diagonal_gap() > 0.05 and exact_model().optimal_diagonal_gap() == pytest.approx(0.0, abs=1e-12)


# --- ELBO -----------------------------------------------------------------------------------------


def test_beta_elbo_matches_closed_form():
    """rate = analytic KL exactly; the MC ELBO (2000 samples) within 5 SE of the closed form."""
    model = perturbed_model()
    x = data(model, 8)
    terms = beta_elbo(model, x, num_samples=2000, generator=generator(3))
    mean, log_std = model.encode(x)
    torch.testing.assert_close(terms.rate, gaussian_kl_to_standard_normal(mean, log_std))
    torch.testing.assert_close(terms.elbo, -terms.distortion - terms.rate)
    z = reparameterize(mean.detach(), log_std.detach(), 2000, generator(3))
    per_sample_error = model.log_likelihood(x, z).std(0).detach() / math.sqrt(2000)
    assert ((terms.elbo.detach() - model.exact_elbo(x)).abs() < 5 * per_sample_error).all()
    torch.testing.assert_close(terms.loss(2.0), terms.distortion + 2.0 * terms.rate)
    with pytest.raises(ValueError, match="num_samples"):
        beta_elbo(model, x, num_samples=0)


def test_elbo_terms_loss_per_member_beta():
    terms = ElboTerms(elbo=-torch.ones(3, 4) * 3, rate=torch.ones(3, 4), distortion=torch.ones(3, 4) * 2)
    loss = terms.loss(torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(loss, torch.tensor([[2.0] * 4, [3.0] * 4, [4.0] * 4]))
    with pytest.raises(ValueError, match="per-member beta"):
        ElboTerms(elbo=torch.zeros(4), rate=torch.zeros(4), distortion=torch.zeros(4)).loss(torch.ones(4))


def test_elbo_with_exact_posterior_equals_log_marginal():
    """With q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z: a single-sample estimate
    (IWAE_1 is exactly that integrand) is exact to float precision, in float64 and float32."""
    model = exact_model()
    x = data(model, 50)
    log_marginal = model.exact_log_marginal(x)
    torch.testing.assert_close(iwae_bound(model, x, 1, generator=generator(4)), log_marginal, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.exact_elbo(x), log_marginal, rtol=0, atol=1e-10)
    torch.testing.assert_close(iwae_bound(model, x, 37, generator=generator(5)), log_marginal, rtol=0, atol=1e-10)
    single = model.float()  # float32: values ~ -15 nats, so ~1e-5 absolute rounding
    torch.testing.assert_close(iwae_bound(single, x.float(), 1, generator=generator(4)), log_marginal.float(), rtol=0, atol=1e-4)


def test_gaussian_elbo_matches_closed_form():
    model = perturbed_model()
    x = data(model, 100)
    mean, log_std = model.encode(x)
    estimate = gaussian_elbo(model, x, mean, log_std, num_samples=2000, generator=generator(6))
    difference = estimate - model.exact_elbo(x)
    assert abs(difference.mean().item()) < 4 * standard_error(difference) + 1e-3
    assert difference.abs().max().item() < 1.0  # every point: 1000+ samples, per-point SE ~0.2


# --- IWAE -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iwae_ladder():
    """IWAE_K for K in {1, 10, 100, 1000, 5000} on 200 points of the perturbed model (~2 s)."""
    model = perturbed_model()
    x = data(model, 200)
    bounds = {k: iwae_bound(model, x, k, generator=generator(7)) for k in (1, 10, 100, 1000, 5000)}
    return model, x, bounds


def test_iwae_bounds_are_ordered(iwae_ladder):
    """ELBO <= IWAE_K <= log p(x) (Burda et al. 2016, Thm 1), as averages over 200 points: each
    inequality may be violated by at most 3 SE of the per-point difference."""
    model, x, bounds = iwae_ladder
    log_marginal, elbo = model.exact_log_marginal(x), model.exact_elbo(x)
    for k, bound in bounds.items():
        below_marginal = log_marginal - bound
        above_elbo = bound - elbo
        assert below_marginal.mean().item() > -3 * standard_error(below_marginal), k
        if k > 1:  # IWAE_1 equals the ELBO only in expectation (next test)
            assert above_elbo.mean().item() > 0, k


def test_iwae_single_sample_is_the_elbo_in_expectation(iwae_ladder):
    model, x, bounds = iwae_ladder
    difference = bounds[1] - model.exact_elbo(x)
    assert abs(difference.mean().item()) < 4 * standard_error(difference)


def test_iwae_increases_with_k_and_reaches_log_marginal(iwae_ladder):
    """Means increase strictly over K = 1, 10, 100, 1000 (each step > 3 SE of the per-point
    increment; here 16, 13 and 7 SE); IWAE_5000 is within 0.05 nats of log p(x) on average (the
    O(1/K) bias is ~0.09 nats at K = 1000, so ~0.02 at 5000), and not above it by > 3 SE."""
    model, x, bounds = iwae_ladder
    ladder = [1, 10, 100, 1000]
    for small, large in zip(ladder, ladder[1:]):
        increment = bounds[large] - bounds[small]
        assert increment.mean().item() > 3 * standard_error(increment), (small, large)
    remaining = model.exact_log_marginal(x) - bounds[5000]
    assert -3 * standard_error(remaining) < remaining.mean().item() < 0.05


def test_iwae_chunking_does_not_change_the_result():
    """Per-point noise streams: chunk sizes change the order of work, not the samples."""
    model = perturbed_model()
    x = data(model, 13)
    reference = iwae_bound(model, x, 50, generator=generator(8))
    for sample_chunk, batch_chunk in [(50, 13), (7, 3), (1, 1), (49, 100), (None, 5)]:
        chunked = iwae_bound(model, x, 50, sample_chunk=sample_chunk, batch_chunk=batch_chunk, generator=generator(8))
        torch.testing.assert_close(chunked, reference, rtol=0, atol=1e-10)
    mean, log_std = model.encode(x)
    elbo = gaussian_elbo(model, x, mean, log_std, num_samples=50, generator=generator(8))
    torch.testing.assert_close(
        gaussian_elbo(model, x, mean, log_std, num_samples=50, sample_chunk=6, batch_chunk=4, generator=generator(8)), elbo, rtol=0, atol=1e-10
    )


def test_iwae_seeds_reproduce_and_differ():
    model = perturbed_model()
    x = data(model, 5)
    first = iwae_bound(model, x, 20, generator=generator(9))
    torch.testing.assert_close(iwae_bound(model, x, 20, generator=generator(9)), first, rtol=0, atol=0)
    assert not torch.equal(iwae_bound(model, x, 20, generator=generator(10)), first)
    torch.manual_seed(0)
    assert iwae_bound(model, x, 20).shape == (5,)  # generator=None: torch's global generator


def test_iwae_on_an_ensemble():
    """Leading member dimension: (M, B) out. Member 0 has the exact posterior (IWAE exact for any
    K); member 1 the perturbed encoder, whose ensemble IWAE_1000 agrees with the same member run
    alone (independent noise) within 4 SE of the per-point difference and stays below log p(x).
    x shared (B, D) or per member (M, B, D)."""
    exact, perturbed = exact_model(seed=0), perturbed_model(seed=1)
    ensemble = StackedEnsemble([exact, perturbed])
    x = data(exact, 40)
    bounds = iwae_bound(ensemble, x, 1000, sample_chunk=300, batch_chunk=16, generator=generator(11))
    assert bounds.shape == (2, 40)
    torch.testing.assert_close(bounds[0], exact.exact_log_marginal(x), rtol=0, atol=1e-9)
    alone = iwae_bound(perturbed, x, 1000, generator=generator(12))
    difference = bounds[1] - alone
    assert abs(difference.mean().item()) < 4 * standard_error(difference)
    remaining = perturbed.exact_log_marginal(x) - bounds[1]
    assert remaining.mean().item() > -3 * standard_error(remaining)
    per_member_x = torch.stack([x, data(perturbed, 40, seed=2)])  # (M, B, D)
    bounds = iwae_bound(ensemble, per_member_x, 10, generator=generator(12))
    assert bounds.shape == (2, 40)
    torch.testing.assert_close(bounds[0], exact.exact_log_marginal(x), rtol=0, atol=1e-9)


def test_iwae_leaves_no_gradients_and_restores_training_mode():
    model = perturbed_model()
    model.train()
    x = data(model, 4)
    bound = iwae_bound(model, x, 10, generator=generator(13))
    assert not bound.requires_grad
    assert all(parameter.grad is None for parameter in model.parameters())
    assert model.training


def test_iwae_rejects_bad_arguments():
    model = perturbed_model()
    x = data(model, 4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_samples must be an integer"):
            iwae_bound(model, x, bad)
    with pytest.raises(ValueError, match="sample_chunk"):
        iwae_bound(model, x, 10, sample_chunk=0)
    with pytest.raises(ValueError, match="batch_chunk"):
        iwae_bound(model, x, 10, batch_chunk=0)
    with pytest.raises(ValueError, match="data_shape"):
        iwae_bound(model, x[:, :5], 10)
    with pytest.raises(ValueError, match="no data points"):
        iwae_bound(model, x[:0], 10)


def test_default_sample_chunk_respects_the_memory_budget():
    """K x B x D decoder outputs are never materialised: the default chunk keeps one decoder call
    within DEFAULT_CHUNK_FLOATS floats (784-dim data, 128 points: 41 samples per call), and at
    least one sample per call however large the decoder output."""
    model = LinearGaussianVAE(784, 2)
    assert estimators._sample_chunk_size(model, torch.Size([128]), 5000, None) == estimators.DEFAULT_CHUNK_FLOATS // (128 * 784)
    assert estimators._sample_chunk_size(model, torch.Size([128]), 5, None) == 5
    assert estimators._sample_chunk_size(model, torch.Size([32, 128]), 5000, None) == 1
    assert estimators._sample_chunk_size(model, torch.Size([1024, 128]), 5000, None) == 1
    assert estimators._sample_chunk_size(model, torch.Size([128]), 5000, 3) == 3


# --- optimal posterior and amortization gap ------------------------------------------------------

FIT = dict(learning_rate=3e-3, num_samples=50, check_every=100, patience=10, max_steps=20_000)


@pytest.mark.parametrize("init", ["encoder", "prior"])
def test_fit_recovers_the_exact_posterior(init):
    """Orthogonal W, so the exact posterior is in the family. From a random encoder (init
    'encoder') or N(0, I) ('prior') the fit stops by the plateau rule and lands within Adam's
    stationary jitter of the exact posterior: |mean error| < 0.06 and |std error| < 0.04 (at
    lr 3e-3 the final iterate moves ~0.01-0.03 per window; posterior stds here are 0.24-0.7).
    The fitted q*'s closed-form ELBO is within 0.02 nats of log p(x) on average (0.05 worst)."""
    model = LinearGaussianVAE.from_seed(DATA_DIM, LATENT_DIM, seed=3, sigma=SIGMA, orthogonal=True, encoder="random", dtype=torch.float64)
    x = data(model, 20)
    fit = fit_optimal_posterior(model, x, init=init, eval_samples=500, generator=generator(14), **FIT)
    posterior = model.exact_posterior(x)
    assert fit.converged.all() and (fit.steps % 100 == 0).all() and (fit.steps >= 1200).all()
    assert (fit.mean - posterior.mean).abs().max().item() < 0.06
    assert (fit.log_std.exp() - posterior.covariance.diagonal().sqrt()).abs().max().item() < 0.04
    shortfall = model.exact_log_marginal(x) - model.exact_elbo(x, fit.mean, fit.log_std)
    assert shortfall.mean().item() < 0.02 and shortfall.max().item() < 0.05
    assert fit.elbo.shape == (20,) and (fit.elbo - model.exact_log_marginal(x)).abs().mean().item() < 0.1


def test_fit_recovers_the_optimal_diagonal_gaussian():
    """Correlated W: q* is the mean-field optimum (exact mean, std Lambda_jj^-1/2), whose ELBO is
    log p(x) minus the known KL(q* || p(z|x)). Same tolerances as above."""
    model = perturbed_model(seed=4)
    x = data(model, 20)
    fit = fit_optimal_posterior(model, x, init="prior", eval_samples=None, generator=generator(15), **FIT)
    assert fit.elbo is None and fit.converged.all()
    assert (fit.mean - model.exact_posterior(x).mean).abs().max().item() < 0.06
    assert (fit.log_std.exp() - model.optimal_diagonal_log_std().exp()).abs().max().item() < 0.04
    shortfall = model.exact_log_marginal(x) - model.optimal_diagonal_gap() - model.exact_elbo(x, fit.mean, fit.log_std)
    assert shortfall.mean().item() < 0.02 and shortfall.max().item() < 0.05


def test_fit_on_an_ensemble():
    exact, perturbed = exact_model(seed=0), perturbed_model(seed=1)
    ensemble = StackedEnsemble([exact, perturbed])
    x = data(exact, 10)
    fit = fit_optimal_posterior(ensemble, x, init="prior", eval_samples=200, generator=generator(16), **FIT)
    assert fit.mean.shape == (2, 10, LATENT_DIM) and fit.elbo.shape == (2, 10) and fit.steps.shape == (2, 10)
    for index, member in enumerate((exact, perturbed)):
        assert (fit.mean[index] - member.exact_posterior(x).mean).abs().max().item() < 0.06
        assert (fit.log_std[index].exp() - member.optimal_diagonal_log_std().exp()).abs().max().item() < 0.04


def test_fit_stopping_rule_and_model_untouched():
    """max_steps caps every point (converged False); the model's parameters, requires_grad flags,
    gradients and training mode are as before."""
    model = perturbed_model()
    model.train()
    model.encoder_log_std.requires_grad_(False)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    x = data(model, 6)
    fit = fit_optimal_posterior(model, x, max_steps=30, check_every=10, patience=5, eval_samples=None, generator=generator(17))
    assert not fit.converged.any() and (fit.steps == 30).all()
    assert not torch.equal(fit.mean, model.encode(x)[0])  # it moved
    quick = fit_optimal_posterior(
        model, x, check_every=5, patience=0, max_steps=2000, learning_rate=1e-2, eval_samples=None, batch_chunk=4, generator=generator(18)
    )  # two batch chunks (4 + 2 points)
    assert quick.mean.shape == (6, LATENT_DIM) and quick.steps.shape == (6,)
    assert quick.converged.all() and (quick.steps % 5 == 0).all() and (quick.steps >= 10).all()
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]) and parameter.grad is None
        assert parameter.requires_grad == (name != "encoder_log_std")
    assert model.training


def test_fit_rejects_bad_arguments():
    model = perturbed_model()
    x = data(model, 2)
    with pytest.raises(ValueError, match="init must be one of"):
        fit_optimal_posterior(model, x, init="posterior")
    with pytest.raises(ValueError, match="patience"):
        fit_optimal_posterior(model, x, patience=-1)
    with pytest.raises(ValueError, match="learning_rate"):
        fit_optimal_posterior(model, x, learning_rate=0.0)
    with pytest.raises(ValueError, match="num_samples"):
        fit_optimal_posterior(model, x, num_samples=0)


def test_amortization_gap_matches_closed_form():
    """Perturbed encoder on a correlated W: the true per-point gap is
    [log p(x) - KL(q* || p(z|x))] - ELBO(q_phi), all closed form (12.6 nats here). The estimate's
    mean over 20 points is within 4 SE of its per-point error plus 0.02 (the fit's shortfall) of
    the truth. The per-point MC error is ~0.25 nats with 1000 samples: the poor q_phi's
    reconstruction term is noisy, and shared noise helps little when q_phi and q* differ much."""
    model = perturbed_model(seed=5)
    x = data(model, 20)
    result = amortization_gap(model, x, eval_samples=1000, generator=generator(19), init="encoder", **FIT)
    true_gap = model.exact_log_marginal(x) - model.optimal_diagonal_gap() - model.exact_elbo(x)
    assert result.gap.shape == result.elbo_amortized.shape == result.elbo_optimal.shape == (20,)
    torch.testing.assert_close(result.gap, result.elbo_optimal - result.elbo_amortized)
    assert true_gap.mean().item() > 5.0
    error = result.gap - true_gap
    assert abs(error.mean().item()) < 4 * standard_error(error) + 0.02
    assert error.abs().max().item() < 1.5  # no point is off by more than ~6 per-point MC errors
    assert result.fit.elbo is result.elbo_optimal and result.fit.converged.all()


def test_amortization_gap_is_zero_for_the_optimal_encoder():
    """The encoder already is the optimal diagonal Gaussian: the fit starts at the optimum and the
    gap is 0 up to Adam's jitter (shortfall < 0.02) and MC noise, which the shared noise cancels."""
    model = LinearGaussianVAE.from_seed(DATA_DIM, LATENT_DIM, seed=6, sigma=SIGMA, dtype=torch.float64)
    x = data(model, 20)
    result = amortization_gap(model, x, eval_samples=1000, generator=generator(20), **FIT)
    assert abs(result.mean_gap) < 0.03
    with pytest.raises(ValueError, match="eval_samples"):
        amortization_gap(model, x, eval_samples=0)
