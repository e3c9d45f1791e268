"""Claim predicates: the shape tests, orderings and tolerances behind every notebook's verdicts.

Pure functions of plain numbers (lists, numpy arrays), each tested on inputs with known answers
(tests/test_claims.py). A notebook's claims cell states a paper's claim in words and calls one of
these, so the rule that decides "holds" is written, read and tested once.

Seed statistics
- `mean_sd(values)`: seed mean and sd (ddof 1; 0 for one seed), over the last axis.
- `beyond_noise(difference, sd, n_sds)`: a difference larger than n_sds seed (or restart) sd's.

Curves over training time or over a sweep
- `strictly_decreasing`, `is_monotone`, `interior_minimum`, `peak_then_drop`, `plateau`.

Rate-distortion curves over β (bozkurt2021, Figs. 3-8)
- `minimum_shape`, `is_u_shaped`, `is_l_shaped`, `best_beta`, `grid_neighbours`.

Comparisons
- `relative_improvement`, `within_fraction`, `closer_to`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


# ------------------------------------------------------------------------------------------------
# Seed statistics
# ------------------------------------------------------------------------------------------------


def mean_sd(values: Sequence[Sequence[float]] | Sequence[float]) -> tuple[list[float], list[float]] | tuple[float, float]:
    """Seed mean and standard deviation (ddof 1; 0 for one seed) over the last axis.

    `[M]` -> (mean, sd) as floats; `[C][M]` -> (means [C], sds [C]) as lists.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(f"mean_sd needs at least one value per row, got {values!r}")
    mean = array.mean(axis=-1)
    sd = array.std(axis=-1, ddof=1) if array.shape[-1] > 1 else np.zeros_like(mean)
    if array.ndim == 1:
        return float(mean), float(sd)
    return mean.tolist(), sd.tolist()


def beyond_noise(difference: float, sd: float | None, n_sds: float) -> bool:
    """True when `difference` exceeds `n_sds` times the noise `sd`.

    With no spread to compare with (sd None or 0: one seed or restart) any positive difference
    counts; callers that need several seeds say so in their claim's tolerance.
    """
    if sd is None or sd == 0:
        return bool(difference > 0)
    return bool(difference > n_sds * sd)


# ------------------------------------------------------------------------------------------------
# Curves
# ------------------------------------------------------------------------------------------------


def is_monotone(values: Sequence[float], *, increasing: bool) -> bool:
    """Strictly monotone sequence in the given direction (a single value counts as monotone)."""
    differences = np.diff(np.asarray(values, dtype=np.float64))
    return bool(np.all(differences > 0) if increasing else np.all(differences < 0))


def strictly_decreasing(values: Sequence[float]) -> bool:
    """Every value strictly below the one before it."""
    return is_monotone(values, increasing=False)


