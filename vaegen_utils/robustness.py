"""Paper A's adversarial robustness: the unsupervised encoder attack, MS-SSIM and the robustness gap G_r.

Attack (paper A App. A, Eq. 10, following Kuzina et al. 2022):

    eps* = argmax_{||eps||_inf <= delta} SKL[q(z | x_r + eps) || q(z | x_r)],
    SKL(q1, q2) = 1/2 KL(q1 || q2) + 1/2 KL(q2 || q1), diagonal Gaussians, summed over latent dims,

by projected gradient ascent from a random start, with restarts (Table 2 for MNIST-type data:
50 reference images, 10 restarts, 50 steps, lr 1.0, delta = 0.1; CIFAR-10: 20, 10, 100, 1.0, 0.05).
Like `AKuzina/defend_vae_mcmc` (`attack/attacker.py`): eps starts at N(0, 0.2^2); each step is an
SGD step on eps (ascent on the SKL) with the gradient clamped elementwise to [-delta, delta]; the
learning rate halves after more than 20 steps without improvement (ReduceLROnPlateau, patience
20, factor 0.5). Written fresh (no attack library handles an encoder objective),
with these differences, all deliberate:
- the symmetric KL really is symmetric: Kuzina's `AttackNVAE.q_kls` adds `q_2.kl(q_2)` (= 0)
  instead of `q_2.kl(q_1)`; `gaussian_skl` here is tested against a hand-computed value;
- after every step eps is projected onto the L_inf ball AND x + eps onto the data range (Kuzina
  clamps the range before the step and the ball after it, so the final iterate can leave [0, 1]
  until the very end);
- the plateau schedule is per (image, restart), not on the batch's summed loss, so an image's
  attack does not depend on which images share its batch;
- each restart keeps its best iterate over the steps (PGD practice; >= the final iterate), and
  `AttackResult` keeps every restart plus the best restart per image.

MS-SSIM at 28/32 pixels. `pytorch_msssim.ms_ssim` (the maintained package, 1.0.0) asserts
min(H, W) > (win_size - 1) * 2^4 for its 5 scales, i.e. images larger than 160 px for the
default 11-px window, and its check ignores the number of scales: at 32 px no window of 3 px or
more passes (test_robustness documents this). Kuzina's code, which paper A very probably used,
calls a copy of jorge-pessoa/pytorch-msssim as `msssim(x, y, window_size=14, normalize='relu')`:
5 scales with the Gaussian window (sigma 1.5) shrunk to the image at coarse scales
(min(14, H, W): at 32 px the windows are 14, 14, 8, 4, 2), ReLU on ssim and cs, and the product
`prod(mcs[:-1]**w[:-1] * ssim[-1]**w[-1])`, which raises the last scale's ssim to 4 w_5 instead of
w_5 (a quirk of that implementation). `ms_ssim` here computes each scale's ssim and cs itself
(`ssim_and_cs`: the same Gaussian window and statistics as pytorch_msssim, checked against its
public `ssim` and `ms_ssim` to 1e-6 where those apply) and offers both combinations:
`combine="kuzina"` (default: the metric behind paper A's G_r numbers) and `combine="standard"`
(Wang et al. 2003, as pytorch_msssim.ms_ssim combines). Verified in the tests against hand
computations (identical images give 1; constant images give the closed form).

Robustness gap (Eq. 5): G_r = E[MS-SSIM(x_r, x_a) - MS-SSIM(x~_r, x~_a)] with x~ the decoder mean
at z ~ q(z|x) (Kuzina: `z_sample = reparametrize(...)`, `x_mu = decoder(z_sample)`), averaged over
the reference images and over the adversarial inputs. Kuzina scores every restart's adversarial
input (the expectation over x_a ~ p(x_a | x_r) in Eq. 5), so `use="all"` is the default; `use="best"`
scores only the strongest restart per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import progress as progress_bars
from . import device as vdevice
from .seeding import derive_seed, make_generator

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
COMBINES = ("kuzina", "standard")


# --------------------------------------------------------------------------------------------
# Divergences
# --------------------------------------------------------------------------------------------


def gaussian_kl(mean1: torch.Tensor, log_std1: torch.Tensor, mean2: torch.Tensor, log_std2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, s1^2) || N(mean2, s2^2)) for diagonal Gaussians, summed over the last dim.

    = sum_d [log s2 - log s1 + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2].
    """
    variance_ratio = torch.exp(2.0 * (log_std1 - log_std2))
    scaled_gap = (mean1 - mean2).pow(2) * torch.exp(-2.0 * log_std2)
    return (log_std2 - log_std1 + 0.5 * (variance_ratio + scaled_gap) - 0.5).sum(dim=-1)


