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