def interior_minimum(values: Sequence[float]) -> dict:
    """Where a curve is lowest and whether that is strictly inside it (neither first nor last).

    Returns {"index", "value", "interior"}; ties resolve to the first lowest point.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("interior_minimum needs a non-empty curve")
    index = int(np.argmin(array))
    return {"index": index, "value": float(array[index]), "interior": bool(0 < index < array.size - 1)}


def peak_then_drop(epochs: Sequence[int], curves: Sequence[Sequence[float]]) -> dict:
    """Where the seed-mean of per-seed curves peaks and how far it falls from the peak to the end.

    `curves[t]` holds one value per seed at `epochs[t]` (e.g. test ELBOs). Returns {"peak_epoch",
    "peak", "final", "drop"} with drop = peak - final >= 0.
    """
    if len(epochs) != len(curves) or not curves:
        raise ValueError(f"peak_then_drop needs one row of seed values per epoch, got {len(epochs)} epochs and {len(curves)} rows")
    means = [mean_sd(row)[0] for row in curves]
    best = int(np.argmax(means))
    return {"peak_epoch": int(epochs[best]), "peak": means[best], "final": means[-1], "drop": means[best] - means[-1]}


def plateau(values_by_size: Mapping[float, float], knee: float, fraction: float) -> dict:
    """"Gains plateau from `knee`": the gain beyond the knee is below `fraction` of the gain up to it.

    `values_by_size` maps a size (k, width, ...) to a score where larger is better (e.g. test
    ELBO). gain_to_knee = value(knee) - value(smallest size); gain_beyond = max over sizes >= knee
    of value - value(knee). Holds when gain_to_knee > 0 and gain_beyond < fraction * gain_to_knee.
    """
    if knee not in values_by_size:
        raise ValueError(f"the knee {knee!r} is not among the sizes {sorted(values_by_size)}")
    sizes = sorted(values_by_size)
    gain_to_knee = values_by_size[knee] - values_by_size[sizes[0]]
    gain_beyond = max(values_by_size[size] for size in sizes if size >= knee) - values_by_size[knee]
    return {
        "gain_to_knee": float(gain_to_knee),
        "gain_beyond": float(gain_beyond),
        "holds": bool(gain_to_knee > 0 and gain_beyond < fraction * gain_to_knee),
    }


# ------------------------------------------------------------------------------------------------
# Rate-distortion curves over β (bozkurt2021)
# ------------------------------------------------------------------------------------------------


def minimum_shape(betas: Sequence[float], mean: Sequence[float], sd: Sequence[float] | None = None) -> dict:
    """Where a curve over β has its minimum and how far its small-β end rises above it.

    Returns {"argmin_beta", "interior" (the minimum is at neither the smallest nor the largest β),
    "rise" (value at the smallest β minus the minimum, >= 0), "rise_sd" (that rise in units of the
    restarts' sd at those two points, combined in quadrature; None with one restart),
    "smallest_beta"}. U-shaped in paper C's sense: interior minimum and a rise above restart noise.
    """
    betas = np.asarray(betas, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    order = np.argsort(betas)
    betas, mean = betas[order], mean[order]
    sd = np.zeros_like(mean) if sd is None else np.asarray(sd, dtype=np.float64)[order]
    index = int(np.argmin(mean))
    rise = float(mean[0] - mean[index])
    noise = float(math.hypot(sd[0], sd[index]))
    rise_sd = rise / noise if noise > 0 else None  # None: one restart, no spread to compare with
    return {"argmin_beta": float(betas[index]), "interior": 0 < index < len(mean) - 1, "rise": rise, "rise_sd": rise_sd,
            "smallest_beta": float(betas[0])}


def is_u_shaped(shape: Mapping, sd_margin: float) -> bool:
    """Paper C's U: interior minimum and a small-β rise above `sd_margin` restart sd's (any rise > 0
    when there is a single restart)."""
    rise_sd = shape["rise_sd"]
    above_noise = shape["rise"] > 0 if rise_sd is None else rise_sd > sd_margin
    return bool(shape["interior"] and above_noise)


def is_l_shaped(shape: Mapping, sd_margin: float) -> bool:
    """Paper C's L (monotone in β): the minimum is at the smallest β, or the small-β rise is within
    `sd_margin` restart sd's (with a single restart: only a minimum at the smallest β counts)."""
    if shape["argmin_beta"] == shape["smallest_beta"]:
        return True
    rise_sd = shape["rise_sd"]
    return bool(rise_sd is not None and rise_sd <= sd_margin)


def best_beta(betas: Sequence[float], values: Sequence[float], *, largest: bool = True) -> float:
    """The β with the largest (or smallest) value."""
    values = np.asarray(values, dtype=np.float64)
    index = int(np.argmax(values) if largest else np.argmin(values))
    return float(np.asarray(betas, dtype=np.float64)[index])


def grid_neighbours(betas: Sequence[float], center: float, steps: int = 1) -> list[float]:
    """The β values within `steps` grid positions of `center` on the sorted grid (inclusive).

    When `center` is not on the grid (the smoke profile's short grid), the nearest grid value in
    log β stands in for it.
    """
    grid = sorted(float(beta) for beta in betas)
    index = int(np.argmin([abs(math.log(beta / center)) if beta > 0 else math.inf for beta in grid]))
    return grid[max(0, index - steps) : index + steps + 1]


# ------------------------------------------------------------------------------------------------
# Comparisons
# ------------------------------------------------------------------------------------------------


def relative_improvement(baseline: float, improved: float) -> float:
    """(baseline - improved) / baseline: the fraction saved (positive = `improved` is lower/better)."""
    if baseline == 0:
        raise ValueError("relative_improvement needs a non-zero baseline")
    return (baseline - improved) / baseline


def within_fraction(value: float, reference: float, fraction: float) -> bool:
    """|value - reference| <= fraction * |reference|."""
    return bool(abs(value - reference) <= fraction * abs(reference))


def closer_to(value: float, near: float, far: float) -> bool:
    """`value` is strictly closer to `near` than to `far`."""
    return bool(abs(value - near) < abs(value - far))


# ------------------------------------------------------------------------------------------------
# bozkurt2021: comparisons of RD curves, rate decompositions and training-set sizes (Figs. 1-8)
# ------------------------------------------------------------------------------------------------


def largest_relative_gap(gaps: Sequence[float], reference: Sequence[float]) -> float:
    """max over points of |gap| / |reference|, e.g. |test D - train D| / train D over β ("no gap": small)."""
    gaps = np.asarray(gaps, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if gaps.shape != reference.shape or gaps.size == 0:
        raise ValueError(f"largest_relative_gap needs two curves of one non-empty shape, got {gaps.shape} and {reference.shape}")
    return float(np.max(np.abs(gaps) / np.abs(reference)))


def below_everywhere(lower: Sequence[float], upper: Sequence[float]) -> bool:
    """Every value of `lower` strictly below the matching value of `upper` (one curve under another at every β)."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if lower.shape != upper.shape:
        raise ValueError(f"below_everywhere compares curves of one shape, got {lower.shape} and {upper.shape}")
    return bool(np.all(lower < upper))


def mean_abs_difference(curve: Sequence[float], other: Sequence[float]) -> float:
    """Mean over points of |curve - other|: how far apart two curves over the same β grid lie."""
    curve = np.asarray(curve, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if curve.shape != other.shape:
        raise ValueError(f"mean_abs_difference compares curves of one shape, got {curve.shape} and {other.shape}")
    return float(np.mean(np.abs(curve - other)))


def mean_spread(rows: Sequence[Sequence[float]]) -> float:
    """How much curves move between settings: max - min over the rows, averaged over the columns.

    `rows[i][j]`: curve i (e.g. one training-set size) at point j (e.g. one β).
    """
    array = np.asarray(rows, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"mean_spread needs a non-empty (curves, points) table, got shape {array.shape}")
    return float(np.mean(array.max(axis=0) - array.min(axis=0)))


def closer_to_monotone(shape: Mapping, reference: Mapping) -> bool:
    """A curve is at least as close to monotone as a reference curve: its small-β rise above its
    minimum (`minimum_shape(...)["rise"]`) is no larger than the reference's."""
    return bool(shape["rise"] <= reference["rise"])


def majority(flags: Sequence[bool]) -> bool:
    """More than half of the flags hold (False for none): "on most data sets"."""
    flags = [bool(flag) for flag in flags]
    return bool(flags) and sum(flags) > len(flags) / 2


def _values_at(betas: Sequence[float], values: Sequence[float], beta: float) -> float:
    betas = np.asarray(betas, dtype=np.float64)
    matches = np.flatnonzero(betas == beta)
    if matches.size == 0:
        raise ValueError(f"β = {beta:g} is not on the grid {betas.tolist()}")
    return float(np.asarray(values, dtype=np.float64)[matches[0]])


def saturates_then_falls(betas: Sequence[float], values: Sequence[float], ceiling: float, fraction: float, *,
                         small_beta: float = 0.1) -> bool:
    """Paper C's Fig. 8 shape of I_q[x; z] over β: at least `fraction` of its `ceiling` (log N) at every
    β <= `small_beta`, and lower at the largest β than at β = 1 (it falls for β > 1)."""
    betas_array = np.asarray(betas, dtype=np.float64)
    values_array = np.asarray(values, dtype=np.float64)
    small = betas_array <= small_beta
    saturated = bool(np.all(values_array[small] >= fraction * ceiling))
    largest = float(values_array[int(np.argmax(betas_array))])
    return bool(saturated and largest < _values_at(betas, values, 1.0))


def share_at_most(betas: Sequence[float], part: Sequence[float], whole: Sequence[float], fraction: float, *,
                  above: float) -> bool:
    """`part` is at most `fraction` of `whole` at every β > `above` (e.g. marginal KL vs rate for β > 1)."""
    betas = np.asarray(betas, dtype=np.float64)
    part = np.asarray(part, dtype=np.float64)
    whole = np.asarray(whole, dtype=np.float64)
    selected = betas > above
    return bool(np.all(part[selected] <= fraction * whole[selected]))


def falls_as_beta_rises(betas: Sequence[float], values: Sequence[float], at: Sequence[float]) -> bool:
    """The values at the listed β (taken in increasing β) are strictly decreasing; False when a listed
    β is not on the grid (e.g. the smoke profile's short grid)."""
    grid = {float(beta) for beta in betas}
    points = sorted(float(beta) for beta in at)
    if not set(points) <= grid:
        return False
    return strictly_decreasing([_values_at(betas, values, beta) for beta in points])


def worst_noise_ratio(differences: Sequence[float], noise: Sequence[float], *, floor: float = 1e-9) -> float:
    """max over quantities of difference / noise sd (the sd floored at `floor`, so a zero spread gives a
    large ratio instead of a division by zero)."""
    differences = np.asarray(differences, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if differences.shape != noise.shape or differences.size == 0:
        raise ValueError(f"worst_noise_ratio needs one noise sd per difference, got {differences.shape} and {noise.shape}")
    return float(max(difference / max(sd, floor) for difference, sd in zip(differences.tolist(), noise.tolist())))