def gaussian_skl(mean1: torch.Tensor, log_std1: torch.Tensor, mean2: torch.Tensor, log_std2: torch.Tensor) -> torch.Tensor:
    """Symmetric KL 1/2 KL(q1 || q2) + 1/2 KL(q2 || q1), summed over the last dim (Kuzina's `gaus_skl`)."""
    return 0.5 * gaussian_kl(mean1, log_std1, mean2, log_std2) + 0.5 * gaussian_kl(mean2, log_std2, mean1, log_std1)


# --------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------


@dataclass
class AttackResult:
    """Outcome of `encoder_attack` for n reference images and R restarts.

    x_reference            (n, *data_shape) the attacked images.
    x_adversarial          (n, *data_shape) the best restart's adversarial input per image.
    epsilon                (n, *data_shape) = x_adversarial - x_reference.
    objective              (n,) SKL of the best restart (the attack's value).
    restart_adversarial    (n, R, *data_shape) every restart's adversarial input (its best iterate).
    restart_objective      (n, R) SKL of each restart's best iterate.
    initial_objective      (n, R) SKL at each restart's random start (after projection).
    best_restart           (n,) index of the best restart per image.
    trace                  (steps + 1, n, R) SKL of the current iterate after every step (row 0:
                           the start); max_abs_epsilon (steps + 1,) the largest |eps| then.
    settings               the attack's parameters.
    """

    x_reference: torch.Tensor
    x_adversarial: torch.Tensor
    epsilon: torch.Tensor
    objective: torch.Tensor
    restart_adversarial: torch.Tensor
    restart_objective: torch.Tensor
    initial_objective: torch.Tensor
    best_restart: torch.Tensor
    trace: torch.Tensor
    max_abs_epsilon: torch.Tensor
    settings: dict = field(default_factory=dict)


