"""Estimators of VAE objectives: pure, batched functions of a model and data.

A "model" is anything with the VAE interface of docs/architecture.md:
`encode(x) -> (mean, log_std)` and `log_likelihood(x, z) -> log p(x|z)` (summed over data dims,
leading sample dimensions of z broadcast against x's batch). The last dimension of every latent
tensor is the latent dimension and all dimensions before it are batch dimensions, so the same
code serves a single model `(B, Z)` and an ensemble of M members `(M, B, Z)`.

All values are in nats per data point unless a name says otherwise.

Evaluation estimators (`iwae_bound`, `gaussian_elbo`, `fit_optimal_posterior`,
`amortization_gap`) put the model in eval mode for their duration (BatchNorm running statistics,
no dropout) and restore each module's mode afterwards; they never leave gradients in the model.

Reproducible Monte Carlo noise for the evaluation estimators: one 63-bit base seed is drawn from
`generator` per call; data point i (its index in x) gets its own stream, a torch.Generator seeded
with a hash of (base seed, i), and its k-th standard-normal latent noise vector is the k-th block of
uniforms of that stream mapped through the inverse normal CDF. The noise of a (point, sample) pair
is therefore the same whatever `sample_chunk` and `batch_chunk` are, and chunked and unchunked
evaluations agree up to float rounding (tested). The same base seed gives the same noise to every
Gaussian with the same batch and latent shape, which `amortization_gap` uses as common random
numbers for its two ELBOs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator

import torch

from . import device as vdevice
from .checks import check_int, check_number
from . import progress as progress_bars

LOG_2PI = math.log(2.0 * math.pi)

# Size of one decoder call in the chunked estimators: sample_chunk x (batch entries) x (decoder
# outputs per data point) floats. 2**22 float32 values = 16 MB. Measured (one thread, CPU time,
# 784-500-500-500-10 MLP, K = 1000, 100 points): 2**21-2**23 are equally fast, 2**25 (128 MB)
# is 1.4x slower (activations fall out of cache), 2**19 is 1.1x slower (small GEMMs, more calls).
# At least one sample per call, so a huge decoder output still works.
DEFAULT_CHUNK_FLOATS = 2**22
# Data points encoded and decoded together (with 784-dim data: 41 samples x 128 points per call).
DEFAULT_BATCH_CHUNK = 128
# Points optimised together by fit_optimal_posterior (Cremer et al. fit batches of 100).
DEFAULT_FIT_BATCH_CHUNK = 100
FIT_INITS = ("encoder", "prior")


@dataclass(frozen=True)
class ElboTerms:
    """Per-data-point terms of the beta-ELBO (nats), each of shape `(..., B)`.

    distortion D = -E_q[log p(x|z)], rate R = KL(q(z|x) || p(z)), elbo = -D - R (the beta=1
    bound on log p(x)); the beta-VAE training loss is D + beta * R (paper C, Eq. 1).
    """

    elbo: torch.Tensor
    rate: torch.Tensor
    distortion: torch.Tensor

    def loss(self, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Per-data-point beta-VAE loss D + beta * R; beta may be `(M,)` for an ensemble."""
        beta = _as_member_tensor(beta, self.rate)
        return self.distortion + beta * self.rate


