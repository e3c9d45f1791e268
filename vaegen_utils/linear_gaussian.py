"""A linear Gaussian VAE with closed-form marginal, posterior and ELBO: the estimators' ground truth.

Generative model (probabilistic PCA, Tipping & Bishop 1999):
    p(z) = N(0, I_Z),   p(x|z) = N(W z + b, sigma^2 I_D),   so   p(x) = N(b, W W^T + sigma^2 I_D).
Exact posterior (Bishop 2006, Eq. 2.116-2.117):
    p(z|x) = N(Sigma W^T (x - b) / sigma^2, Sigma),   Sigma = Lambda^-1,   Lambda = I + W^T W / sigma^2.
Sigma does not depend on x; it is diagonal iff the columns of W are orthogonal.

Encoder: q(z|x) = N(A x + c, diag(exp(2 s))) with x-independent log std s. Among diagonal
Gaussians the ELBO is maximised by the exact posterior mean and the variances 1 / Lambda_jj (the
mean-field solution for a Gaussian target, Bishop 2006, Eq. 10.12-10.13), which
`set_encoder_to_optimal_diagonal` installs. The gap log p(x) - ELBO at that optimum is
KL(q* || p(z|x)) = (sum_j log Lambda_jj - log det Lambda) / 2, the same for every x, and zero for
orthogonal columns: then q* is the exact posterior, log p(x, z) - log q(z|x) = log p(x) for every z,
and even a one-sample ELBO is exact. `BorealisAI/rate_distortion`'s `analytical_linear_vae.py`
uses the same idea.

The model implements the VAE interface of docs/architecture.md on flat data `(B, D)`
(data_shape `(D,)`), with `FixedVarianceGaussian((D,), sigma)` as its likelihood. Exact
quantities are computed in float64 and returned in the model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from .likelihoods import FixedVarianceGaussian

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class LinearGaussianConfig:
    """Everything `LinearGaussianVAE.from_seed` needs to rebuild a model (JSON-serialisable)."""

    data_dim: int
    latent_dim: int
    sigma: float = 0.5
    seed: int = 0
    orthogonal: bool = False
    encoder: str = "optimal"  # "optimal" (optimal diagonal q) or "random"

    def to_dict(self) -> dict:
        return asdict(self)


class ExactPosterior(NamedTuple):
    """p(z|x) = N(mean, covariance): mean `(..., B, Z)`; covariance `(Z, Z)`, shared by all x."""

    mean: torch.Tensor
    covariance: torch.Tensor


class LinearGaussianVAE(nn.Module):
    """Probabilistic-PCA decoder with a linear Gaussian encoder (module docstring has the maths).

    Parameters: decoder `weight` W `(D, Z)`, `bias` b `(D,)`; encoder `encoder_weight` A `(Z, D)`,
    `encoder_bias` c `(Z,)`, `encoder_log_std` s `(Z,)`. sigma is fixed (a likelihood option).
    """

    def __init__(self, data_dim: int, latent_dim: int, sigma: float = 0.5, config: LinearGaussianConfig | None = None):
        super().__init__()
        if data_dim < 1 or latent_dim < 1:
            raise ValueError(f"data_dim and latent_dim must be positive, got {data_dim} and {latent_dim}")
        self.data_shape = (data_dim,)
        self.latent_dim = latent_dim
        self.likelihood = FixedVarianceGaussian(self.data_shape, sigma=sigma)
        self.config = config or LinearGaussianConfig(data_dim, latent_dim, sigma)
        self.weight = nn.Parameter(torch.zeros(data_dim, latent_dim))
        self.bias = nn.Parameter(torch.zeros(data_dim))
        self.encoder_weight = nn.Parameter(torch.zeros(latent_dim, data_dim))
        self.encoder_bias = nn.Parameter(torch.zeros(latent_dim))
        self.encoder_log_std = nn.Parameter(torch.zeros(latent_dim))

    @property
    def sigma(self) -> float:
        return self.likelihood.sigma

    @classmethod
    def from_seed(
        cls,
        data_dim: int,
        latent_dim: int,
        *,
        seed: int = 0,
        sigma: float = 0.5,
        orthogonal: bool = False,
        encoder: str = "optimal",
        dtype: torch.dtype = torch.float32,
    ) -> "LinearGaussianVAE":
        """A model drawn from `seed` (same seed, same model).

        W: with `orthogonal=True`, W = Q diag(scales) with Q orthonormal `(D, Z)` (QR of a Gaussian
        matrix) and scales uniform in [0.5, 2], so the exact posterior is diagonal; otherwise W has
        i.i.d. N(0, 1/Z) entries plus a shared direction (so columns are clearly correlated).
        b ~ N(0, 0.5^2). encoder: "optimal" installs the optimal diagonal encoder; "random" draws
        A ~ N(0, 0.1^2 / D), c ~ N(0, 0.1^2), s ~ U(-1, 0) (a poor but proper proposal).
        dtype: of the parameters; use torch.float64 for tests at float64 precision (the optimal
        encoder is then exact to float64, not rounded through float32).
        """
        if encoder not in ("optimal", "random"):
            raise ValueError(f"encoder must be 'optimal' or 'random', got {encoder!r}")
        if orthogonal and latent_dim > data_dim:
            raise ValueError(f"orthogonal columns need latent_dim <= data_dim, got {latent_dim} > {data_dim}")
        config = LinearGaussianConfig(data_dim, latent_dim, sigma, seed, orthogonal, encoder)
        model = cls(data_dim, latent_dim, sigma, config=config).to(dtype)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if orthogonal:
                gaussian = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
                basis, _ = torch.linalg.qr(gaussian)  # (D, Z), orthonormal columns
                scales = 0.5 + 1.5 * torch.rand(latent_dim, generator=generator, dtype=torch.float64)
                weight = basis * scales
            else:
                weight = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
                weight = weight / math.sqrt(latent_dim)
                shared = torch.randn(data_dim, 1, generator=generator, dtype=torch.float64) / math.sqrt(latent_dim)
                weight = weight + shared
            model.weight.copy_(weight)
            model.bias.copy_(0.5 * torch.randn(data_dim, generator=generator, dtype=torch.float64))
            encoder_weight = torch.randn(latent_dim, data_dim, generator=generator, dtype=torch.float64)
            model.encoder_weight.copy_(0.1 * encoder_weight / math.sqrt(data_dim))
            model.encoder_bias.copy_(0.1 * torch.randn(latent_dim, generator=generator, dtype=torch.float64))
            model.encoder_log_std.copy_(-torch.rand(latent_dim, generator=generator, dtype=torch.float64))
        if encoder == "optimal":
            model.set_encoder_to_optimal_diagonal()
        return model

    # -- VAE interface (docs/architecture.md) ----------------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x `(..., B, D)` -> mean, log_std `(..., B, Z)` each."""
        mean = x @ self.encoder_weight.T + self.encoder_bias  # (..., B, Z)
        return mean, self.encoder_log_std.expand_as(mean)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z `(..., Z)` -> the Gaussian mean W z + b `(..., D)`."""
        return z @ self.weight.T + self.bias

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over D; x `(B, D)`, z `(..., B, Z)` with leading dims -> `(..., B)`."""
        return self.likelihood.log_prob(x, self.decode(z))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [self.encoder_weight, self.encoder_bias, self.encoder_log_std]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [self.weight, self.bias]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws x ~ p(x), shape `(n, D)`."""
        options = dict(generator=generator, dtype=self.weight.dtype)
        z = torch.randn((n, self.latent_dim), **options)
        with torch.no_grad():
            return self.likelihood.sample(self.decode(z), generator=generator)

    # -- exact quantities -------------------------------------------------------------------------

    def _float64(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        return self.weight.detach().double(), self.bias.detach().double(), self.sigma**2

    def posterior_precision(self) -> torch.Tensor:
        """Lambda = I + W^T W / sigma^2, `(Z, Z)` float64."""
        weight, _, variance = self._float64()
        return torch.eye(self.latent_dim, dtype=torch.float64) + weight.T @ weight / variance

    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + sigma^2 I), x `(..., D)` -> `(...)`.

        By the matrix determinant lemma and Woodbury's identity, with r = x - b:
        log det C = log det Lambda + D log sigma^2 and
        r^T C^-1 r = (|r|^2 - r^T W Lambda^-1 W^T r / sigma^2) / sigma^2.
        """
        weight, bias, variance = self._float64()
        residual = x.detach().double() - bias  # (..., D)
        precision = self.posterior_precision()
        cholesky = torch.linalg.cholesky(precision)
        projected = residual @ weight  # (..., Z)
        solved = torch.cholesky_solve(projected.unsqueeze(-1), cholesky).squeeze(-1)  # Lambda^-1 W^T r
        quadratic = (residual.pow(2).sum(-1) - (projected * solved).sum(-1) / variance) / variance
        log_det = 2.0 * torch.log(torch.diagonal(cholesky)).sum() + self.data_shape[0] * math.log(variance)
        value = -0.5 * (quadratic + log_det + self.data_shape[0] * LOG_2PI)
        return value.to(self.weight.dtype)

    def exact_posterior(self, x: torch.Tensor) -> ExactPosterior:
        """p(z|x): mean Sigma W^T (x - b) / sigma^2 `(..., Z)` and covariance Sigma `(Z, Z)`."""
        weight, bias, variance = self._float64()
        covariance = torch.linalg.inv(self.posterior_precision())
        mean = (x.detach().double() - bias) @ weight @ covariance.T / variance
        return ExactPosterior(mean.to(self.weight.dtype), covariance.to(self.weight.dtype))

    def optimal_diagonal_log_std(self) -> torch.Tensor:
        """log std of the ELBO-optimal diagonal Gaussian, -log(Lambda_jj)/2, `(Z,)`."""
        return (-0.5 * torch.log(torch.diagonal(self.posterior_precision()))).to(self.weight.dtype)

    def optimal_diagonal_gap(self) -> float:
        """log p(x) - max over diagonal q of ELBO(x; q) = (sum_j log Lambda_jj - log det Lambda) / 2, for every x."""
        precision = self.posterior_precision()
        return 0.5 * (torch.log(torch.diagonal(precision)).sum() - torch.logdet(precision)).item()

    def set_encoder_to_optimal_diagonal(self) -> "LinearGaussianVAE":
        """Encoder := exact posterior mean with variances 1/Lambda_jj (the exact posterior when W's
        columns are orthogonal). Returns self."""
        weight, bias, variance = self._float64()
        covariance = torch.linalg.inv(self.posterior_precision())
        gain = covariance @ weight.T / variance  # (Z, D): mean = gain (x - b)
        with torch.no_grad():
            self.encoder_weight.copy_(gain)
            self.encoder_bias.copy_(-gain @ bias)
            self.encoder_log_std.copy_(self.optimal_diagonal_log_std())
        return self

    def exact_elbo(
        self, x: torch.Tensor, mean: torch.Tensor | None = None, log_std: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Closed-form ELBO of a diagonal Gaussian q (default: the encoder's) at x `(..., D)` -> `(...)`.

        E_q[log p(x|z)] = -(|x - b - W mu|^2 + sum_j s_j^2 |W_:j|^2) / (2 sigma^2) - D log sigma - D log(2 pi)/2,
        minus the analytic KL(q || N(0, I)).
        """
        if mean is None or log_std is None:
            with torch.no_grad():
                mean, log_std = self.encode(x)
        weight, bias, variance = self._float64()
        mean, log_std = mean.detach().double(), log_std.detach().double()
        residual = x.detach().double() - bias - mean @ weight.T  # (..., D)
        spread = (torch.exp(2 * log_std) * weight.pow(2).sum(0)).sum(-1)  # sum_j s_j^2 |W_:j|^2
        data_dim = self.data_shape[0]
        expected_log_likelihood = -(residual.pow(2).sum(-1) + spread) / (2 * variance) - 0.5 * data_dim * (
            math.log(variance) + LOG_2PI
        )
        kl = 0.5 * (mean.pow(2) + torch.exp(2 * log_std) - 1.0 - 2.0 * log_std).sum(-1)
        return (expected_log_likelihood - kl).to(self.weight.dtype)