def _encode(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, log_std = model.encode(x)
    return mean, log_std


def encoder_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    radius: float = 0.1,
    steps: int = 50,
    restarts: int = 10,
    learning_rate: float = 1.0,
    seed: int = 0,
    init_std: float = 0.2,
    data_range: tuple[float, float] = (0.0, 1.0),
    gradient_clip: float | None = None,
    plateau_patience: int | None = 20,
    plateau_factor: float = 0.5,
    callback: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool | None = None,
) -> AttackResult:
    """Kuzina et al.'s unsupervised encoder attack (see the module docstring) on every image of x.

    x: (n, *data_shape) reference images in data_range. All n x restarts attacks run as one batch.
    gradient_clip: elementwise clamp of the gradient before the step (default: radius, as Kuzina).
    callback(step, x_adv, epsilon, objective) is called after the random start (step 0) and after
    every step with (n, R, ...) tensors (for tests and plots). Deterministic for a given seed. The
    model is put in eval mode during the attack and restored afterwards; its parameters get no
    gradients. progress: a bar over the steps (`vaegen_utils.progress`; None = the default rule).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of reference images (n, *data_shape), got {getattr(x, 'shape', type(x))}")
    for name, value in (("steps", steps), ("restarts", restarts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be a non-negative int (restarts >= 1), got {value!r}")
    if not radius > 0 or not learning_rate > 0 or init_std < 0:
        raise ValueError(f"radius and learning_rate must be > 0 and init_std >= 0, got {radius}, {learning_rate}, {init_std}")
    low, high = (float(v) for v in data_range)
    device = vdevice.of(model)
    x = vdevice.to_device(x.detach().to(torch.float32), device)
    smallest, largest = vdevice.to_host(torch.stack([x.min(), x.max()])).tolist()  # one host read, before the attack
    if smallest < low or largest > high:
        raise ValueError(f"reference images must lie in data_range {data_range}, got [{smallest}, {largest}]")
    clip = radius if gradient_clip is None else float(gradient_clip)
    n, shape = x.shape[0], tuple(x.shape[1:])
    rows = n * restarts
    x_rows = x.unsqueeze(1).expand(n, restarts, *shape).reshape(rows, *shape)  # (nR, ...), restart-major per image
    view = (rows,) + (1,) * len(shape)

    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        with torch.no_grad():
            ref_mean, ref_log_std = _encode(model, x)
            ref_mean = ref_mean.repeat_interleave(restarts, dim=0)
            ref_log_std = ref_log_std.repeat_interleave(restarts, dim=0)

        def objective_of(eps: torch.Tensor) -> torch.Tensor:
            mean, log_std = _encode(model, x_rows + eps)
            return gaussian_skl(mean, log_std, ref_mean, ref_log_std)  # (nR,)

        def project(eps: torch.Tensor) -> torch.Tensor:
            eps = eps.clamp(-radius, radius)
            return (x_rows + eps).clamp(low, high) - x_rows

        generator = make_generator(derive_seed(seed, "encoder-attack-start"))
        # The start is drawn by the CPU generator and copied: the same attack on every device.
        eps = project(vdevice.randn((rows, *shape), generator=generator, device=device) * init_std)
        with torch.no_grad():
            current = objective_of(eps)
        best_value, best_eps = current.clone(), eps.clone()
        initial = current.clone()
        trace = [current.clone()]
        max_abs = [eps.abs().max()]  # kept on the device: no host sync per step
        rates = torch.full((rows,), float(learning_rate), device=device)
        plateau_best = current.clone()
        bad_steps = torch.zeros(rows, dtype=torch.long, device=device)
        if callback is not None:
            callback(0, (x_rows + eps).view(n, restarts, *shape), eps.view(n, restarts, *shape), current.view(n, restarts))
        for step in progress_bars.bar(
            range(1, steps + 1), desc=f"encoder attack ({n} images x {restarts} restarts)", unit="step", progress=progress
        ):
            eps_var = eps.clone().requires_grad_(True)
            value = objective_of(eps_var)
            gradient = None
            if value.requires_grad:  # an encoder that ignores its input gives no graph (gradient 0)
                (gradient,) = torch.autograd.grad(value.sum(), eps_var, allow_unused=True)
            if gradient is None:
                gradient = torch.zeros_like(eps)
            gradient = gradient.clamp(-clip, clip)
            eps = project(eps + rates.view(view) * gradient)
            with torch.no_grad():
                current = objective_of(eps)
            improved = current > best_value
            best_value = torch.where(improved, current, best_value)
            best_eps = torch.where(improved.view(view), eps, best_eps)
            if plateau_patience is not None:  # ReduceLROnPlateau(mode="max", threshold=1e-4 rel) per row
                better = current > plateau_best + 1e-4 * plateau_best.abs()
                plateau_best = torch.where(better, current, plateau_best)
                bad_steps = torch.where(better, torch.zeros_like(bad_steps), bad_steps + 1)
                reduce = bad_steps > plateau_patience
                rates = torch.where(reduce, rates * plateau_factor, rates)
                bad_steps = torch.where(reduce, torch.zeros_like(bad_steps), bad_steps)
            trace.append(current.clone())
            max_abs.append(eps.abs().max())
            if callback is not None:
                callback(step, (x_rows + eps).view(n, restarts, *shape), eps.view(n, restarts, *shape), current.view(n, restarts))
    finally:
        for parameter, flag in zip(model.parameters(), requires):
            parameter.requires_grad_(flag)
        model.train(was_training)

    restart_objective = best_value.view(n, restarts)
    restart_eps = best_eps.view(n, restarts, *shape)
    best_restart = restart_objective.argmax(dim=1)
    chosen = restart_eps[torch.arange(n, device=device), best_restart]
    return AttackResult(
        x_reference=x,
        x_adversarial=x + chosen,
        epsilon=chosen,
        objective=restart_objective.max(dim=1).values,
        restart_adversarial=x.unsqueeze(1) + restart_eps,
        restart_objective=restart_objective,
        initial_objective=initial.view(n, restarts),
        best_restart=best_restart,
        trace=torch.stack(trace).view(steps + 1, n, restarts),
        max_abs_epsilon=torch.stack(max_abs),
        settings={
            "radius": float(radius),
            "steps": steps,
            "restarts": restarts,
            "learning_rate": float(learning_rate),
            "seed": seed,
            "init_std": float(init_std),
            "data_range": [low, high],
            "gradient_clip": clip,
            "plateau_patience": plateau_patience,
            "plateau_factor": float(plateau_factor),
            "objective": "SKL = 0.5 KL(q(z|x+eps)||q(z|x)) + 0.5 KL(q(z|x)||q(z|x+eps)), summed over z",
        },
    )


def reference_images(images: torch.Tensor, labels: torch.Tensor | None, n: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of n reference test images, stratified by label when labels are given (Kuzina:
    `train_test_split(..., stratify=y, test_size=N_ref)` on the first test batch)."""
    generator = make_generator(derive_seed(seed, "attack-references"))
    total = images.shape[0]
    if n > total:
        raise ValueError(f"asked for {n} reference images but only {total} are given")
    if labels is None:
        return torch.randperm(total, generator=generator)[:n].sort().values
    classes = labels.unique()
    per_class = [(labels == c).nonzero().flatten() for c in classes]
    permuted = [members[torch.randperm(len(members), generator=generator)] for members in per_class]
    chosen, position = [], 0
    while len(chosen) < n:  # round robin over classes: as balanced as n allows
        for members in permuted:
            if position < len(members) and len(chosen) < n:
                chosen.append(int(members[position]))
        position += 1
    return torch.tensor(sorted(chosen))


