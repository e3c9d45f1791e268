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
# zhang2022
# ------------------------------------------------------------------------------------------------


def test_rise_after_minimum():
    assert claims.rise_after_minimum([3.0, 1.0, 2.5]) == 1.5
    assert claims.rise_after_minimum([3.0, 2.0, 1.0]) == 0.0  # ends at its minimum
    with pytest.raises(ValueError, match="non-empty"):
        claims.rise_after_minimum([])


def test_ordered_elementwise_and_strict():
    optimal, consistent, amortized = [1.0, 1.0], [1.5, 2.0], [2.0, 3.0]
    assert claims.ordered([optimal, consistent, amortized])
    assert not claims.ordered([optimal, amortized, consistent])  # 2.0 < 1.5 fails at the first point
    assert not claims.ordered([[1.0, 2.0], [1.0, 3.0]]) and claims.ordered([[1.0, 2.0], [1.0, 3.0]], strict=False)
    assert claims.ordered([[[1.0, 2.0]], [[1.5, 2.5]]])  # [C][M]: every checkpoint and seed
    with pytest.raises(ValueError, match="one shape"):
        claims.ordered([[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="two curves"):
        claims.ordered([[1.0]])


def test_nearly_flat_and_dominates():
    assert claims.nearly_flat(0.01, 0.06, 1 / 3) and not claims.nearly_flat(0.03, 0.06, 1 / 3)
    assert not claims.nearly_flat(0.0, 0.0, 1 / 3)  # the reference must rise at all
    assert claims.dominates(0.2, 0.05, 2.0) and not claims.dominates(0.09, 0.05, 2.0)
    assert not claims.dominates(0.0, 0.0, 2.0)  # a zero gap dominates nothing


@pytest.mark.parametrize(
    ("measured", "comparable", "holds"),
    [
        # paper B's binary-MNIST reference 0.18543 -> 0.17891 (3.5% saved)
        ((0.1860, 0.1790, 0.0070, 0.0010), True, True),  # within 5% of both, 7 sd above noise
        ((0.1860, 0.1790, 0.0070, 0.0040), True, False),  # improvement within 2 sd: noise
        ((0.2200, 0.2120, 0.0080, 0.0010), True, False),  # 19% off the reference baseline
        ((0.2200, 0.2120, 0.0080, 0.0010), False, True),  # other setting: 3.6% saved >= 0.5 x 3.5%
        ((0.2200, 0.2180, 0.0020, 0.0001), False, False),  # 0.9% saved < 0.5 x 3.5%
    ],
)
def test_reproduces_improvement(measured, comparable, holds):
    baseline, improved, improvement, sd = measured
    assert claims.reproduces_improvement(baseline, improved, improvement, sd, 0.18543, 0.17891, comparable=comparable,
                                         absolute_tolerance=0.05, relative_floor=0.5) == holds


# xiao2024 (paper A)
# ------------------------------------------------------------------------------------------------


def test_smallest_and_method_orderings():
    gaps = {"normal": 25.76, "dmaapx": 0.78, "aug_tuned": 8.16, "aug_naive": 6.38}  # paper A Table 7, BinaryMNIST G_g
    assert claims.smallest(gaps) == "dmaapx"
    assert claims.smallest({"a": 1.0, "b": 1.0}) == "a"  # ties: the first
    with pytest.raises(ValueError, match="at least one"):
        claims.smallest({})
    robust = {"normal": 0.49, "dmaapx": 0.50, "aug_tuned": 0.79, "aug_naive": 0.74}  # Table 7, BinaryMNIST G_r
    assert claims.matches_and_beats(robust, "dmaapx", "normal", ["aug_naive", "aug_tuned"], 0.05)
    assert not claims.matches_and_beats(robust, "dmaapx", "normal", ["aug_naive", "aug_tuned"], 0.005)
    assert not claims.matches_and_beats({**robust, "aug_naive": 0.45}, "dmaapx", "normal", ["aug_naive"], 0.05)
    assert claims.within_budget([0.1, 0.1 + 5e-7, 0.02], 0.1) and not claims.within_budget([0.1001], 0.1)


def test_falls_after_peak_and_stays_near_peak():
    overfit = claims.peak_then_drop([10, 20, 30], [[-130.0], [-124.0], [-218.0]])  # Fig. 2-like: peak, then a fall
    assert claims.falls_after_peak(overfit, 30, 0.005) and not claims.stays_near_peak(overfit, 0.005)
    rising = claims.peak_then_drop([10, 20, 30], [[-130.0], [-110.0], [-102.0]])
    assert not claims.falls_after_peak(rising, 30, 0.005) and claims.stays_near_peak(rising, 0.005)
    small_dip = {"peak_epoch": 20, "peak": -100.0, "final": -100.4, "drop": 0.4}  # 0.4 <= 0.005 * 100
    assert claims.stays_near_peak(small_dip, 0.005) and not claims.falls_after_peak(small_dip, 30, 0.005)
    assert not claims.falls_after_peak({"peak_epoch": 30, "peak": -100.0, "final": -150.0, "drop": 50.0}, 30, 0.005)


def test_rank_correlation_and_monotone_sweeps():
    assert claims.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert claims.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert claims.spearman([4], [1]) == 0.0
    with pytest.raises(ValueError, match="same length"):
        claims.spearman([1, 2], [1])
    assert claims.shrinks_along([1, 2, 4, 8], [857.0, 600.0, 450.0, 361.0], 1.0)["holds"]  # Fig. 6: G_a falls with m_z
    assert not claims.shrinks_along([2, 4, 64], [77.7, 120.0, 186.0], 1.0)["holds"]
    assert not claims.shrinks_along([2, 4], [10.0, 9.5], 1.0)["holds"]  # falls, but by less than the tolerance
    assert claims.grows_along([16, 32, 512], [0.8, 5.0, 77.7])["holds"] and not claims.grows_along([16, 32], [5.0, 1.0])["holds"]
    assert claims.falls_by([41.0, 80.0, 35.0], 1.0) and not claims.falls_by([41.0, 120.0], 1.0) and not claims.falls_by([3.0], 1.0)
    assert claims.worse_by({"a": (-100.0, -102.8), "b": (-100.0, -100.5), "c": (-100.0, -90.0)}, 1.0) == ["a"]


def test_sweep_shapes_on_known_curves():
    flat = claims.rises_then_flattens([-165.0, -141.0, -126.0, -124.4, -124.6], 1.0, 0.25)
    assert flat["holds"] and flat["best_index"] == 3 and flat["rise"] == pytest.approx(40.6)
    assert not claims.rises_then_flattens([-197.0, -180.0, -210.0], 1.0, 0.25)["flattens"]  # ends far below its best
    assert not claims.rises_then_flattens([-120.0, -130.0, -140.0], 1.0, 0.25)["rises"]  # best at the start
    assert not claims.rises_then_flattens([-150.0, -130.0, -100.0], 1.0, 0.25)["holds"]  # still rising steeply
    u = claims.inverted_u([-180.0, -166.3, -170.0, -196.9], 1.0)
    assert u["holds"] and u["peak_index"] == 1 and u["decline"] == pytest.approx(30.6)
    assert not claims.inverted_u([-180.0, -170.0, -166.0], 1.0)["holds"]  # best at the widest: no U
    assert not claims.inverted_u([-170.0, -166.0, -166.5], 1.0)["holds"]  # declines by less than the tolerance
    assert claims.no_decline_at_end([-140.0, -131.0, -131.5], 1.0)["holds"]
    late = claims.no_decline_at_end([-140.0, -131.2, -222.8], 1.0)
    assert not late["holds"] and late["decline"] == pytest.approx(91.6) and late["peak_index"] == 1


def test_down_up_down_on_known_paths():
    # first leg (3 points) goes down to 160, then the path rises to 200 and comes back down to 150
    path = [180.0, 165.0, 160.0, 175.0, 200.0, 150.0]
    result = claims.down_up_down(path, 3, 1.0, 0.5)
    assert result == {"first_descent": 20.0, "ascent": 40.0, "second_descent": 50.0, "holds": True}
    assert not claims.down_up_down([180.0, 165.0, 160.0, 175.0, 200.0, 190.0], 3, 1.0, 0.5)["holds"]  # second descent 10 < 20
    assert not claims.down_up_down([160.0, 170.0, 200.0, 150.0], 2, 1.0, 0.5)["holds"]  # no first descent
    assert claims.down_up_down([], 0, 1.0, 0.5)["holds"] is False


def test_not_copies():
    assert claims.not_copies(7.8, 7.4, 0.0, min_ratio=0.5, max_near_copies=0.05) == {"ratio": pytest.approx(7.8 / 7.4), "holds": True}
    assert not claims.not_copies(1.0, 7.4, 0.0, min_ratio=0.5, max_near_copies=0.05)["holds"]  # samples sit on training images
    assert not claims.not_copies(7.8, 7.4, 0.2, min_ratio=0.5, max_near_copies=0.05)["holds"]  # too many near copies


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
