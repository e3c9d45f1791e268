"""Likelihoods against analytic truth: normalization over the 256 bins, reference formulas,
torch's own densities, sampling, shapes and errors. Fixed seeds; about 10 s on 2 busy cores."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vaegen_utils.likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    DiscretizedLogistic,
    DiscretizedMixtureOfLogistics,
    FixedVarianceGaussian,
    make_likelihood,
)

ALL_VALUES = torch.arange(256, dtype=torch.float64) / 255.0  # every 8-bit value k/255


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_eight_bit(values: torch.Tensor) -> bool:
    scaled = values * 255.0
    return bool(((scaled - scaled.round()).abs() < 1e-4).all() and values.min() >= 0 and values.max() <= 1)


# --- discretized logistic (paper B convention) -------------------------------------------------


@pytest.mark.parametrize("location", [-3.0, 0.0, 0.5, 1.0, 4.0, 37 / 255])
@pytest.mark.parametrize("log_scale", [-12.0, -7.0, -4.0, 0.0, 2.0, 40.0])
def test_discretized_logistic_sums_to_one(location, log_scale):
    likelihood = DiscretizedLogistic((1, 1, 1))
    x = ALL_VALUES.view(256, 1, 1, 1)
    params = torch.tensor([location, log_scale], dtype=torch.float64).view(1, 2, 1, 1, 1)
    log_probs = likelihood.log_prob(x, params)  # (256,)
    assert torch.isfinite(log_probs).all()
    # float64: the bins telescope exactly, so only rounding remains
    assert torch.logsumexp(log_probs, 0).item() == pytest.approx(0.0, abs=1e-12)
    log_probs32 = likelihood.log_prob(x.float(), params.float())
    assert torch.logsumexp(log_probs32, 0).item() == pytest.approx(0.0, abs=1e-5)


def logistic_bin_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """sigmoid(upper) - sigmoid(lower), written as sigmoid(-lower) - sigmoid(-upper) in the right
    tail so that float64 does not subtract two numbers within 1e-14 of one (the reference must
    be accurate where the bin mass is tiny)."""
    return torch.where(lower > 0, torch.sigmoid(-lower) - torch.sigmoid(-upper), torch.sigmoid(upper) - torch.sigmoid(lower))


def test_discretized_logistic_matches_paper_b_formula():
    """Paper B's `batch_logistic_logp` without its 1e-7: sigmoid((x-mu+1/255)/s) - sigmoid((x-mu)/s)."""
    g = generator(0)
    likelihood = DiscretizedLogistic((1, 4, 4))
    x = torch.randint(0, 256, (5, 1, 4, 4), generator=g).double() / 255.0
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0  # both edge bins
    location = torch.rand((5, 1, 4, 4), generator=g, dtype=torch.float64)
    log_scale = torch.empty((5, 1, 4, 4), dtype=torch.float64).uniform_(-4, 0, generator=g)
    scale = log_scale.exp()
    lower, upper = (x - location) / scale, (x - location + 1 / 255) / scale
    mass = logistic_bin_mass(lower, upper)
    mass = torch.where(x < 0.001, torch.sigmoid(upper), torch.where(x > 0.999, torch.sigmoid(-lower), mass))
    expected = torch.log(mass).sum(dim=(1, 2, 3))
    params = torch.stack((location, log_scale), dim=1)  # (5, 2, 1, 4, 4)
    torch.testing.assert_close(likelihood.log_prob(x, params), expected, rtol=1e-10, atol=1e-10)


def test_discretized_logistic_far_tail_is_finite_and_accurate_in_float32():
    """30 scales from the location a naive float32 sigmoid difference is 0 (log = -inf); ours matches float64."""
    likelihood = DiscretizedLogistic((1, 1, 3))
    x = torch.tensor([[[[0.2, 0.6, 254 / 255]]]], dtype=torch.float64)
    params = torch.stack((torch.tensor([[[0.8, 0.1, 0.3]]]).double(), torch.full((1, 1, 3), math.log(0.02)).double()), dim=0).unsqueeze(0)
    reference = likelihood.log_prob(x, params)
    single = likelihood.log_prob(x.float(), params.float())
    assert torch.isfinite(single).all()
    torch.testing.assert_close(single.double(), reference, rtol=1e-5, atol=1e-3)