# --------------------------------------------------------------------------------------------
# MS-SSIM
# --------------------------------------------------------------------------------------------


def ssim_and_cs(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    window_size: int = 14,
    window_sigma: float = 1.5,
    data_range: float = 1.0,
    k: tuple[float, float] = (0.01, 0.03),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-scale SSIM and contrast-structure term per image (N,), averaged over channels.

    Wang et al. 2004 (Eqs. 13-15; Wang et al. 2003 for the cs term of MS-SSIM), with the local
    statistics taken under a Gaussian window of min(window_size, H, W) taps (shrunk to the image, as
    in the jorge-pessoa implementation Kuzina's code uses), filtered separably with 'valid' borders:
    rows first, then columns, the order pytorch_msssim uses, so this matches its public `ssim` to
    float rounding (tests/test_robustness.py checks 1e-6). C1 = (k1 L)^2, C2 = (k2 L)^2, L = data_range.
    """
    _check_pair(a, b)
    size = min(int(window_size), a.shape[-2], a.shape[-1])
    a, b = a.float(), b.float()
    window = gaussian_window(size, window_sigma).to(a.device)

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return _separable_filter(x, window)

    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a.pow(2)
    var_b = local_mean(b * b) - mu_b.pow(2)
    covariance = local_mean(a * b) - mu_a * mu_b
    cs_map = (2 * covariance + c2) / (var_a + var_b + c2)
    ssim_map = (2 * mu_a * mu_b + c1) / (mu_a.pow(2) + mu_b.pow(2) + c1) * cs_map
    ssim_per_channel = ssim_map.flatten(2).mean(-1)  # (N, C)
    cs_per_channel = cs_map.flatten(2).mean(-1)
    return ssim_per_channel.mean(dim=1), cs_per_channel.mean(dim=1)


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """A normalized 1-d Gaussian of `size` taps centred on tap size // 2 (so even sizes lean left,
    as in pytorch_msssim and the jorge-pessoa code)."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def _separable_filter(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Filter (N, C, H, W) with window (k,) along H, then along W, per channel, no padding."""
    channels, size = x.shape[1], window.numel()
    window = window.to(device=x.device, dtype=x.dtype)
    x = F.conv2d(x, window.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    return F.conv2d(x, window.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)


def ms_ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 14,
    window_sigma: float = 1.5,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    combine: str = "kuzina",
) -> torch.Tensor:
    """Multi-scale SSIM per image pair (N,) for (N, C, H, W) images in [0, data_range].

    Scale j (j = 0..L-1, L = len(weights)) works on 2^j x average-pooled images with the window
    shrunk to the image; ssim and cs are ReLU'd. combine="standard": prod_{j<L-1} cs_j^w_j *
    ssim_{L-1}^w_{L-1}; combine="kuzina" (default): prod_{j<L-1} (cs_j^w_j * ssim_{L-1}^w_{L-1}),
    the jorge-pessoa/Kuzina product behind paper A's numbers (module docstring). Needs images of
    at least 2^(L-1) pixels per side (16 for 5 scales).
    """
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    _check_pair(a, b)
    levels = len(weights)
    if min(a.shape[-2:]) < 2 ** (levels - 1):
        raise ValueError(f"{levels}-scale MS-SSIM needs images of at least {2 ** (levels - 1)} px per side, got {tuple(a.shape[-2:])}")
    w = torch.tensor(list(weights), dtype=torch.float32, device=a.device)
    a, b = a.float(), b.float()
    cs_values, ssim_last = [], None
    for level in range(levels):
        ssim, cs = ssim_and_cs(a, b, window_size=window_size, window_sigma=window_sigma, data_range=data_range)
        cs_values.append(torch.relu(cs))
        ssim_last = torch.relu(ssim)
        if level < levels - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    cs_stack = torch.stack(cs_values[:-1])  # (L-1, N)
    contrast = torch.prod(cs_stack ** w[:-1].view(-1, 1), dim=0)
    last = ssim_last ** w[-1]
    if combine == "standard":
        return contrast * last
    return contrast * last ** (levels - 1)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dim() != 4:
        raise ValueError(
            f"MS-SSIM needs two image batches of the same shape (N, C, H, W), got "
            f"{tuple(getattr(a, 'shape', ()))} and {tuple(getattr(b, 'shape', ()))}"
        )


# --------------------------------------------------------------------------------------------
# Robustness gap
# --------------------------------------------------------------------------------------------


@dataclass
class RobustnessGap:
    """G_r (`gap`, a float) and its parts per scored pair.

    input_ms_ssim, reconstruction_ms_ssim, per_pair: (n, R') with R' = restarts (use="all") or 1
    (use="best"); per_pair = input - reconstruction; gap = per_pair.mean().
    """

    gap: float
    input_ms_ssim: torch.Tensor
    reconstruction_ms_ssim: torch.Tensor
    per_pair: torch.Tensor
    settings: dict = field(default_factory=dict)

    @property
    def mean_input_ms_ssim(self) -> float:
        return float(self.input_ms_ssim.mean())

    @property
    def mean_reconstruction_ms_ssim(self) -> float:
        return float(self.reconstruction_ms_ssim.mean())


@torch.no_grad()
def reconstruct_mean(model, x: torch.Tensor, *, latent: str = "sample", generator: torch.Generator | None = None) -> torch.Tensor:
    """Decoder mean x~ = E[p(x|z)] at z ~ q(z|x) (latent="sample") or z = the encoder mean ("mean")."""
    mean, log_std = model.encode(x)
    if latent == "sample":
        z = mean + torch.exp(log_std) * vdevice.randn(mean.shape, generator=generator, device=mean.device)
    elif latent == "mean":
        z = mean
    else:
        raise ValueError(f"latent must be 'sample' or 'mean', got {latent!r}")
    return model.likelihood.mean(model.decode(z)).reshape(x.shape)


@torch.no_grad()
def robustness_gap(
    model,
    x_reference: torch.Tensor,
    attack_result: AttackResult,
    *,
    use: str = "all",
    latent: str = "sample",
    seed: int = 0,
    combine: str = "kuzina",
    window_size: int = 14,
) -> RobustnessGap:
    """Paper A's G_r = mean[MS-SSIM(x_r, x_a) - MS-SSIM(x~_r, x~_a)] on decoder means (Eq. 5).

    use="all" scores every restart's adversarial input (Kuzina's evaluation, the expectation over
    x_a ~ p(x_a|x_r)); use="best" only the strongest restart per image. latent="sample" decodes a
    z ~ q(z|x) per input (Kuzina), "mean" the encoder mean. Smaller G_r = more robust.
    """
    if use not in ("all", "best"):
        raise ValueError(f"use must be 'all' or 'best', got {use!r}")
    x_reference = vdevice.to_device(x_reference.to(torch.float32), attack_result.x_reference.device)
    if x_reference.shape != attack_result.x_reference.shape or bool(
        vdevice.to_host((x_reference != attack_result.x_reference).any())
    ):
        raise ValueError("x_reference is not the image batch this attack_result attacked")
    n = x_reference.shape[0]
    shape = tuple(x_reference.shape[1:])
    adversarial = attack_result.restart_adversarial if use == "all" else attack_result.x_adversarial.unsqueeze(1)
    per_image = adversarial.shape[1]
    was_training = model.training
    model.eval()
    try:
        generator = make_generator(derive_seed(seed, "robustness-gap-reconstructions"))
        recon_reference = reconstruct_mean(model, x_reference, latent=latent, generator=generator)  # (n, ...)
        flat_adv = adversarial.reshape(n * per_image, *shape)
        recon_adv = reconstruct_mean(model, flat_adv, latent=latent, generator=generator)
    finally:
        model.train(was_training)
    repeated_ref = x_reference.repeat_interleave(per_image, dim=0)
    repeated_rec = recon_reference.repeat_interleave(per_image, dim=0)
    options = dict(combine=combine, window_size=window_size)
    inputs = ms_ssim(repeated_ref, flat_adv, **options).view(n, per_image)
    recons = ms_ssim(repeated_rec, recon_adv, **options).view(n, per_image)
    per_pair = inputs - recons
    return RobustnessGap(
        gap=vdevice.host_float(per_pair.mean()),
        input_ms_ssim=inputs,
        reconstruction_ms_ssim=recons,
        per_pair=per_pair,
        settings={"use": use, "latent": latent, "seed": seed, "combine": combine, "window_size": window_size},
    )
