"""Claim predicates on inputs with known answers: each rule that decides a verdict, tested once."""

from __future__ import annotations

import math

import pytest

from vaegen_utils import claims


def test_mean_sd_over_seeds():
    mean, sd = claims.mean_sd([[1.0, 3.0], [2.0, 2.0]])
    assert mean == [2.0, 2.0] and sd[0] == pytest.approx(math.sqrt(2.0)) and sd[1] == 0.0
    assert claims.mean_sd([5.0]) == (5.0, 0.0)  # one seed: no spread
    assert claims.mean_sd([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))
    with pytest.raises(ValueError, match="at least one value"):
        claims.mean_sd([])


def test_beyond_noise():
    assert claims.beyond_noise(0.5, 0.1, 2.0) and not claims.beyond_noise(0.15, 0.1, 2.0)
    assert claims.beyond_noise(1e-9, None, 2.0) and not claims.beyond_noise(0.0, 0.0, 2.0)


def test_curve_shapes():
    assert claims.strictly_decreasing([3, 2, 1]) and not claims.strictly_decreasing([3, 3, 1])
    assert claims.is_monotone([1, 2, 5], increasing=True) and not claims.is_monotone([1, 0], increasing=True)
    assert claims.interior_minimum([3, 1, 2]) == {"index": 1, "value": 1.0, "interior": True}
    assert not claims.interior_minimum([1, 2, 3])["interior"] and not claims.interior_minimum([3, 2, 1])["interior"]
    assert claims.interior_minimum([2, 1, 1, 2])["index"] == 1  # ties: the first lowest point


def test_peak_then_drop_on_a_known_curve():
    summary = claims.peak_then_drop([10, 20, 30, 40], [[-100.0], [-90.0], [-95.0], [-97.0]])
    assert summary == {"peak_epoch": 20, "peak": -90.0, "final": -97.0, "drop": 7.0}
    two_seeds = claims.peak_then_drop([1, 2], [[-3.0, -1.0], [-1.0, -1.0]])
    assert two_seeds["peak_epoch"] == 2 and two_seeds["drop"] == 0.0
    with pytest.raises(ValueError, match="one row of seed values per epoch"):
        claims.peak_then_drop([1, 2], [[-1.0]])


def test_plateau():
    # k = 1 -> 10 gains 100, beyond 10 only 5: a plateau at fraction 0.2, not at 0.04.
    values = {1: -200.0, 2: -150.0, 10: -100.0, 20: -95.0}
    result = claims.plateau(values, 10, 0.2)
    assert result == {"gain_to_knee": 100.0, "gain_beyond": 5.0, "holds": True}
    assert not claims.plateau(values, 10, 0.04)["holds"]
    assert not claims.plateau({1: -100.0, 10: -120.0, 20: -90.0}, 10, 0.5)["holds"]  # no gain up to the knee
    with pytest.raises(ValueError, match="knee"):
        claims.plateau(values, 5, 0.2)


@pytest.mark.parametrize(
    ("mean", "sd", "argmin", "interior", "u", "l"),
    [
        ([10, 8, 6, 7, 9], [0.1] * 5, 6, True, True, False),  # U: rise 4 over noise 0.14
        ([5, 6, 7, 8, 9], [0.1] * 5, 5, False, False, True),  # L: minimum at the smallest β
        ([6.05, 6.0, 7, 8, 9], [0.5] * 5, 6.0, True, False, True),  # interior but within noise: L, not U
        ([9, 8, 7, 6, 5], [0.1] * 5, 5, False, False, False),  # minimum at the largest β
    ],
)
def test_minimum_shape_tells_u_from_l(mean, sd, argmin, interior, u, l):
    betas = [0.001, 0.01, 0.1, 1.0, 5.0]
    shape = claims.minimum_shape(betas, mean, sd)
    assert shape["argmin_beta"] == betas[mean.index(min(mean))] and shape["interior"] == interior
    assert claims.is_u_shaped(shape, 2.0) == u and claims.is_l_shaped(shape, 2.0) == l


def test_minimum_shape_with_one_restart_and_unsorted_betas():
    shape = claims.minimum_shape([1.0, 0.001, 0.1], [5.0, 9.0, 4.0])  # sorted: 0.001 -> 9, 0.1 -> 4, 1 -> 5
    assert shape["argmin_beta"] == 0.1 and shape["interior"] and shape["rise"] == 5.0 and shape["rise_sd"] is None
    assert claims.is_u_shaped(shape, 2.0) and not claims.is_l_shaped(shape, 2.0)


def test_grid_helpers():
    assert claims.grid_neighbours([0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0], 0.1) == [0.01, 0.1, 0.3]
    assert claims.grid_neighbours([0.001, 1.0, 5.0], 0.1) == [0.001, 1.0, 5.0]  # off-grid: nearest in log β (1.0) stands in
    assert claims.best_beta([0.1, 1, 5], [3, 9, 1]) == 1 and claims.best_beta([0.1, 1, 5], [3, 9, 1], largest=False) == 5
    assert claims.is_monotone([3, 2, 1], increasing=False) and not claims.is_monotone([3, 3, 1], increasing=False)