def colour_grid(red: float) -> torch.Tensor:
    """All 256^2 (green, blue) combinations for one red value: `(65536, 3, 1, 1)` float64."""
    green, blue = torch.meshgrid(ALL_VALUES, ALL_VALUES, indexing="ij")
    return torch.stack((torch.full_like(green, red), green, blue), dim=-1).reshape(-1, 3, 1, 1)


def test_autoregressive_logistic_matches_paper_b_formula_and_marginalises():
    """Paper B's CIFAR `discretized_logistic` (9 channels: means, log scales, linear coefficients;
    m_G = mu_G + l_0 x_R, m_B = mu_B + l_1 x_R + l_2 x_G), and sum_{g,b} p(r, g, b) = p(r), the
    plain red logistic: the green and blue conditionals are normalized for every r."""
    likelihood = DiscretizedLogistic((3, 2, 2), channel_coefficients=True)
    assert likelihood.param_shape == (3, 3, 2, 2)
    g = generator(20)
    x = torch.randint(0, 256, (4, 3, 2, 2), generator=g).double() / 255.0
    x[0, :, 0, 0], x[1, :, 1, 1] = 0.0, 1.0
    params = torch.stack(
        (
            torch.rand((4, 3, 2, 2), generator=g, dtype=torch.float64),
            torch.empty((4, 3, 2, 2), dtype=torch.float64).uniform_(-4, -1, generator=g),
            torch.randn((4, 3, 2, 2), generator=g, dtype=torch.float64),
        ),
        dim=1,
    )  # (4, 3, 3, 2, 2)
    location, log_scale, coefficient = params.unbind(1)
    means = torch.stack(
        (
            location[:, 0],
            location[:, 1] + coefficient[:, 0] * x[:, 0],
            location[:, 2] + coefficient[:, 1] * x[:, 0] + coefficient[:, 2] * x[:, 1],
        ),
        dim=1,
    )
    scale = log_scale.exp()
    lower, upper = (x - means) / scale, (x - means + 1 / 255) / scale
    mass = logistic_bin_mass(lower, upper)
    mass = torch.where(x < 0.001, torch.sigmoid(upper), torch.where(x > 0.999, torch.sigmoid(-lower), mass))
    torch.testing.assert_close(likelihood.log_prob(x, params), torch.log(mass).sum(dim=(1, 2, 3)), rtol=1e-10, atol=1e-10)

    pixel = DiscretizedLogistic((3, 1, 1), channel_coefficients=True)
    red_only = DiscretizedLogistic((1, 1, 1))
    pixel_params = params[:1, :, :, :1, :1]  # (1, 3, 3, 1, 1)
    for red in (0.0, 0.3, 1.0):
        marginal = torch.logsumexp(pixel.log_prob(colour_grid(red), pixel_params), 0)
        red_params = pixel_params[:, :2, :1]  # location and log scale of red, (1, 2, 1, 1, 1)
        expected = red_only.log_prob(torch.full((1, 1, 1, 1), red, dtype=torch.float64), red_params)[0]
        assert marginal.item() == pytest.approx(expected.item(), abs=1e-10)
    with pytest.raises(ValueError, match="channel_coefficients=True needs colour images"):
        DiscretizedLogistic((1, 28, 28), channel_coefficients=True)


def test_autoregressive_logistic_samples_match_log_prob_given_red():
    """As for the mixture below: E[g | r0] and E[b | r0] of samples match enumeration of log_prob."""
    likelihood = DiscretizedLogistic((3, 1, 1), channel_coefficients=True)
    params = torch.tensor(
        [[0.4, 0.3, 0.5], [math.log(0.01), math.log(0.04), math.log(0.05)], [0.6, -0.5, 0.4]]
    ).view(1, 3, 3, 1, 1)
    samples = likelihood.sample(params.expand(100_000, -1, -1, 1, 1), generator=generator(21)).flatten(1)
    assert is_eight_bit(samples)
    red_values, red_counts = samples[:, 0].unique(return_counts=True)
    red = red_values[red_counts.argmax()].item()
    given_red = samples[samples[:, 0] == red].double()
    x = colour_grid(red)
    probabilities = torch.softmax(likelihood.log_prob(x, params.double()), 0)
    expected = torch.stack(((probabilities * x[:, 1, 0, 0]).sum(), (probabilities * x[:, 2, 0, 0]).sum()))
    error = given_red[:, 1:].std(0) / math.sqrt(len(given_red))
    assert ((given_red[:, 1:].mean(0) - expected).abs() < 4 * error + 1e-4).all()


# --- discretized mixture of logistics ----------------------------------------------------------


