"""Observation models p(x|z) for image VAEs: the decoder outputs parameters, a likelihood scores x.

Every likelihood is built for one data shape `(C, H, W)` and has the same small interface:
- `param_shape`: the shape of the decoder output per data point;
- `log_prob(x, params)`: log p(x|z) in nats, summed over all data dimensions. x is
  `(..., *data_shape)`, params `(..., *param_shape)`; leading dimensions broadcast (so several
  latent samples or ensemble members score one batch of x without copying it). Returns `(...)`;
- `mean(params)` and `sample(params, generator)`: data-space tensors `(..., *data_shape)`.

Data conventions (docs/architecture.md): binary data in {0, 1}; 8-bit data as k/255.
Nothing in this file is paper-specific except where a docstring cites the paper whose
convention it follows.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from . import device as vdevice

Shape = tuple[int, ...]


class Likelihood:
    """Base class: subclasses set `name`, `param_shape` and implement the three methods."""

    name = "likelihood"

    def __init__(self, data_shape: Sequence[int]):
        self.data_shape: Shape = tuple(int(size) for size in data_shape)
        if not self.data_shape or min(self.data_shape) <= 0:
            raise ValueError(f"data_shape must be positive sizes such as (1, 28, 28), got {data_shape!r}")
        self.num_dims = math.prod(self.data_shape)

    @property
    def param_shape(self) -> Shape:
        return self.data_shape

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        """Constructor arguments, saved next to the weights so `make_likelihood` can rebuild it."""
        return {"name": self.name, "data_shape": list(self.data_shape)}

    def _sum_over_data(self, values: torch.Tensor) -> torch.Tensor:
        """Sum the trailing data dimensions: `(..., *data_shape)` -> `(...)`."""
        return values.sum(dim=tuple(range(-len(self.data_shape), 0)))

    def _check_params(self, params: torch.Tensor) -> None:
        trailing = tuple(params.shape[params.dim() - len(self.param_shape):])
        if trailing != self.param_shape:
            raise ValueError(
                f"{type(self).__name__} expects decoder outputs ending in {self.param_shape}, "
                f"got shape {tuple(params.shape)}; check the decoder's output size"
            )

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if key != "name")
        return f"{type(self).__name__}({arguments})"


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels; the decoder outputs logits `(..., *data_shape)`.

    log p(x|z) = sum_d [x_d log sigmoid(l_d) + (1 - x_d) log sigmoid(-l_d)] = -BCE(logits, x),
    computed from logits for stability. There is no Gaussian constant here (pythae #123).
    Paper C applies it to [0, 1]-valued colour data as well (its footnote 1); there it is a
    cross-entropy rather than a normalized density.
    """

    name = "bernoulli"

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        self._check_params(params)
        x, params = torch.broadcast_tensors(x, params)
        return -self._sum_over_data(F.binary_cross_entropy_with_logits(params, x, reduction="none"))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        probabilities = torch.sigmoid(params)
        # u < p with u drawn by the (CPU) generator and copied: bit-identical to torch.bernoulli on
        # the CPU (which compares the same uniforms), and the same draws on every device.
        uniform = vdevice.rand(probabilities.shape, generator=generator, dtype=probabilities.dtype,
                               device=probabilities.device)
        return (uniform < probabilities).to(probabilities.dtype)


class FixedVarianceGaussian(Likelihood):
    """Gaussian pixels with a learned mean and a fixed standard deviation `sigma`.

    log p(x|z) = sum_d [-(x_d - mu_d)^2 / (2 sigma^2) - log sigma - log(2 pi)/2], including the
    constant, so values are comparable across sigma (paper A's Fashion-MNIST model; its sigma is
    not stated, so it is a parameter here). The decoder outputs the mean `(..., *data_shape)`.
    """

    name = "fixed_variance_gaussian"

    def __init__(self, data_shape: Sequence[int], sigma: float = 0.1):
        super().__init__(data_shape)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        self.sigma = float(sigma)

    def config(self) -> dict:
        return {**super().config(), "sigma": self.sigma}

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        self._check_params(params)
        squared_error = (x - params) ** 2
        per_dim = -squared_error / (2 * self.sigma**2) - math.log(self.sigma) - 0.5 * math.log(2 * math.pi)
        return self._sum_over_data(per_dim)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = vdevice.randn(params.shape, generator=generator, dtype=params.dtype, device=params.device)
        return params + self.sigma * noise