def test_comparisons():
    official = (0.18543, 0.17891)  # zhang2022's official compression numbers, binary MNIST
    assert claims.relative_improvement(*official) == pytest.approx(0.0352, abs=1e-4)
    assert claims.within_fraction(102.0, 100.0, 0.02) and not claims.within_fraction(103.0, 100.0, 0.02)
    assert claims.closer_to(1.0, 0.0, 5.0) and not claims.closer_to(3.0, 0.0, 5.0)
    with pytest.raises(ValueError, match="non-zero baseline"):
        claims.relative_improvement(0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# bozkurt2021
# ------------------------------------------------------------------------------------------------


def test_largest_relative_gap_and_below_everywhere():
    # test D 101 and 198 against train D 100 and 200: gaps 1% and 1% -> 0.01 (absolute value of -2/200).
    assert claims.largest_relative_gap([1.0, -2.0], [100.0, 200.0]) == pytest.approx(0.01)
    assert claims.largest_relative_gap([1.0, -6.0], [100.0, 200.0]) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="one non-empty shape"):
        claims.largest_relative_gap([1.0], [1.0, 2.0])
    assert claims.below_everywhere([1, 2, 3], [2, 3, 4]) and not claims.below_everywhere([1, 3, 3], [2, 3, 4])
    with pytest.raises(ValueError, match="one shape"):
        claims.below_everywhere([1], [1, 2])


def test_curve_distances_and_spread():
    assert claims.mean_abs_difference([1.0, 5.0], [2.0, 2.0]) == 2.0  # (1 + 3) / 2
    # Three sizes x two β: spreads 4 - 1 = 3 and 2 - 2 = 0, mean 1.5.
    assert claims.mean_spread([[1.0, 2.0], [4.0, 2.0], [2.0, 2.0]]) == 1.5
    assert claims.mean_spread([[7.0, 8.0]]) == 0.0  # one size: nothing moves
    with pytest.raises(ValueError, match="curves, points"):
        claims.mean_spread([1.0, 2.0])


def test_closer_to_monotone_and_majority():
    assert claims.closer_to_monotone({"rise": 0.0}, {"rise": 0.3}) and claims.closer_to_monotone({"rise": 0.3}, {"rise": 0.3})
    assert not claims.closer_to_monotone({"rise": 0.5}, {"rise": 0.0})
    assert claims.majority([True, True, False]) and not claims.majority([True, False]) and not claims.majority([])


def test_saturation_of_the_mutual_information():
    betas = [0.001, 0.1, 1.0, 5.0]
    ceiling = 10.0
    assert claims.saturates_then_falls(betas, [9.8, 9.6, 8.0, 3.0], ceiling, 0.95)
    assert not claims.saturates_then_falls(betas, [9.8, 9.4, 8.0, 3.0], ceiling, 0.95)  # 9.4 < 9.5 at β = 0.1
    assert not claims.saturates_then_falls(betas, [9.8, 9.6, 8.0, 8.5], ceiling, 0.95)  # no fall for β > 1
    assert claims.saturates_then_falls([5.0, 1.0, 0.1], [3.0, 8.0, 9.9], ceiling, 0.95)  # grid order does not matter
    with pytest.raises(ValueError, match="not on the grid"):
        claims.saturates_then_falls([0.1, 5.0], [9.9, 3.0], ceiling, 0.95)


def test_marginal_kl_share_and_trend():
    betas = [0.001, 0.1, 1.0, 2.0, 5.0]
    kl = [50.0, 20.0, 5.0, 1.0, 0.5]
    rate = [80.0, 40.0, 20.0, 10.0, 2.0]
    assert claims.share_at_most(betas, kl, rate, 0.25, above=1.0)  # 1/10 and 0.5/2 = 0.25 (inclusive)
    assert not claims.share_at_most(betas, kl, rate, 0.2, above=1.0)
    assert claims.falls_as_beta_rises(betas, kl, (0.001, 0.1, 1.0))
    assert not claims.falls_as_beta_rises(betas, [50.0, 50.0, 5.0, 1.0, 0.5], (0.001, 0.1, 1.0))  # a tie is no fall
    assert not claims.falls_as_beta_rises([0.001, 1.0, 5.0], [3.0, 2.0, 1.0], (0.001, 0.1, 1.0))  # 0.1 off the grid


def test_worst_noise_ratio():
    assert claims.worst_noise_ratio([1.0, 3.0], [1.0, 0.5]) == 6.0
    assert claims.worst_noise_ratio([1e-9], [0.0]) == pytest.approx(1.0)  # zero spread: floored at 1e-9
    with pytest.raises(ValueError, match="one noise sd per difference"):
        claims.worst_noise_ratio([1.0], [])