def gaussian_kl_to_standard_normal(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(2 log_std))) || N(0, I)), summed over the last dimension.

    Kingma & Welling 2014, App. B: KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).
    """
    return 0.5 * (mean.pow(2) + torch.exp(2.0 * log_std) - 1.0 - 2.0 * log_std).sum(dim=-1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(2 log_std))), summed over the last dimension."""
    standardized = (z - mean) * torch.exp(-log_std)
    return (-0.5 * standardized.pow(2) - log_std - 0.5 * LOG_2PI).sum(dim=-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(dim=-1)


def reparameterize(
    mean: torch.Tensor, log_std: torch.Tensor, num_samples: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mean + exp(log_std) * eps, eps ~ N(0, I).

    Returns `mean.shape` when num_samples is None, else `(num_samples, *mean.shape)`.
    """
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    # Drawn by the (CPU) generator and copied: the same noise on every device (vaegen_utils.device).
    noise = vdevice.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(log_std) * noise


def beta_elbo(
    model, x: torch.Tensor, *, num_samples: int = 1, generator: torch.Generator | None = None
) -> ElboTerms:
    """Rate, distortion and ELBO per data point, with an analytic rate and MC distortion.

    x: `(B, *data_shape)` (or `(M, B, *data_shape)` for an ensemble given per-member batches).
    The distortion averages `num_samples` reparameterized samples (1 = the single-sample
    estimate that paper B's BPD uses). Returns terms of shape `(..., B)`.
    """
    check_int("num_samples", num_samples, minimum=1)
    mean, log_std = model.encode(x)  # (..., B, Z) each
    rate = gaussian_kl_to_standard_normal(mean, log_std)  # (..., B)
    z = reparameterize(mean, log_std, num_samples, generator)  # (S, ..., B, Z)
    distortion = -model.log_likelihood(x, z).mean(dim=0)  # (..., B)
    return ElboTerms(elbo=-distortion - rate, rate=rate, distortion=distortion)


def iwae_bound(
    model,
    x: torch.Tensor,
    num_samples: int,
    *,
    sample_chunk: int | None = None,
    batch_chunk: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x).

    Burda, Grosse & Salakhutdinov 2016 ("Importance Weighted Autoencoders"), Sec. 3.

    The proposal is the model's encoder. IWAE_1 is the single-sample ELBO (with a Monte Carlo
    KL, so it equals the ELBO in expectation); IWAE_K increases with K and tends to log p(x)
    (Burda et al. 2016, Theorem 1). K up to a few thousand (5000 in Burda et al. and Cremer et
    al.) is fine: samples are processed `sample_chunk` at a time with a running log-sum-exp, so
    only `sample_chunk x batch x decoder outputs` floats exist at once, never K of them.

    x: `(B, *data_shape)`, or `(M, B, *data_shape)` for an ensemble given per-member batches; the
    data batch dimension is the one before the data dimensions. The encoder's outputs may carry
    leading dimensions, e.g. `(M, B, Z)` for an ensemble of M members.
    sample_chunk: samples per decoder call; default: as many as fit DEFAULT_CHUNK_FLOATS.
    batch_chunk: data points per encoder/decoder call; default DEFAULT_BATCH_CHUNK.
    generator: draws one base seed; noise per data point is then independent of the chunk sizes
    (module docstring), so results do not depend on `sample_chunk`/`batch_chunk`.
    progress: a bar over the data points (`vaegen_utils.progress`; None = the default rule).

    Returns `(..., B)` in nats (`(B,)` for a single model, `(M, B)` for an ensemble). Runs under
    `torch.no_grad()` with the model in eval mode.
    """
    check_int("num_samples", num_samples, hint="use num_samples=1 for the single-sample ELBO", minimum=1)
    x = vdevice.to_device(x, vdevice.of(model))
    with torch.no_grad(), _evaluation_mode(model):
        base_seed = _draw_base_seed(generator)
        results = []
        num_points = x.shape[_data_batch_dim(model, x)]
        with progress_bars.bar(total=num_points, desc=f"IWAE (K = {num_samples})", unit="point", progress=progress) as bar:
            for point_indices, x_chunk in _batch_chunks(model, x, batch_chunk):
                mean, log_std = model.encode(x_chunk)  # (..., b, Z) each
                results.append(
                    _sample_average(
                        model, x_chunk, mean, log_std, num_samples, sample_chunk, base_seed, point_indices, "log_mean_exp"
                    )
                )  # (..., b)
                bar.update(len(point_indices))
        return torch.cat(results, dim=-1)  # (..., B)


def gaussian_elbo(
    model,
    x: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    *,
    num_samples: int = 1000,
    sample_chunk: int | None = None,
    batch_chunk: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ELBO of a given diagonal Gaussian q(z|x) = N(mean, diag(exp(2 log_std))) per data point.

    ELBO = E_q[log p(x|z)] - KL(q || N(0, I)) (Kingma & Welling 2014, Eq. 10): analytic KL and a
    Monte Carlo average of log p(x|z) over `num_samples` samples, chunked like `iwae_bound` and
    with the same per-point noise streams. Use it to score an encoder with many samples
    (`gaussian_elbo(model, x, *model.encode(x))`) or a fitted q* (`fit_optimal_posterior`).

    x `(B, *data_shape)` (or `(M, B, *data_shape)`); mean, log_std `(..., B, Z)`. Returns `(..., B)`.
    """
    check_int("num_samples", num_samples, minimum=1)
    if mean.shape != log_std.shape:
        raise ValueError(
            f"mean and log_std must have the same shape, got {tuple(mean.shape)} and {tuple(log_std.shape)}"
        )
    device = vdevice.of(model)
    x, mean, log_std = (vdevice.to_device(tensor, device) for tensor in (x, mean, log_std))
    with torch.no_grad(), _evaluation_mode(model):
        base_seed = _draw_base_seed(generator)
        return _gaussian_elbo_from_seed(model, x, mean, log_std, num_samples, sample_chunk, batch_chunk, base_seed)


@dataclass(frozen=True)
class PosteriorFit:
    """Result of `fit_optimal_posterior`: a diagonal Gaussian q*(z|x) per data point.

    mean, log_std: `(..., B, Z)`; elbo: `(..., B)` nats, ELBO of q* with `eval_samples` samples
    (None when evaluation was skipped); steps: `(..., B)` int64, Adam steps taken before the point
    stopped; converged: `(..., B)` bool, True if the point stopped by the plateau rule, False if it
    ran into `max_steps` (then q* may still be improvable; raise max_steps or learning_rate).
    """

    mean: torch.Tensor
    log_std: torch.Tensor
    elbo: torch.Tensor | None
    steps: torch.Tensor
    converged: torch.Tensor

    @property
    def fraction_converged(self) -> float:
        return self.converged.float().mean().item()


def fit_optimal_posterior(
    model,
    x: torch.Tensor,
    *,
    init: str = "encoder",
    num_samples: int = 50,
    learning_rate: float = 1e-3,
    max_steps: int = 20_000,
    check_every: int = 100,
    patience: int = 10,
    eval_samples: int | None = 1000,
    batch_chunk: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> PosteriorFit:
    """Per-data-point optimal diagonal Gaussian q*(z|x) = argmax_q ELBO(x; q), decoder fixed.

    This is the "local" optimal posterior of Cremer, Li & Duvenaud 2018 ("Inference
    Suboptimality in Variational Autoencoders", Sec. 3), whose ELBO defines the amortization gap
    G_a = ELBO(q*) - ELBO(q_phi) (Cremer et al. Sec. 3; paper A Eq. 4); see `amortization_gap`.

    Optimisation: every point's (mean, log std) is a free parameter, all held in one tensor
    `(2, ..., B, Z)` and updated by Adam (Kingma & Ba 2015; betas 0.9/0.999, eps 1e-8, as
    torch.optim.Adam). The objective is the sum over points of each point's own negative ELBO,
    -(1/S) sum_s log p(x|z_s) + KL(q || N(0, I)), with S = `num_samples` reparameterized samples and
    the analytic KL; since Adam acts elementwise, this is exactly independent Adam runs per point,
    batched. The model's parameters get requires_grad=False for the duration (restored after) and
    the model runs in eval mode, so nothing accumulates in the model.

    init: "encoder" starts at the encoder's output (paper B's compression code
    `optimal_posterior`; the natural start for a gap of a given encoder, and much faster);
    "prior" starts at N(0, I), i.e. mean 0, log std 0 (Cremer et al.'s `optimize_local_q`).

    Stopping rule (Cremer et al.'s code, applied per point): the negative ELBO estimates of each
    point are averaged over windows of `check_every` steps; a window that is not strictly below
    the point's best window so far counts as a failure, an improving one resets the count; a point
    stops (its q* is frozen at the current values and it leaves the batch) once more than
    `patience` consecutive windows failed (Cremer: `consecutive_worse > 10`). All points stop at
    `max_steps` (then `converged` is False).

    Defaults follow Cremer et al.'s code: S = 50 samples per step (the window means must be
    precise enough that a plateau is not declared by noise), Adam learning rate 1e-3, windows of
    100 steps, patience 10. `max_steps` = 20,000 is a cost cap that Cremer et al. did not have;
    check `converged`. With init="prior" and lr 1e-3 a mean moves at most ~1e-3 per step, so
    points whose posterior is several units from 0 need thousands of steps. q* is scored with
    `eval_samples` samples (`gaussian_elbo`; Cremer et al. used 5,000; None skips it).

    x: `(B, *data_shape)` (or `(M, B, *data_shape)`). Points are optimised `batch_chunk` at a time
    (default DEFAULT_FIT_BATCH_CHUNK = 100, Cremer et al.'s batch; one Adam step then decodes
    num_samples x 100 latents). Returns a `PosteriorFit` with `(..., B, Z)` parameters and
    `(..., B)` per-point results. For an ensemble every (member, point) entry has its own stopping
    state; a data point leaves the batch when all its entries stopped.

    progress: a bar counting finished points, with the current step (`vaegen_utils.progress`;
    None = the default rule); the fit of 16 points can take minutes.
    """
    if init not in FIT_INITS:
        raise ValueError(
            f"init must be one of {FIT_INITS} ('encoder': start at q_phi(z|x), 'prior': start at N(0, I)), "
            f"got {init!r}"
        )
    for name, value in (("num_samples", num_samples), ("max_steps", max_steps), ("check_every", check_every)):
        check_int(name, value, minimum=1)
    if not isinstance(patience, int) or patience < 0:
        raise ValueError(f"patience must be a non-negative int (windows without improvement), got {patience!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if eval_samples is not None:
        check_int("eval_samples", eval_samples, hint="or None to skip the evaluation", minimum=1)
    batch_dim = _data_batch_dim(model, x)
    x = vdevice.to_device(x, vdevice.of(model))
    bar = progress_bars.bar(total=x.shape[batch_dim], desc="per-point q* fit", unit="point", progress=progress)
    with bar, _evaluation_mode(model), _frozen_parameters(model):
        chunks = []
        for _, x_chunk in _batch_chunks(model, x, batch_chunk or DEFAULT_FIT_BATCH_CHUNK):
            with torch.no_grad():
                init_mean, init_log_std = model.encode(x_chunk)  # (..., b, Z)
            if init == "prior":
                init_mean, init_log_std = torch.zeros_like(init_mean), torch.zeros_like(init_log_std)
            chunks.append(
                _fit_local_gaussians(
                    model, x_chunk, batch_dim, init_mean, init_log_std, num_samples, learning_rate, max_steps,
                    check_every, patience, generator, bar,
                )
            )
        fitted = PosteriorFit(
            mean=torch.cat([chunk.mean for chunk in chunks], dim=-2),  # (..., B, Z)
            log_std=torch.cat([chunk.log_std for chunk in chunks], dim=-2),
            elbo=None,
            steps=torch.cat([chunk.steps for chunk in chunks], dim=-1),  # (..., B)
            converged=torch.cat([chunk.converged for chunk in chunks], dim=-1),
        )
        elbo = None
        if eval_samples is not None:
            elbo = gaussian_elbo(model, x, fitted.mean, fitted.log_std, num_samples=eval_samples, generator=generator)
        return dataclasses.replace(fitted, elbo=elbo)


@dataclass(frozen=True)
class AmortizationGap:
    """ELBOs of the amortized and the per-point optimal posterior, and their difference.

    Each field `(..., B)` in nats: elbo_amortized = ELBO(q_phi), elbo_optimal = ELBO(q*),
    gap = elbo_optimal - elbo_amortized (per point; G_a is its mean over test points, paper A Eq. 4,
    Cremer et al. 2018 Sec. 3). Both ELBOs use the same number of samples and the same noise
    (common random numbers), so their Monte Carlo errors largely cancel in the gap. `fit` holds q*.
    """

    elbo_amortized: torch.Tensor
    elbo_optimal: torch.Tensor
    gap: torch.Tensor
    fit: PosteriorFit

    @property
    def mean_gap(self) -> float:
        return self.gap.mean().item()


@dataclass(frozen=True)
class PerPointSettings:
    """How to fit the per-data-point optimal posterior q*(z|x) on the first `n_points` images.

    The settings of `amortization_gap` / `fit_optimal_posterior` as one frozen, JSON-able record,
    shared by every notebook that measures an amortization gap (zhang2022's Fig. 1b subset panel,
    xiao2024's G_a, the gap decomposition): Adam on each point's (mean, log std) from the encoder's
    output (init="encoder", as paper B's compression code `optimal_posterior`), `num_samples`
    reparameterised samples per step, Cremer et al. (2018)'s plateau rule (windows of `check_every`
    steps, stop after more than `patience` windows without improvement) capped at `max_steps`;
    both ELBOs are then scored with `eval_samples` samples and common random numbers (seed `seed`).
    The caller checks `n_points` against its test set.
    """

    n_points: int
    num_samples: int = 10
    learning_rate: float = 5e-3  # paper B's compression code, MNIST
    max_steps: int = 2000
    check_every: int = 50
    patience: int = 2
    eval_samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_points", self.n_points, minimum=1)
        for name in ("num_samples", "max_steps", "check_every", "eval_samples"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("patience", self.patience, minimum=0)
        check_int("seed", self.seed, minimum=0)
        object.__setattr__(self, "learning_rate", check_number("learning_rate", self.learning_rate, positive=True))

    def fit_options(self) -> dict:
        """The keyword arguments of `fit_optimal_posterior` / `amortization_gap` (besides eval_samples)."""
        return {
            "init": "encoder",
            "num_samples": self.num_samples,
            "learning_rate": self.learning_rate,
            "max_steps": self.max_steps,
            "check_every": self.check_every,
            "patience": self.patience,
        }


def amortization_gap(
    model,
    x: torch.Tensor,
    *,
    eval_samples: int = 1000,
    generator: torch.Generator | None = None,
    **fit_options,
) -> AmortizationGap:
    """Amortization gap per data point: ELBO(q*) - ELBO(q_phi) with q* from `fit_optimal_posterior`.

    fit_options go to `fit_optimal_posterior` unchanged (init, num_samples per Adam step,
    learning_rate, max_steps, check_every, patience). Both ELBOs are then evaluated by
    `gaussian_elbo` with `eval_samples` samples and the same noise streams (common random numbers).
    x `(B, *data_shape)` (or `(M, B, *data_shape)`); returns `(..., B)` tensors in an `AmortizationGap`.
    """
    check_int("eval_samples", eval_samples, minimum=1)
    x = vdevice.to_device(x, vdevice.of(model))
    fit = fit_optimal_posterior(model, x, eval_samples=None, generator=generator, **fit_options)
    with torch.no_grad(), _evaluation_mode(model):
        base_seed = _draw_base_seed(generator)
        encoder_mean, encoder_log_std = model.encode(x)  # (..., B, Z)
        elbo_amortized = _gaussian_elbo_from_seed(
            model, x, encoder_mean, encoder_log_std, eval_samples, None, None, base_seed
        )  # (..., B)
        elbo_optimal = _gaussian_elbo_from_seed(model, x, fit.mean, fit.log_std, eval_samples, None, None, base_seed)
    return AmortizationGap(
        elbo_amortized=elbo_amortized,
        elbo_optimal=elbo_optimal,
        gap=elbo_optimal - elbo_amortized,
        fit=dataclasses.replace(fit, elbo=elbo_optimal),
    )


class _FixedProposal(torch.nn.Module):
    """A VAE whose encoder output is a given Gaussian per data point (for IWAE with q* as proposal)."""

    def __init__(self, model: torch.nn.Module, mean: torch.Tensor, log_std: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach())
        self.register_buffer("log_std", log_std.detach())
        self.data_shape = model.data_shape
        self.likelihood = model.likelihood

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points = x.shape[x.dim() - len(self.data_shape) - 1]
        if points != self.mean.shape[-2]:
            raise ValueError(f"the proposal holds {self.mean.shape[-2]} points but x has {points}")
        return self.mean, self.log_std

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.model.log_likelihood(x, z)


def iwae_with_proposal(
    model: torch.nn.Module,
    x: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """IWAE_K of `model`'s decoder with the per-point Gaussian N(mean, exp(log_std)^2) as proposal.

    With q* as the proposal this is Cremer et al. (2018)'s estimate of log p(x) (their `compute_gaps`).
    Same noise streams as `iwae_bound` / `gaussian_elbo` for the same generator seed.
    x `(B, *data_shape)`; mean, log_std `(..., B, Z)`; returns `(..., B)` nats.
    """
    wrapper = _FixedProposal(model, mean, log_std)
    return iwae_bound(wrapper, x, num_samples, batch_chunk=x.shape[0], generator=generator)


def bits_per_dim(nats_per_point: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a log-likelihood (or ELBO) in nats per data point to bits per dimension.

    bpd = -nats / (D ln 2): a *negative* log-likelihood in base 2 per data dimension, lower is
    better (paper B, footnotes 1 and 3).
    """
    return -nats_per_point / (num_dims * math.log(2.0))


def _as_member_tensor(beta: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """Broadcast a per-member beta `(M,)` against terms of shape `(M, B)`."""
    if isinstance(beta, torch.Tensor) and beta.dim() == 1:
        if like.dim() < 2 or beta.shape[0] != like.shape[0]:
            raise ValueError(
                f"a per-member beta of shape {tuple(beta.shape)} needs ensemble terms of shape (M, B) with "
                f"M = {beta.shape[0]}, got terms of shape {tuple(like.shape)}; pass a float for a single model"
            )
        return beta.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
    return beta


# ---------------------------------------------------------------------------------------------
# internals



def _data_batch_dim(model, x: torch.Tensor) -> int:
    """Index of x's data batch dimension: the one right before the model's data dimensions."""
    data_shape = getattr(model, "data_shape", None)
    if data_shape is None:
        raise ValueError(
            f"{type(model).__name__} has no data_shape; the estimators need the VAE interface of docs/architecture.md"
        )
    data_shape = tuple(data_shape)
    batch_dim = x.dim() - len(data_shape) - 1
    if batch_dim < 0 or tuple(x.shape[batch_dim + 1 :]) != data_shape:
        raise ValueError(
            f"x of shape {tuple(x.shape)} must be (B, *data_shape) or (M, B, *data_shape) with data_shape "
            f"{data_shape}; add a batch dimension with x.unsqueeze(0) for a single point"
        )
    if x.shape[batch_dim] == 0:
        raise ValueError(f"x of shape {tuple(x.shape)} holds no data points; pass at least one")
    return batch_dim


def _batch_chunks(model, x: torch.Tensor, batch_chunk: int | None) -> Iterator[tuple[range, torch.Tensor]]:
    """Yield (point indices, x restricted to them) over x's data batch dimension."""
    batch_dim = _data_batch_dim(model, x)
    if batch_chunk is None:
        batch_chunk = DEFAULT_BATCH_CHUNK
    check_int("batch_chunk", batch_chunk, minimum=1)
    num_points = x.shape[batch_dim]
    for start in range(0, num_points, batch_chunk):
        stop = min(start + batch_chunk, num_points)
        yield range(start, stop), x.narrow(batch_dim, start, stop - start)


def _decoder_outputs_per_point(model) -> int:
    likelihood = getattr(model, "likelihood", None)
    shape = getattr(likelihood, "param_shape", None) or model.data_shape
    return max(1, math.prod(shape))


def _sample_chunk_size(model, latent_batch_shape: torch.Size, num_samples: int, sample_chunk: int | None) -> int:
    """Samples per decoder call: `sample_chunk`, or as many as fit DEFAULT_CHUNK_FLOATS."""
    if sample_chunk is not None:
        check_int("sample_chunk", sample_chunk, minimum=1)
        return min(sample_chunk, num_samples)
    floats_per_sample = math.prod(latent_batch_shape) * _decoder_outputs_per_point(model)
    return max(1, min(num_samples, DEFAULT_CHUNK_FLOATS // floats_per_sample))


def _draw_base_seed(generator: torch.Generator | None) -> int:
    """One 63-bit seed from `generator` (or torch's global generator when None)."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64).item())


def _point_seed(base_seed: int, point_index: int) -> int:
    """SplitMix64 hash of (base seed, point index): well-separated seeds for the point streams."""
    mask = 2**64 - 1
    value = (base_seed + (point_index + 1) * 0x9E3779B97F4A7C15) & mask
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & mask
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & mask
    return (value ^ (value >> 31)) & (2**63 - 1)


def _point_generators(base_seed: int, point_indices: range) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(_point_seed(base_seed, index)) for index in point_indices]


def _standard_normal_noise(
    generators: list[torch.Generator], num_samples: int, like: torch.Tensor
) -> torch.Tensor:
    """Noise `(num_samples, *like.shape)` for latents `like` of shape `(..., b, Z)`, b = len(generators).

    Each point's block `(num_samples, ..., Z)` is the next num_samples * prod(...) * Z float64
    uniforms of its own generator, mapped through the inverse normal CDF (ndtri). CPU uniform
    draws are sequential, so splitting the samples into chunks does not change the values. Only
    the draws are per point; the transform is one vectorized call.
    """
    *lead, num_points, latent_dim = like.shape
    block_shape = (num_samples, *lead, latent_dim)
    uniform = torch.stack(
        [torch.rand(block_shape, generator=generator, dtype=torch.float64) for generator in generators], dim=-2
    )  # (S, ..., b, Z)
    noise = torch.special.ndtri(uniform.clamp_(min=torch.finfo(torch.float64).tiny))
    return vdevice.to_device(noise.to(dtype=like.dtype), like.device)


def _sample_average(
    model,
    x_chunk: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    num_samples: int,
    sample_chunk: int | None,
    base_seed: int,
    point_indices: range,
    reduction: str,
) -> torch.Tensor:
    """Average over K samples z ~ N(mean, diag(exp(2 log_std))) for one batch chunk.

    reduction "log_mean_exp": log (1/K) sum_k w_k with log w = log p(x|z) + log p(z) - log q(z|x)
    (the IWAE bound); "mean": (1/K) sum_k log p(x|z) (the ELBO's reconstruction term).
    mean, log_std `(..., b, Z)`; returns `(..., b)` in mean's dtype, accumulated in float64.
    """
    chunk = _sample_chunk_size(model, mean.shape[:-1], num_samples, sample_chunk)
    generators = _point_generators(base_seed, point_indices)
    std = torch.exp(log_std)
    total = None  # (..., b) float64: running log-sum-exp or sum
    for start in range(0, num_samples, chunk):
        count = min(chunk, num_samples - start)
        noise = _standard_normal_noise(generators, count, mean)  # (k, ..., b, Z)
        z = mean + std * noise  # (k, ..., b, Z)
        log_likelihood = model.log_likelihood(x_chunk, z)  # (k, ..., b)
        if reduction == "log_mean_exp":
            log_proposal = (-0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI).sum(dim=-1)  # log q(z|x), (k, ..., b)
            log_weight = log_likelihood + standard_normal_log_density(z) - log_proposal  # (k, ..., b)
            chunk_total = torch.logsumexp(log_weight.double(), dim=0)  # (..., b)
            total = chunk_total if total is None else torch.logaddexp(total, chunk_total)
        else:
            chunk_total = log_likelihood.double().sum(dim=0)
            total = chunk_total if total is None else total + chunk_total
    if reduction == "log_mean_exp":
        return (total - math.log(num_samples)).to(mean.dtype)
    return (total / num_samples).to(mean.dtype)


def _gaussian_elbo_from_seed(
    model, x, mean, log_std, num_samples, sample_chunk, batch_chunk, base_seed
) -> torch.Tensor:
    """`gaussian_elbo` with an explicit base seed (shared noise for common random numbers)."""
    batch_dim = _data_batch_dim(model, x)
    if mean.dim() < 2 or mean.shape[-2] != x.shape[batch_dim]:
        raise ValueError(
            f"mean of shape {tuple(mean.shape)} must be (..., B, Z) with B = {x.shape[batch_dim]} points of x"
        )
    results = []
    for point_indices, x_chunk in _batch_chunks(model, x, batch_chunk):
        index = slice(point_indices.start, point_indices.stop)
        mean_chunk, log_std_chunk = mean[..., index, :], log_std[..., index, :]  # (..., b, Z)
        reconstruction = _sample_average(
            model, x_chunk, mean_chunk, log_std_chunk, num_samples, sample_chunk, base_seed, point_indices, "mean"
        )  # (..., b)
        results.append(reconstruction - gaussian_kl_to_standard_normal(mean_chunk, log_std_chunk))
    return torch.cat(results, dim=-1)  # (..., B)


def _fit_local_gaussians(
    model, x, batch_dim, init_mean, init_log_std, num_samples, learning_rate, max_steps, check_every, patience,
    generator, bar,
) -> PosteriorFit:
    """The optimisation loop of `fit_optimal_posterior` (see its docstring for the rule).

    Working tensors hold only the points still running ("active"), along the data batch dimension
    (dim -2 of latents, -1 of per-point values); finished entries are written into the result
    tensors, which have the full shape. Adam is written out (torch.optim.Adam's update with
    default betas, eps, no weight decay) so its moments can be sliced when points leave.
    """
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
    result_mean, result_log_std = init_mean.clone(), init_log_std.clone()  # (..., B, Z)
    entry_shape = init_mean.shape[:-1]  # (..., B)
    device = init_mean.device
    result_steps = torch.full(entry_shape, max_steps, dtype=torch.int64, device=device)
    result_converged = torch.zeros(entry_shape, dtype=torch.bool, device=device)

    active = torch.arange(init_mean.shape[-2], device=device)  # data indices of the running points
    variational = torch.stack((init_mean, init_log_std)).detach().clone()  # (2, ..., b, Z)
    first_moment = torch.zeros_like(variational)
    second_moment = torch.zeros_like(variational)
    best_window = torch.full(entry_shape, math.inf, dtype=torch.float64, device=device)  # (..., b)
    window_sum = torch.zeros(entry_shape, dtype=torch.float64, device=device)
    failed_windows = torch.zeros(entry_shape, dtype=torch.int64, device=device)
    stopped = torch.zeros(entry_shape, dtype=torch.bool, device=device)
    x_active = x

    for step in range(1, max_steps + 1):
        variational.requires_grad_(True)
        mean, log_std = variational.unbind(0)  # (..., b, Z)
        noise = vdevice.randn((num_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
        z = mean + torch.exp(log_std) * noise  # (S, ..., b, Z)
        reconstruction = model.log_likelihood(x_active, z).mean(dim=0)  # (..., b)
        negative_elbo = gaussian_kl_to_standard_normal(mean, log_std) - reconstruction  # (..., b)
        (gradient,) = torch.autograd.grad(negative_elbo.sum(), variational)
        with torch.no_grad():
            variational.requires_grad_(False)
            first_moment.mul_(beta1).add_(gradient, alpha=1 - beta1)
            second_moment.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            step_size = learning_rate / (1 - beta1**step)
            denominator = (second_moment / (1 - beta2**step)).sqrt_().add_(adam_eps)
            variational.addcdiv_(first_moment, denominator, value=-step_size)
            window_sum += negative_elbo.detach().double()

        if step % check_every != 0:
            continue
        window_mean = window_sum / check_every
        improved = window_mean < best_window
        best_window = torch.where(improved, window_mean, best_window)
        failed_windows = torch.where(improved, torch.zeros_like(failed_windows), failed_windows + 1)
        window_sum.zero_()
        # The bar counts finished points; update(0) lets text mode print its periodic line.
        bar.set_postfix_str(f"step {step}, {len(active)} points running", refresh=False)
        bar.update(0)
        newly_stopped = (failed_windows > patience) & ~stopped
        if newly_stopped.any():
            _record(result_mean, active, variational[0], newly_stopped)
            _record(result_log_std, active, variational[1], newly_stopped)
            _record(result_steps, active, torch.full_like(failed_windows, step), newly_stopped, latent=False)
            _record(result_converged, active, torch.ones_like(stopped), newly_stopped, latent=False)
            stopped = stopped | newly_stopped
            point_done = stopped.reshape(-1, stopped.shape[-1]).all(dim=0)  # (b,): all entries of the point
            bar.update(int(point_done.sum()))
            if point_done.all():
                return PosteriorFit(result_mean, result_log_std, None, result_steps, result_converged)
            if point_done.any():
                keep = ~point_done
                active = active[keep]
                variational, first_moment, second_moment = (
                    t[..., keep, :] for t in (variational, first_moment, second_moment)
                )
                best_window, window_sum, failed_windows, stopped = (
                    t[..., keep] for t in (best_window, window_sum, failed_windows, stopped)
                )
                x_active = x.index_select(batch_dim, active)

    # max_steps reached: the running entries keep their current values, converged stays False
    bar.update(len(active))
    running = ~stopped
    _record(result_mean, active, variational[0], running)
    _record(result_log_std, active, variational[1], running)
    return PosteriorFit(result_mean, result_log_std, None, result_steps, result_converged)


def _record(
    result: torch.Tensor, active: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, latent: bool = True
) -> None:
    """result[..., active, (:)] = values where mask, in place. mask `(..., b)`; values `(..., b, Z)` or `(..., b)`."""
    point_dim = result.dim() - 2 if latent else result.dim() - 1
    current = result.index_select(point_dim, active)
    selector = mask.unsqueeze(-1) if latent else mask
    result.index_copy_(point_dim, active, torch.where(selector, values.detach().to(result.dtype), current))


@contextlib.contextmanager
def _evaluation_mode(model):
    """model.eval() for the duration, then every submodule's previous training flag restored."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, was_training in previous:
            module.training = was_training


@contextlib.contextmanager
def _frozen_parameters(model):
    """requires_grad=False on every model parameter for the duration (restored after)."""
    parameters = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    previous = [parameter.requires_grad for parameter in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(parameters, previous):
            parameter.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------
# Mutual information and marginal KL: the rate split of paper C, Eq. (5)
#
# R = E_{q(x)} KL(q(z|x) || p(z)) = I_q[x; z] + KL(q(z) || p(z)),  q(z) = (1/N) sum_n q(z|x_n)
# (Hoffman & Johnson 2016, "ELBO surgery"; paper C, Eq. 5 and Sec. 4.5). Both terms need
# log q(z) of the aggregate posterior, a mixture of N Gaussians. Two estimators of it:
# - minibatch (Esmaeili et al. 2019; probtorch `Trace.log_batch_marginal`, paper C's Fig. 8):
#   the batch stands in for the whole mixture, with the diagonal term reweighted so the N - 1
#   other components are represented by the B - 1 other batch members (paper C Sec. 4.5);
# - full (rtqichen/beta-tcvae `elbo_decomposition.py`): logsumexp over all N components - log N.
# MI <= log N for both (the own component alone contributes q(z|x_n)/N), so every MI number must be
# read next to its N: small-beta VAEs saturate at log N_train (paper C, Sec. 4.5).
# The pure functions take encoder outputs (mean, log_std) `(..., N, Z)`, so they are testable
# without a model and work for an ensemble `(M, N, Z)` unchanged; the wrappers encode data first.
# ---------------------------------------------------------------------------------------------

RATE_DECOMPOSITION_ESTIMATORS = ("minibatch", "full")
DEFAULT_MI_BATCH_SIZE = 512  # paper C, Sec. 4.5: "batches of size 512"
DEFAULT_COMPONENT_CHUNK = 512  # mixture components per pairwise block (float64: Q x 512 x 8 bytes per member)
PAIRWISE_BLOCK_ELEMENTS = 2**23  # float64 elements of one (..., q, C, Z) difference block: 64 MB


@dataclass(frozen=True)
class RateDecomposition:
    """The rate split R = I_q[x; z] + KL(q(z) || p(z)) (paper C, Eq. 5), nats per data point.

    Each tensor has the encoder outputs' leading shape (`()` for one model, `(M,)` for an
    ensemble). `rate` is the analytic mean KL(q(z|x_n) || p(z)) over the N points;
    `mutual_information` = mean[log q(z|x) - log q(z)] and `marginal_kl` = mean[log q(z) - log p(z)]
    over sampled z ~ q(z|x_n) (the forms of paper C Sec. 4.5), so their sum is exactly
    `rate_sampled` = mean[log q(z|x) - log p(z)], the Monte Carlo estimate of `rate`.
    `num_data` = N, the number of mixture components q(z) stands for (MI <= log N);
    `batch_size` = B for the minibatch estimator (None for the full one); `num_queries` = the
    number of sampled (x_n, z) pairs averaged.
    """

    rate: torch.Tensor
    mutual_information: torch.Tensor
    marginal_kl: torch.Tensor
    rate_sampled: torch.Tensor
    num_data: int
    estimator: str
    batch_size: int | None
    num_queries: int

    @property
    def log_num_data(self) -> float:
        """log N: the largest value either estimator can return for the mutual information."""
        return math.log(self.num_data)

    def to_dict(self) -> dict:
        """Plain JSON-able values (tensors as floats or lists)."""
        as_plain = lambda value: vdevice.to_host(value).tolist() if isinstance(value, torch.Tensor) else value  # noqa: E731
        return {field.name: as_plain(getattr(self, field.name)) for field in dataclasses.fields(self)} | {
            "log_num_data": self.log_num_data
        }


def pairwise_gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(z_q; mean_c, diag(exp(2 log_std_c))) for every query q and component c, in float64.

    z `(..., Q, Z)`, mean and log_std `(..., C, Z)` (leading dims broadcast) -> `(..., Q, C)`.
    Computed directly from (z_q - mean_c) / sigma_c, a few queries at a time so that one
    `(..., q, C, Z)` block stays within PAIRWISE_BLOCK_ELEMENTS. Not with the expanded quadratic
    form z^2.w - 2 z.(m w) + m^2.w (three matrix products, much faster): it cancels, with an
    absolute error of ~1e-16 |z|^2 / sigma^2, which for the sigma ~ 1e-9 that small-β encoders can
    produce is thousands of nats (measured: an "MI" of 47 nats > log N on paper C's 3-layer MLPs).
    """
    z, mean, log_std = z.double(), mean.double(), log_std.double()
    inverse_std = torch.exp(-log_std).unsqueeze(-3)  # (..., 1, C, Z)
    centres = mean.unsqueeze(-3)  # (..., 1, C, Z)
    leading = torch.broadcast_shapes(z.shape[:-2], mean.shape[:-2])
    per_query = max(1, math.prod(leading) * mean.shape[-2] * z.shape[-1])
    chunk = max(1, PAIRWISE_BLOCK_ELEMENTS // per_query)
    blocks = [
        ((z[..., start : start + chunk, :].unsqueeze(-2) - centres) * inverse_std).square_().sum(dim=-1)  # (..., q, C)
        for start in range(0, z.shape[-2], chunk)
    ]
    quadratic = torch.cat(blocks, dim=-2)  # (..., Q, C)
    normaliser = log_std.sum(dim=-1).unsqueeze(-2) + 0.5 * z.shape[-1] * LOG_2PI  # (..., 1, C)
    return -0.5 * quadratic - normaliser


def minibatch_aggregate_log_density(
    z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, num_data: int
) -> torch.Tensor:
    """Esmaeili et al. 2019's estimate of log q(z_b) from one batch (paper C Sec. 4.5), float64.

    z `(..., B, Z)` with z_b ~ q(z|x_b); mean, log_std `(..., B, Z)` of the same batch; num_data = N,
    the size of the data set the batch was drawn from. Returns `(..., B)`:
        log q(z_b) ~ log[ (1/N) q(z_b|x_b) + ((N-1)/N) (1/(B-1)) sum_{b' != b} q(z_b|x_b') ],
    i.e. a log-mean-exp over the B x B matrix whose diagonal is reweighted by (N-1)/(B-1)
    (probtorch `Trace.log_batch_marginal`). With N = B it is the plain batch mixture.
    """
    batch = z.shape[-2]
    check_int("num_data", num_data, minimum=1)
    if batch < 2:
        raise ValueError(f"the minibatch estimator needs batches of at least 2 points, got {batch}")
    if num_data < batch:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({batch}); N counts the whole data set")
    pairwise = pairwise_gaussian_log_density(z, mean, log_std)  # (..., B, B): [b, b'] = log q(z_b | x_b')
    off_diagonal = math.log((num_data - 1) / (num_data * (batch - 1))) if num_data > 1 else -math.inf
    log_weights = torch.full((batch, batch), off_diagonal, dtype=torch.float64, device=z.device)
    log_weights.fill_diagonal_(-math.log(num_data))
    return torch.logsumexp(pairwise + log_weights, dim=-1)


def full_aggregate_log_density(
    z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, *, component_chunk: int = DEFAULT_COMPONENT_CHUNK
) -> torch.Tensor:
    """log q(z) = logsumexp_n log q(z|x_n) - log N over all N components, float64.

    z `(..., Q, Z)`; mean, log_std `(..., N, Z)` of the whole data set -> `(..., Q)`. The N
    components are processed `component_chunk` at a time and combined with a running logsumexp,
    so memory is Q x component_chunk per leading index (rtqichen/beta-tcvae's full estimator).
    """
    check_int("component_chunk", component_chunk, minimum=1)
    num_components = mean.shape[-2]
    running = None
    for start in range(0, num_components, component_chunk):
        block = pairwise_gaussian_log_density(
            z, mean[..., start : start + component_chunk, :], log_std[..., start : start + component_chunk, :]
        )  # (..., Q, chunk)
        chunk_value = torch.logsumexp(block, dim=-1)  # (..., Q)
        running = chunk_value if running is None else torch.logaddexp(running, chunk_value)
    return running - math.log(num_components)


def _check_encoder_outputs(mean: torch.Tensor, log_std: torch.Tensor) -> int:
    if not isinstance(mean, torch.Tensor) or not isinstance(log_std, torch.Tensor) or mean.shape != log_std.shape:
        raise ValueError(
            "mean and log_std must be tensors of one shape (..., N, Z), as returned by model.encode; got "
            f"{getattr(mean, 'shape', type(mean).__name__)} and {getattr(log_std, 'shape', type(log_std).__name__)}"
        )
    if mean.dim() < 2 or mean.shape[-2] < 2:
        raise ValueError(
            f"encoder outputs must be (..., N, Z) with N >= 2 data points, got {tuple(mean.shape)}; the "
            "aggregate posterior is a mixture over the data set, so pass the whole (training) set"
        )
    return mean.shape[-2]


def _decomposition(
    log_conditional: torch.Tensor,
    log_marginal: torch.Tensor,
    log_prior: torch.Tensor,
    rate: torch.Tensor,
    *,
    num_data: int,
    estimator: str,
    batch_size: int | None,
) -> RateDecomposition:
    """Average per-sample log densities `(..., Q)` into a RateDecomposition (float64 means)."""
    return RateDecomposition(
        rate=rate,
        mutual_information=(log_conditional - log_marginal).mean(dim=-1),
        marginal_kl=(log_marginal - log_prior).mean(dim=-1),
        rate_sampled=(log_conditional - log_prior).mean(dim=-1),
        num_data=num_data,
        estimator=estimator,
        batch_size=batch_size,
        num_queries=log_conditional.shape[-1],
    )


def rate_decomposition_minibatch(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    *,
    batch_size: int = DEFAULT_MI_BATCH_SIZE,
    num_data: int | None = None,
    generator: torch.Generator | None = None,
) -> RateDecomposition:
    """I_q[x; z] and KL(q(z) || p(z)) with the minibatch estimator of Esmaeili et al. 2019.

    mean, log_std `(..., N, Z)`: encoder outputs for the whole data set q(x) (the training set in
    paper C). The N points are shuffled (`generator`) and cut into disjoint batches of
    `batch_size` (paper C: 512; a last batch of one point is dropped); in each batch every point
    draws one z ~ q(z|x_b) and log q(z_b) comes from `minibatch_aggregate_log_density` with
    num_data (default N). MI and marginal KL average over all points used. Leading dims (ensemble
    members) share the batches and the noise draws' positions but not their values.
    """
    num_points = _check_encoder_outputs(mean, log_std)
    check_int("batch_size", batch_size, hint="paper C uses batches of 512", minimum=1)
    num_data = num_points if num_data is None else num_data
    check_int("num_data", num_data, minimum=1)
    order = vdevice.randperm(num_points, generator=generator, device=mean.device)
    batches = [batch for batch in torch.split(order, min(batch_size, num_points)) if len(batch) >= 2]
    pieces = {"conditional": [], "marginal": [], "prior": []}
    for batch in batches:
        batch_mean, batch_log_std = mean[..., batch, :].double(), log_std[..., batch, :].double()  # (..., b, Z)
        noise = vdevice.randn(batch_mean.shape, generator=generator, dtype=torch.float64, device=mean.device)
        z = batch_mean + torch.exp(batch_log_std) * noise  # (..., b, Z)
        pieces["conditional"].append(gaussian_log_density(z, batch_mean, batch_log_std))
        pieces["marginal"].append(minibatch_aggregate_log_density(z, batch_mean, batch_log_std, num_data))
        pieces["prior"].append(standard_normal_log_density(z))
    joined = {name: torch.cat(values, dim=-1) for name, values in pieces.items()}  # (..., Q) each
    used = torch.cat(batches)
    rate = gaussian_kl_to_standard_normal(mean[..., used, :].double(), log_std[..., used, :].double()).mean(dim=-1)
    return _decomposition(
        joined["conditional"], joined["marginal"], joined["prior"], rate,
        num_data=num_data, estimator="minibatch", batch_size=batch_size,
    )


def rate_decomposition_full(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    *,
    num_samples: int = 1,
    max_queries: int | None = None,
    component_chunk: int = DEFAULT_COMPONENT_CHUNK,
    generator: torch.Generator | None = None,
) -> RateDecomposition:
    """I_q[x; z] and KL(q(z) || p(z)) with log q(z) over all N mixture components.

    mean, log_std `(..., N, Z)`: encoder outputs of the whole data set. Queries are
    `num_samples` draws z ~ q(z|x_n) for each of the N points, or for a seeded random subset of
    `max_queries` points (the mixture always keeps all N components; rtqichen/beta-tcvae uses at
    most 10,000 queries). Cost: queries x N x Z float64 differences (direct, see
    `pairwise_gaussian_log_density`): ~30 s for 4,096 x 16,384 x 10 x 12 ensemble members here.
    With the exact mixture, E[MI] + E[KL] = R holds as an identity; here MI + KL equals
    `rate_sampled` to rounding and `rate` up to Monte Carlo error.
    """
    num_points = _check_encoder_outputs(mean, log_std)
    check_int("num_samples", num_samples, minimum=1)
    if max_queries is not None:
        check_int("max_queries", max_queries, minimum=1)
    rows = torch.arange(num_points, device=mean.device)
    if max_queries is not None and max_queries < num_points:
        rows = vdevice.randperm(num_points, generator=generator)[:max_queries].sort().values.to(mean.device)
    query_mean, query_log_std = mean[..., rows, :].double(), log_std[..., rows, :].double()  # (..., q, Z)
    noise = vdevice.randn((num_samples, *query_mean.shape), generator=generator, dtype=torch.float64, device=mean.device)
    z = (query_mean + torch.exp(query_log_std) * noise).movedim(0, -2)  # (..., q, S, Z)
    z = z.reshape(*query_mean.shape[:-2], len(rows) * num_samples, query_mean.shape[-1])  # (..., q·S, Z)
    repeated_mean = query_mean.repeat_interleave(num_samples, dim=-2)  # (..., q·S, Z), row r -> point r // S
    repeated_log_std = query_log_std.repeat_interleave(num_samples, dim=-2)
    log_conditional = gaussian_log_density(z, repeated_mean, repeated_log_std)
    log_marginal = full_aggregate_log_density(z, mean, log_std, component_chunk=component_chunk)
    log_prior = standard_normal_log_density(z)
    rate = gaussian_kl_to_standard_normal(query_mean, query_log_std).mean(dim=-1)
    return _decomposition(
        log_conditional, log_marginal, log_prior, rate, num_data=num_points, estimator="full", batch_size=None
    )


@torch.no_grad()
def encode_dataset(model, images: torch.Tensor, *, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs for a whole data set, in eval mode without gradients.

    images `(N, *data_shape)` -> mean, log_std `(N, Z)` each for a single model, `(M, N, Z)` for an
    ensemble (the data batch dimension is the one before Z).
    """
    check_int("batch_size", batch_size, minimum=1)
    means, log_stds = [], []
    device = vdevice.of(model)
    with _evaluation_mode(model):
        for chunk in torch.split(images, batch_size):
            mean, log_std = model.encode(vdevice.to_device(chunk, device))
            means.append(mean)
            log_stds.append(log_std)
    return torch.cat(means, dim=-2), torch.cat(log_stds, dim=-2)


def mutual_information(
    model,
    images: torch.Tensor,
    *,
    estimator: str = "minibatch",
    batch_size: int = DEFAULT_MI_BATCH_SIZE,
    num_samples: int = 1,
    max_queries: int | None = None,
    generator: torch.Generator | None = None,
    encode_batch_size: int = 1000,
) -> RateDecomposition:
    """The rate split of paper C, Eq. (5), for `model` on the data set `images` (its q(x)).

    estimator "minibatch" (Esmaeili et al. 2019, batches of `batch_size`; paper C's Fig. 8) or
    "full" (all N components; `num_samples`, `max_queries`). See the pure functions
    `rate_decomposition_minibatch` / `rate_decomposition_full` for the details.
    """
    if estimator not in RATE_DECOMPOSITION_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {RATE_DECOMPOSITION_ESTIMATORS}")
    mean, log_std = encode_dataset(model, images, batch_size=encode_batch_size)
    if estimator == "minibatch":
        return rate_decomposition_minibatch(mean, log_std, batch_size=batch_size, generator=generator)
    return rate_decomposition_full(
        mean, log_std, num_samples=num_samples, max_queries=max_queries, generator=generator
    )