class DiscretizedLogistic(Likelihood):
    """Discretized logistic per pixel, in the convention of paper B's official code.

    The decoder outputs `(..., 2, *data_shape)`: channel 0 the location mu, channel 1 the log
    scale (clamped below at -7 as in `batch_logistic_logp`). Data are k/255, k = 0..255.
    Bin of pixel value x: [x, x + 1/255) — *not* centred like PixelCNN++'s x ± 1/510 — so
        P(x) = sigmoid((x - mu + 1/255) / s) - sigmoid((x - mu) / s),
    with open edge bins: the lowest value (x < 0.001) takes all mass below its upper edge,
    sigmoid((x - mu + 1/255)/s), and the highest value (x > 0.999) all mass above its lower edge,
    1 - sigmoid((x - mu)/s). The 256 bins therefore sum to exactly one. Paper B's code adds 1e-7
    inside the log; we compute the bin mass in log space instead (no floor needed, see
    `_log_logistic_bin_mass`).

    `channel_coefficients=True` (colour data only) is paper B's CIFAR `x_dis='Logistic'`
    (`discretized_logistic`, 9 output channels): the decoder outputs `(..., 3, 3, H, W)` =
    [locations | log scales | linear coefficients] and the colour channels are autoregressive
    within a pixel, mu_G + l_0 x_R and mu_B + l_1 x_R + l_2 x_G (PixelCNN++ Eq. 3 without its
    tanh, as in paper B's code), on the same [x, x + 1/255) bins.
    """

    name = "discretized_logistic"
    min_log_scale = -7.0  # paper B code: log-scale clamped at -7
    bin_width = 1.0 / 255.0

    def __init__(self, data_shape: Sequence[int], channel_coefficients: bool = False):
        super().__init__(data_shape)
        if channel_coefficients and (len(self.data_shape) != 3 or self.data_shape[0] != 3):
            raise ValueError(
                f"channel_coefficients=True needs colour images (3, H, W), got data_shape {self.data_shape}; "
                f"use channel_coefficients=False for other data"
            )
        self.channel_coefficients = bool(channel_coefficients)

    @property
    def param_shape(self) -> Shape:
        return (3 if self.channel_coefficients else 2, *self.data_shape)

    def config(self) -> dict:
        return {**super().config(), "channel_coefficients": self.channel_coefficients}

    def _location_and_log_scale(
        self, params: torch.Tensor, x: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Locations and clamped log scales `(..., *data_shape)`. With channel coefficients the
        green and blue locations depend on x's red and green values (x `(..., 3, H, W)`); with
        x=None they use the locations' own red and green, i.e. the channel means."""
        self._check_params(params)
        channel_dim = params.dim() - len(self.param_shape)
        if not self.channel_coefficients:
            location, log_scale = params.unbind(dim=channel_dim)
            return location, log_scale.clamp(min=self.min_log_scale)
        location, log_scale, coefficient = params.unbind(dim=channel_dim)  # (..., 3, H, W) each
        return self._conditional_location(location, coefficient, x), log_scale.clamp(min=self.min_log_scale)

    @staticmethod
    def _conditional_location(location: torch.Tensor, coefficient: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        red_mu, green_mu, blue_mu = location.unbind(dim=-3)  # (..., H, W)
        l0, l1, l2 = coefficient.unbind(dim=-3)
        if x is None:  # expectations: E[x_R] = mu_R, E[x_G] = mu_G + l_0 mu_R, ...
            red = red_mu
            green = green_mu + l0 * red
        else:
            red, green = x[..., 0, :, :], x[..., 1, :, :]
        green_location = green_mu + l0 * red
        blue_location = blue_mu + l1 * red + l2 * green
        return torch.stack((red_mu.expand_as(green_location), green_location, blue_location), dim=-3)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        location, log_scale = self._location_and_log_scale(params, x)
        log_mass = _log_logistic_bin_mass(
            lower_edge=x - location,  # bin [x, x + 1/255), relative to the location
            bin_width=self.bin_width,
            log_scale=log_scale,
            is_lowest=x < 0.001,
            is_highest=x > 0.999,
        )
        return self._sum_over_data(log_mass)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The logistic mean (its location; conditioned on the previous channels' means when
        channels are autoregressive), clipped to [0, 1]."""
        location, _ = self._location_and_log_scale(params)
        return location.clamp(0.0, 1.0)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample a continuous logistic and map it to the bin [k/255, (k+1)/255) holding it.

        With channel coefficients, red is sampled first and green and blue condition on the
        *discretized* earlier channels, as the likelihood does (paper B's sampler uses the
        continuous values instead).
        """
        self._check_params(params)
        channel_dim = params.dim() - len(self.param_shape)
        log_scale = params.select(channel_dim, 1).clamp(min=self.min_log_scale)
        uniform = vdevice.rand(log_scale.shape, generator=generator, dtype=log_scale.dtype, device=log_scale.device)
        uniform = uniform.clamp(1e-6, 1 - 1e-6)
        offset = torch.exp(log_scale) * (torch.log(uniform) - torch.log1p(-uniform))  # logistic noise
        if not self.channel_coefficients:
            location = params.select(channel_dim, 0)
            return torch.floor((location + offset) * 255.0).clamp(0, 255) / 255.0
        location, coefficient = params.select(channel_dim, 0), params.select(channel_dim, 2)
        values = torch.zeros_like(location)  # (..., 3, H, W), filled channel by channel
        for channel in range(3):
            conditional = self._conditional_location(location, coefficient, values)[..., channel, :, :]
            continuous = conditional + offset[..., channel, :, :]
            values[..., channel, :, :] = torch.floor(continuous * 255.0).clamp(0, 255) / 255.0
        return values


def _log_logistic_bin_mass(
    lower_edge: torch.Tensor,
    bin_width: float,
    log_scale: torch.Tensor,
    is_lowest: torch.Tensor,
    is_highest: torch.Tensor,
) -> torch.Tensor:
    """log P(lower <= v < lower + width) for v ~ Logistic(0, s), with open edge bins. Elementwise.

    `lower_edge` is the bin's lower edge minus the logistic location (data units), `log_scale` is
    log s (already clamped). Interior bins use the exact identity
        sigmoid(u) - sigmoid(l) = sigmoid(u) * sigmoid(-l) * (1 - exp(-(u - l))),
    with l = lower/s, u = l + width/s, so the log mass is
        logsigmoid(u) + logsigmoid(-l) + log(1 - exp(-width/s)):
    no difference of nearly equal numbers in either tail, and the last term is computed from
    width/s directly (not from u - l). This replaces PixelCNN++'s `log_pdf_mid - log(127.5)`
    fallback and paper B's `+ 1e-7` floor: the value is accurate wherever it is representable.
    The lowest bin takes all mass below its upper edge, log sigmoid(u); the highest all mass above
    its lower edge, log sigmoid(-l). Every branch is finite, so `torch.where` passes finite
    gradients.
    """
    inverse_scale = torch.exp(-log_scale)
    standardized_lower = lower_edge * inverse_scale
    standardized_width = bin_width * inverse_scale  # (u - l) > 0
    standardized_upper = standardized_lower + standardized_width
    log_cdf_upper = F.logsigmoid(standardized_upper)
    log_survival_lower = F.logsigmoid(-standardized_lower)
    # log(1 - exp(-w)): log(-expm1(-w)) is exact for w >= 1e-4; below that use log w - w/2
    # (error < w^2/24), which stays finite when w underflows for a huge scale.
    log_width = math.log(bin_width) - log_scale
    log_one_minus_exp = torch.where(
        standardized_width < 1e-4,
        log_width - 0.5 * standardized_width,
        torch.log(-torch.expm1(-standardized_width.clamp(min=1e-4))),
    )
    log_interior = log_cdf_upper + log_survival_lower + log_one_minus_exp
    return torch.where(is_lowest, log_cdf_upper, torch.where(is_highest, log_survival_lower, log_interior))


class DiscretizedMixtureOfLogistics(Likelihood):
    """Discretized mixture of logistics (Salimans et al. 2017, PixelCNN++, Sec. 2.1-2.2).

    Data are k/255 in [0, 1] and all locations and scales are in these units. Each 8-bit value
    owns the centred bin [x - 1/510, x + 1/510] (PixelCNN++'s +-1/255 on its [-1, 1] scale); the
    edge bins are open (x = 0 takes all mass below 1/510, x = 1 all mass above 1 - 1/510), so the
    256 bins of a channel sum to exactly one. Log scales are clamped below at -7 (PixelCNN++ and
    paper B's code).

    Decoder output per pixel, channels first, in PixelCNN++'s order (n = n_components):
    - C = 1: `(3n, H, W)` = [n mixture logits | n means | n log scales];
    - C = 3: `(10n, H, W)` = [n mixture logits | then for colour channel c = 0, 1, 2 a block of
      3n: n means, n log scales, n coefficients]. The coefficients pass through tanh and make the
      colour channels autoregressive within a pixel (PixelCNN++ Eq. 3):
      mean_G = mu_G + a * x_R, mean_B = mu_B + b * x_R + c * x_G, with (a, b, c) the coefficient
      slots of channels (R, G, B) = (0, 1, 2).
    `channel_mixture` selects how components are shared across the colour channels:
    - "joint" (default, PixelCNN++): one component per pixel,
      p(x) = sum_k pi_k prod_c P_k(x_c | x_<c);
    - "per_channel" (paper B's `discretized_mix_logistic_uniform`): every channel is its own
      mixture with the pixel's weights, p(x) = prod_c sum_k pi_k P_k(x_c | x_<c).
    Both are normalized distributions over the 256^C colours; for C = 1 they coincide.
    `uniform_weight` alpha mixes in a uniform distribution as a floor, as paper B's code does
    with alpha = 1e-4: (1 - alpha) p(x) + alpha / 256^C per pixel ("joint") or
    (1 - alpha) p(x_c | x_<c) + alpha / 256 per channel ("per_channel"). Default 0 (PixelCNN++).
    """

    name = "discretized_mixture_of_logistics"
    min_log_scale = -7.0  # PixelCNN++ and paper B: log scales clamped at -7
    bin_half_width = 0.5 / 255.0  # centred bins: x +- 1/510 on the [0, 1] scale
    channel_mixtures = ("joint", "per_channel")

    def __init__(
        self,
        data_shape: Sequence[int],
        n_components: int = 10,
        uniform_weight: float = 0.0,
        channel_mixture: str = "joint",
    ):
        super().__init__(data_shape)
        if len(self.data_shape) != 3 or self.data_shape[0] not in (1, 3):
            raise ValueError(
                f"DiscretizedMixtureOfLogistics needs images (C, H, W) with C = 1 or 3, got data_shape "
                f"{self.data_shape}; flatten nothing, pass e.g. (1, 28, 28) or (3, 32, 32)"
            )
        if not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {n_components!r}")
        if not 0.0 <= uniform_weight < 1.0:
            raise ValueError(f"uniform_weight must be in [0, 1), got {uniform_weight!r} (paper B uses 1e-4)")
        if channel_mixture not in self.channel_mixtures:
            raise ValueError(f"channel_mixture must be one of {self.channel_mixtures}, got {channel_mixture!r}")
        self.n_components = n_components
        self.uniform_weight = float(uniform_weight)
        self.channel_mixture = channel_mixture
        self.num_channels = self.data_shape[0]
        # parameters per colour channel and component: mean, log scale (+ coefficient for colour)
        self.params_per_channel = 2 if self.num_channels == 1 else 3

    @property
    def param_shape(self) -> Shape:
        channels, height, width = self.data_shape
        return (self.n_components * (1 + channels * self.params_per_channel), height, width)

    def config(self) -> dict:
        return {
            **super().config(),
            "n_components": self.n_components,
            "uniform_weight": self.uniform_weight,
            "channel_mixture": self.channel_mixture,
        }

    def _unpack(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Split `(..., P, H, W)` into log weights `(..., n, H, W)`, means and log scales
        `(..., C, n, H, W)` and tanh coefficients `(..., 3, n, H, W)` (None for C = 1)."""
        self._check_params(params)
        n = self.n_components
        log_weights = torch.log_softmax(params[..., :n, :, :], dim=-3)  # (..., n, H, W)
        per_channel = params[..., n:, :, :].unflatten(-3, (self.num_channels, self.params_per_channel * n))
        means = per_channel[..., :, :n, :, :]  # (..., C, n, H, W)
        log_scales = per_channel[..., :, n : 2 * n, :, :].clamp(min=self.min_log_scale)  # (..., C, n, H, W)
        coefficients = torch.tanh(per_channel[..., :, 2 * n :, :, :]) if self.num_channels == 3 else None
        return log_weights, means, log_scales, coefficients

    @staticmethod
    def _autoregressive_means(means: torch.Tensor, coefficients: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """Channel means given the previous channels' values (PixelCNN++ Eq. 3).

        means `(..., C, n, H, W)`; x `(..., C, 1, H, W)` (one value per component) or
        `(..., C, n, H, W)` (a value per component, as when sampling). Returns `(..., C, n, H, W)`.
        """
        if coefficients is None:
            return means
        red, green = x[..., 0, :, :, :], x[..., 1, :, :, :]
        mean_green = means[..., 1, :, :, :] + coefficients[..., 0, :, :, :] * red
        mean_blue = means[..., 2, :, :, :] + coefficients[..., 1, :, :, :] * red + coefficients[..., 2, :, :, :] * green
        mean_red = means[..., 0, :, :, :].expand_as(mean_green)
        return torch.stack((mean_red, mean_green, mean_blue), dim=-4)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        log_weights, means, log_scales, coefficients = self._unpack(params)
        x_per_component = x.unsqueeze(-3)  # (..., C, 1, H, W)
        channel_means = self._autoregressive_means(means, coefficients, x_per_component)  # (..., C, n, H, W)
        log_mass = _log_logistic_bin_mass(
            lower_edge=x_per_component - self.bin_half_width - channel_means,
            bin_width=2 * self.bin_half_width,
            log_scale=log_scales,
            is_lowest=x_per_component < self.bin_half_width,
            is_highest=x_per_component > 1.0 - self.bin_half_width,
        )  # (..., C, n, H, W): log P_k(x_c | x_<c)
        alpha = self.uniform_weight
        if self.channel_mixture == "joint":
            log_pixel = torch.logsumexp(log_weights + log_mass.sum(dim=-4), dim=-3)  # (..., H, W)
            if alpha > 0:
                log_floor = log_pixel.new_tensor(math.log(alpha) - self.num_channels * math.log(256.0))
                log_pixel = torch.logaddexp(log_pixel + math.log1p(-alpha), log_floor)
            return log_pixel.sum(dim=(-2, -1))
        log_channel = torch.logsumexp(log_weights.unsqueeze(-4) + log_mass, dim=-3)  # (..., C, H, W)
        if alpha > 0:
            log_floor = log_channel.new_tensor(math.log(alpha / 256.0))
            log_channel = torch.logaddexp(log_channel + math.log1p(-alpha), log_floor)
        return log_channel.sum(dim=(-3, -2, -1))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Mean of the continuous (undiscretized, unclipped) mixture, clipped to [0, 1].

        The logistic mean is its location; the autoregressive means are linear in the previous
        channels, so E[x_c | k] follows by substitution ("joint"), or with the previous
        channels' mixture means ("per_channel", where channels draw components independently).
        The uniform floor moves the mean towards 1/2 by alpha.
        """
        log_weights, means, _, coefficients = self._unpack(params)
        weights = log_weights.exp()  # (..., n, H, W)
        if coefficients is None:
            result = (weights * means[..., 0, :, :, :]).sum(dim=-3).unsqueeze(-3)  # (..., 1, H, W)
        elif self.channel_mixture == "joint":
            red = means[..., 0, :, :, :]  # E[x_R | k], (..., n, H, W)
            a, b, c = coefficients.unbind(dim=-4)  # (..., n, H, W) each
            green = means[..., 1, :, :, :] + a * red
            blue = means[..., 2, :, :, :] + b * red + c * green
            result = torch.stack([(weights * channel).sum(dim=-3) for channel in (red, green, blue)], dim=-3)
        else:
            expected = (weights.unsqueeze(-4) * means).sum(dim=-3)  # (..., C, H, W): E[mu_c]
            a, b, c = (weights.unsqueeze(-4) * coefficients).sum(dim=-3).unbind(dim=-3)  # E[a], E[b], E[c]
            red = expected[..., 0, :, :]
            green = expected[..., 1, :, :] + a * red
            blue = expected[..., 2, :, :] + b * red + c * green
            result = torch.stack((red, green, blue), dim=-3)
        if self.uniform_weight > 0:
            result = (1 - self.uniform_weight) * result + self.uniform_weight * 0.5
        return result.clamp(0.0, 1.0)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact ancestral sample of the discretized model, values k/255.

        Per pixel ("joint") or per channel ("per_channel") a component is drawn by the Gumbel-max
        trick, a logistic value is drawn by inverting its CDF and rounded to the nearest k/255
        (the centred bins, edge bins open); each colour channel then conditions on the previous
        channels' *discretized* values, as the likelihood does. With the uniform floor, a pixel
        (or channel) is replaced by a uniform k/255 with probability alpha.
        """
        log_weights, means, log_scales, coefficients = self._unpack(params)
        channels, n = self.num_channels, self.n_components
        options = dict(dtype=means.dtype, device=means.device)

        def uniform(shape):
            return vdevice.rand(shape, generator=generator, **options).clamp(1e-7, 1 - 1e-7)

        # Gumbel-max choice of a component: one per pixel ("joint") or one per channel and pixel
        mixtures = 1 if self.channel_mixture == "joint" else channels
        gumbel = -torch.log(-torch.log(uniform((*means.shape[:-4], mixtures, *means.shape[-3:]))))
        scores = log_weights.unsqueeze(-4) + gumbel  # (..., 1 or C, n, H, W)
        chosen = F.one_hot(scores.argmax(dim=-3), n).movedim(-1, -3).to(means.dtype)  # (..., 1 or C, n, H, W)
        selected_means = (chosen * means).sum(dim=-3)  # (..., C, H, W)
        selected_scales = (chosen * log_scales).sum(dim=-3).exp()  # (..., C, H, W)
        noise = uniform(selected_means.shape)
        continuous = selected_means + selected_scales * (torch.log(noise) - torch.log1p(-noise))  # before conditioning
        if coefficients is not None:
            # slot a conditions green, slots b and c condition blue: each uses that channel's component
            slot_owner = chosen if mixtures == 1 else chosen[..., [1, 2, 2], :, :, :]
            a, b, c = (slot_owner * coefficients).sum(dim=-3).unbind(dim=-3)  # (..., H, W) each
        if self.uniform_weight > 0:
            floor_shape = (*selected_means.shape[:-3], mixtures, *selected_means.shape[-2:])
            use_floor = (vdevice.rand(floor_shape, generator=generator, **options) < self.uniform_weight).expand_as(noise)
            floor_levels = vdevice.randint(0, 256, noise.shape, generator=generator, device=means.device)
            floor_values = floor_levels.to(means.dtype) / 255.0

        values: list[torch.Tensor] = []  # discretized channels, (..., H, W) each
        for channel in range(channels):
            value = continuous[..., channel, :, :]
            if channel == 1:
                value = value + a * values[0]
            elif channel == 2:
                value = value + b * values[0] + c * values[1]
            value = torch.round(value * 255.0).clamp(0, 255) / 255.0  # nearest k/255: the centred bins
            if self.uniform_weight > 0:
                value = torch.where(use_floor[..., channel, :, :], floor_values[..., channel, :, :], value)
            values.append(value)
        return torch.stack(values, dim=-3)


LIKELIHOODS: dict[str, type[Likelihood]] = {
    Bernoulli.name: Bernoulli,
    FixedVarianceGaussian.name: FixedVarianceGaussian,
    DiscretizedLogistic.name: DiscretizedLogistic,
    DiscretizedMixtureOfLogistics.name: DiscretizedMixtureOfLogistics,
}


def make_likelihood(name: str, data_shape: Sequence[int], **options) -> Likelihood:
    """Build a likelihood from its config name, e.g. make_likelihood('bernoulli', (1, 28, 28))."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](data_shape, **options)