def mixture_params(likelihood: DiscretizedMixtureOfLogistics, batch: int, seed: int, spread: float = 2.0) -> torch.Tensor:
    g = generator(seed)
    return spread * torch.randn((batch, *likelihood.param_shape), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("uniform_weight", [0.0, 1e-4])
def test_mixture_grey_sums_to_one_including_extremes(uniform_weight):
    likelihood = DiscretizedMixtureOfLogistics((1, 1, 1), n_components=4, uniform_weight=uniform_weight)
    n = 4
    params = torch.cat(
        [
            mixture_params(likelihood, 6, seed=1).view(6, 3 * n),  # generic
            torch.tensor([[20.0, -20.0, 0.0, 0.0, -2.0, 0.0, 1.0, 3.0, -9.0, -9.0, -9.0, -9.0]]).double(),  # clamp, far
            torch.tensor([[0.0] * n + [0.0, 1.0, 0.5, 2 / 255] + [-7.0, -7.0, 5.0, -7.0]]).double(),  # edges, wide
        ]
    ).view(-1, 3 * n, 1, 1)
    x = ALL_VALUES.view(256, 1, 1, 1, 1)  # (256, 1, C, H, W) against params (P, 3n, H, W)
    log_probs = likelihood.log_prob(x, params)  # (256, P)
    assert torch.isfinite(log_probs).all()
    torch.testing.assert_close(torch.logsumexp(log_probs, 0), torch.zeros(params.shape[0], dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("channel_mixture", ["joint", "per_channel"])
@pytest.mark.parametrize("uniform_weight", [0.0, 1e-2])
def test_mixture_colour_marginalises_to_the_red_channel(channel_mixture, uniform_weight):
    """Summing p(r, g, b) over all 256^2 (g, b) gives the red channel's own mixture p(r).

    For both mixtures the channel conditionals are normalized, so sum_{g,b} p = sum_k pi_k P_k(r)
    (joint) or p(r) (per channel), which is a grey MoL with the red block's parameters; with the
    floor, (1 - a) p(r) + a/256 either way. Together with the grey test (sum_r p(r) = 1) this
    checks that the 256^3 colours sum to one, without summing 16.7M terms.
    """
    n = 3
    colour = DiscretizedMixtureOfLogistics((3, 1, 1), n_components=n, uniform_weight=uniform_weight, channel_mixture=channel_mixture)
    grey = DiscretizedMixtureOfLogistics((1, 1, 1), n_components=n, uniform_weight=uniform_weight)
    params = mixture_params(colour, 1, seed=2, spread=1.0)  # (1, 10n, 1, 1)
    params[:, n : n + n] = torch.tensor([0.1, 0.9, 0.5]).double().view(1, n, 1, 1)  # red means inside [0, 1]
    grey_params = params[:, : 3 * n]  # logits, red means, red log scales
    for red in (0.0, 3 / 255, 0.5, 200 / 255, 1.0):
        x = colour_grid(red)  # (65536, 3, 1, 1)
        marginal = torch.logsumexp(colour.log_prob(x, params), 0)
        expected = grey.log_prob(torch.full((1, 1, 1, 1), red, dtype=torch.float64), grey_params)[0]
        assert marginal.item() == pytest.approx(expected.item(), abs=1e-10)


def naive_colour_mixture(x: torch.Tensor, params: torch.Tensor, n: int, channel_mixture: str, alpha: float) -> torch.Tensor:
    """A direct float64 transcription of PixelCNN++ / paper B's layout (one pixel at a time),
    with paper B's uniform floor alpha (per channel) or its joint analogue (per pixel)."""
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for index in range(x.shape[0]):
        for row in range(x.shape[2]):
            for col in range(x.shape[3]):
                value = x[index, :, row, col]  # (3,)
                p = params[index, :, row, col]  # (10n,)
                weights = torch.softmax(p[:n], 0)
                blocks = p[n:].view(3, 3 * n)
                mu, log_s, coef = blocks[:, :n], blocks[:, n : 2 * n].clamp(min=-7.0), torch.tanh(blocks[:, 2 * n :])
                means = torch.stack(
                    (mu[0], mu[1] + coef[0] * value[0], mu[2] + coef[1] * value[0] + coef[2] * value[1])
                )  # (3, n)
                s = log_s.exp()
                upper = (value[:, None] + 1 / 510 - means) / s
                lower = (value[:, None] - 1 / 510 - means) / s
                mass = logistic_bin_mass(lower, upper)  # (3, n)
                mass = torch.where(value[:, None] < 0.5 / 255, torch.sigmoid(upper), mass)
                mass = torch.where(value[:, None] > 254.5 / 255, torch.sigmoid(-lower), mass)
                if channel_mixture == "joint":
                    total[index] += torch.log((1 - alpha) * (weights * mass.prod(0)).sum() + alpha / 256**3)
                else:
                    total[index] += torch.log((1 - alpha) * (weights * mass).sum(1) + alpha / 256).sum()
    return total


@pytest.mark.parametrize("channel_mixture", ["joint", "per_channel"])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_mixture_colour_matches_naive_formula(channel_mixture, alpha):
    n = 2
    likelihood = DiscretizedMixtureOfLogistics((3, 2, 2), n_components=n, uniform_weight=alpha, channel_mixture=channel_mixture)
    params = mixture_params(likelihood, 3, seed=3, spread=0.7)
    x = torch.randint(0, 256, (3, 3, 2, 2), generator=generator(4)).double() / 255.0
    x[0, 0, 0, 0], x[0, 1, 0, 0], x[1, 2, 1, 1] = 0.0, 1.0, 1.0  # edge bins in every channel role
    expected = naive_colour_mixture(x, params, n, channel_mixture, alpha)
    torch.testing.assert_close(likelihood.log_prob(x, params), expected, rtol=1e-9, atol=1e-9)


def total_variation(samples: torch.Tensor, log_probs: torch.Tensor) -> float:
    counts = torch.bincount((samples * 255).round().long().flatten(), minlength=256).double()
    return 0.5 * (counts / counts.sum() - log_probs.exp()).abs().sum().item()


@pytest.mark.parametrize("uniform_weight", [0.0, 0.3])
def test_mixture_grey_samples_follow_the_probabilities(uniform_weight):
    """100k samples of one pixel vs its 256 probabilities (with a large uniform floor too). The
    expected total variation of an empirical histogram is about 0.5 * sqrt(2 / (pi n)) *
    sum_i sqrt(p_i) <= 0.5 * sqrt(2 B / (pi n)) for B occupied bins; with B <= 256 that is
    <= 0.023, so 0.03 is a loose but real check."""
    likelihood = DiscretizedMixtureOfLogistics((1, 1, 1), n_components=3, uniform_weight=uniform_weight)
    params = torch.tensor([0.0, 1.0, -1.0, 0.1, 0.5, 0.98, math.log(0.05), math.log(0.02), math.log(0.1)]).view(1, 9, 1, 1)
    samples = likelihood.sample(params.expand(100_000, 9, 1, 1), generator=generator(6))
    assert samples.shape == (100_000, 1, 1, 1) and is_eight_bit(samples)
    log_probs = likelihood.log_prob(ALL_VALUES.view(256, 1, 1, 1), params.double())
    assert total_variation(samples, log_probs) < 0.03


@pytest.mark.parametrize("channel_mixture", ["joint", "per_channel"])
def test_mixture_colour_samples_red_marginal_and_means(channel_mixture):
    """Red samples follow the red marginal (TV as above); channel sample means match `mean()`
    within 4 standard errors plus 1e-3 for the rounding to k/255 and the tails clipped at 0/1."""
    n = 2
    likelihood = DiscretizedMixtureOfLogistics((3, 1, 1), n_components=n, channel_mixture=channel_mixture)
    grey = DiscretizedMixtureOfLogistics((1, 1, 1), n_components=n)
    blocks = torch.tensor(
        [
            # per colour block: 2 means, 2 log scales, 2 coefficients (pre-tanh), one per component;
            # block c holds coefficient slot c: mean_G = mu_G + a x_R, mean_B = mu_B + b x_R + c x_G.
            # All conditional means stay inside (0.1, 0.9), so clipping at 0/1 is negligible.
            [0.3, 0.6, math.log(0.05), math.log(0.03), 0.5, 0.3],  # red, and slot a
            [0.2, 0.1, math.log(0.04), math.log(0.06), 0.3, 0.0],  # green, and slot b
            [0.3, 0.2, math.log(0.05), math.log(0.05), -0.4, 0.2],  # blue, and slot c
        ]
    )
    params = torch.cat((torch.tensor([0.3, -0.2]), blocks.flatten())).view(1, 10 * n, 1, 1)
    count = 100_000
    samples = likelihood.sample(params.expand(count, -1, 1, 1), generator=generator(7))
    assert samples.shape == (count, 3, 1, 1) and is_eight_bit(samples)
    red_log_probs = grey.log_prob(ALL_VALUES.view(256, 1, 1, 1), params[:, : 3 * n].double())
    assert total_variation(samples[:, 0], red_log_probs) < 0.03
    sample_mean = samples.mean(0).flatten()
    standard_error = samples.std(0).flatten() / math.sqrt(count)
    expected = likelihood.mean(params).flatten()
    assert ((sample_mean - expected).abs() < 4 * standard_error + 1e-3).all(), (sample_mean, expected)


# --- Bernoulli and Gaussian ----------------------------------------------------------------------


def test_bernoulli_matches_binary_cross_entropy_and_hand_value():
    likelihood = Bernoulli((1, 1, 2))
    x = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])
    # log sigmoid(0) + log(1 - sigmoid(log 3)) = log(1/2) + log(1/4) = log(1/8)
    assert likelihood.log_prob(x, logits).item() == pytest.approx(math.log(1 / 8), abs=1e-6)
    likelihood = Bernoulli((1, 5, 5))
    g = generator(8)
    x = (torch.rand((4, 1, 5, 5), generator=g) < 0.4).float()
    logits = 5 * torch.randn((4, 1, 5, 5), generator=g)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))
    torch.testing.assert_close(likelihood.log_prob(x, logits), expected)
    manual = (x * torch.sigmoid(logits).log() + (1 - x) * torch.sigmoid(-logits).log()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(likelihood.log_prob(x, logits), manual, rtol=1e-5, atol=1e-4)


def test_gaussian_matches_torch_normal():
    likelihood = FixedVarianceGaussian((2, 3), sigma=0.3)
    g = generator(9)
    x, mean = torch.randn((4, 2, 3), generator=g), torch.randn((4, 2, 3), generator=g)
    expected = torch.distributions.Normal(mean, 0.3).log_prob(x).sum(dim=(1, 2))
    torch.testing.assert_close(likelihood.log_prob(x, mean), expected)
    with pytest.raises(ValueError, match="sigma must be positive"):
        FixedVarianceGaussian((2, 3), sigma=0.0)


# --- shared interface: broadcasting, shapes, ranges, errors, configs ----------------------------

DATA_SHAPE = (3, 4, 4)
LIKELIHOOD_CASES = {
    "bernoulli": lambda: Bernoulli(DATA_SHAPE),
    "gaussian": lambda: FixedVarianceGaussian(DATA_SHAPE, sigma=0.2),
    "logistic": lambda: DiscretizedLogistic(DATA_SHAPE),
    "logistic_autoregressive": lambda: DiscretizedLogistic(DATA_SHAPE, channel_coefficients=True),
    "mixture_joint": lambda: DiscretizedMixtureOfLogistics(DATA_SHAPE, n_components=3, uniform_weight=1e-4),
    "mixture_per_channel": lambda: DiscretizedMixtureOfLogistics(DATA_SHAPE, n_components=3, channel_mixture="per_channel"),
    "mixture_grey": lambda: DiscretizedMixtureOfLogistics((1, 4, 4), n_components=2),
}


@pytest.fixture(params=sorted(LIKELIHOOD_CASES))
def likelihood(request):
    return LIKELIHOOD_CASES[request.param]()


def data_like(likelihood, leading: tuple[int, ...], seed: int) -> torch.Tensor:
    g = generator(seed)
    values = torch.randint(0, 256, (*leading, *likelihood.data_shape), generator=g).float() / 255.0
    return values.round() if isinstance(likelihood, Bernoulli) else values


def test_leading_dimensions_broadcast(likelihood):
    """params (K, B, ...) score x (B, ...) without copying: equal to a loop over K."""
    x = data_like(likelihood, (5,), seed=10)
    params = torch.randn((3, 5, *likelihood.param_shape), generator=generator(11))
    scores = likelihood.log_prob(x, params)
    assert scores.shape == (3, 5)
    for k in range(3):
        torch.testing.assert_close(scores[k], likelihood.log_prob(x, params[k]))
    # and x with its own leading dims against shared params
    assert likelihood.log_prob(x.expand(2, *x.shape), params[0]).shape == (2, 5)


def test_sample_and_mean_shapes_and_ranges(likelihood):
    params = torch.randn((2, 5, *likelihood.param_shape), generator=generator(12))
    first = likelihood.sample(params, generator=generator(13))
    again = likelihood.sample(params, generator=generator(13))
    mean = likelihood.mean(params)
    assert first.shape == mean.shape == (2, 5, *likelihood.data_shape)
    torch.testing.assert_close(first, again)  # same generator state, same sample
    if isinstance(likelihood, Bernoulli):
        assert set(first.unique().tolist()) <= {0.0, 1.0}
    elif not isinstance(likelihood, FixedVarianceGaussian):
        assert is_eight_bit(first)
        assert mean.min() >= 0 and mean.max() <= 1
    assert torch.isfinite(likelihood.log_prob(first, params)).all()


def test_gradients_are_finite_at_edges(likelihood):
    x = data_like(likelihood, (4,), seed=14)
    x.view(4, -1)[:, :3] = torch.tensor([0.0, 1.0, 0.0])
    params = (10 * torch.randn((4, *likelihood.param_shape), generator=generator(15))).requires_grad_()
    likelihood.log_prob(x, params).sum().backward()
    assert torch.isfinite(params.grad).all()


def test_wrong_params_shape_raises(likelihood):
    wrong = torch.zeros((2, *likelihood.param_shape[:-1], likelihood.param_shape[-1] + 1))
    with pytest.raises(ValueError, match="expects decoder outputs ending in"):
        likelihood.log_prob(data_like(likelihood, (2,), seed=16), wrong)


def test_config_round_trip(likelihood):
    config = likelihood.config()
    rebuilt = make_likelihood(config.pop("name"), **config)
    assert type(rebuilt) is type(likelihood) and rebuilt.config() == likelihood.config()
    assert likelihood.name in LIKELIHOODS


def test_mixture_param_shapes_and_errors():
    assert DiscretizedMixtureOfLogistics((1, 28, 28)).param_shape == (30, 28, 28)
    assert DiscretizedMixtureOfLogistics((3, 32, 32)).param_shape == (100, 32, 32)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        DiscretizedMixtureOfLogistics((2, 8, 8))
    with pytest.raises(ValueError, match="n_components"):
        DiscretizedMixtureOfLogistics((1, 8, 8), n_components=0)
    with pytest.raises(ValueError, match="uniform_weight"):
        DiscretizedMixtureOfLogistics((1, 8, 8), uniform_weight=1.0)
    with pytest.raises(ValueError, match="channel_mixture"):
        DiscretizedMixtureOfLogistics((3, 8, 8), channel_mixture="shared")
    with pytest.raises(ValueError, match="unknown likelihood"):
        make_likelihood("mixture", (1, 8, 8))


@pytest.mark.parametrize("channel_mixture", ["joint", "per_channel"])
def test_mixture_colour_samples_match_log_prob_given_red(channel_mixture):
    """Sampling and log_prob agree on the colour conditionals: among samples whose red value is
    the most frequent one r0, the mean green and blue equal E[g | r0] and E[b | r0] computed by
    enumerating p(r0, g, b) over all 256^2 (g, b). Tolerance: 4 standard errors + 1e-4."""
    n = 2
    likelihood = DiscretizedMixtureOfLogistics((3, 1, 1), n_components=n, channel_mixture=channel_mixture)
    blocks = torch.tensor(
        [
            [0.4, 0.45, math.log(0.01), math.log(0.02), 1.0, -0.5],
            [0.3, 0.6, math.log(0.05), math.log(0.03), 0.4, -0.8],
            [0.5, 0.2, math.log(0.04), math.log(0.05), 0.6, 0.3],
        ]
    )
    params = torch.cat((torch.tensor([0.2, -0.3]), blocks.flatten())).view(1, 10 * n, 1, 1)
    samples = likelihood.sample(params.expand(100_000, -1, 1, 1), generator=generator(17)).flatten(1)  # (N, 3)
    red_values, red_counts = samples[:, 0].unique(return_counts=True)
    red = red_values[red_counts.argmax()].item()
    given_red = samples[samples[:, 0] == red]
    assert len(given_red) > 5000
    x = colour_grid(red)
    probabilities = torch.softmax(likelihood.log_prob(x, params.double()), 0)  # p(g, b | r0)
    expected = torch.stack(((probabilities * x[:, 1, 0, 0]).sum(), (probabilities * x[:, 2, 0, 0]).sum()))
    observed = given_red[:, 1:].double().mean(0)
    standard_error = given_red[:, 1:].double().std(0) / math.sqrt(len(given_red))
    assert ((observed - expected).abs() < 4 * standard_error + 1e-4).all(), (observed, expected, standard_error)
