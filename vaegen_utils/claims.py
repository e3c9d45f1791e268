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

zhang2022 (paper B)
- `rise_after_minimum`, `ordered`, `nearly_flat`, `dominates`, `reproduces_improvement`.


xiao2024 (paper A)
- `smallest`, `matches_and_beats`, `within_budget` (orderings of the training methods, attack budget).
- `falls_after_peak`, `stays_near_peak` (overfitting vs not, Fig. 2).
- `spearman`, `shrinks_along`, `grows_along`, `rises_then_flattens`, `inverted_u`, `no_decline_at_end`,
  `falls_by`, `worse_by`, `down_up_down` (size sweeps, Figs. 6-8).
- `not_copies` (the diffusion model's memorization check).
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
# zhang2022 (paper B, Figs. 1-2): overfitting curves, orderings of encoders, the official numbers
# ------------------------------------------------------------------------------------------------


def rise_after_minimum(values: Sequence[float]) -> float:
    """How far a curve ends above its lowest point (0 when it ends at its minimum).

    Paper B Fig. 1a: the test BPD's rise from its minimum to the end of training (overfitting).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("rise_after_minimum needs a non-empty curve")
    return float(array[-1] - array.min())


def ordered(curves: Sequence, *, strict: bool = True) -> bool:
    """Each curve lies below the next one at every point: curves[0] < curves[1] < ... (<= if not strict).

    The curves are arrays of one shape (e.g. [C] seed means over checkpoints, or [C][M] per seed),
    compared element by element, e.g. `ordered([optimal, self_consistent, amortized])` for paper B
    Fig. 2's "amortized > self-consistent > optimal inference" in BPD.
    """
    arrays = [np.asarray(curve, dtype=np.float64) for curve in curves]
    if len(arrays) < 2:
        raise ValueError(f"ordered needs at least two curves to compare, got {len(arrays)}")
    if any(array.shape != arrays[0].shape for array in arrays):
        raise ValueError(f"ordered needs curves of one shape, got {[array.shape for array in arrays]}")
    below = np.less if strict else np.less_equal
    return bool(all(np.all(below(lower, upper)) for lower, upper in zip(arrays, arrays[1:])))


def nearly_flat(rise: float, reference_rise: float, fraction: float) -> bool:
    """A curve's rise is at most `fraction` of a reference curve's rise, which must be positive.

    Paper B Fig. 1b: the optimal-inference curve stays nearly flat while the amortized one rises.
    """
    return bool(reference_rise > 0 and rise <= fraction * reference_rise)


def dominates(value: float, other: float, factor: float) -> bool:
    """`value` is positive and at least `factor` times `other`.

    Paper B Fig. 1b: the inference generalization gap against the model's own overfitting.
    """
    return bool(value >= factor * other and value > 0)


def reproduces_improvement(
    baseline: float,
    improved: float,
    improvement: float,
    improvement_sd: float,
    reference_baseline: float,
    reference_improved: float,
    *,
    comparable: bool,
    absolute_tolerance: float,
    relative_floor: float,
    n_sds: float = 2.0,
) -> bool:
    """Does a measured improvement (lower is better, e.g. BPD) reproduce a reference one?

    Always: the per-seed improvement's mean `improvement` exceeds `n_sds` seed sds (`beyond_noise`).
    Comparable settings (the reference's own model and data): both values within `absolute_tolerance`
    (a fraction) of the reference values. Other settings, where absolute values differ: the relative
    improvement at least `relative_floor` times the reference's.
    """
    if not beyond_noise(improvement, improvement_sd, n_sds):
        return False
    if comparable:
        return within_fraction(baseline, reference_baseline, absolute_tolerance) and within_fraction(
            improved, reference_improved, absolute_tolerance
        )
    return bool(
        relative_improvement(baseline, improved)
        >= relative_floor * relative_improvement(reference_baseline, reference_improved)
    )


# xiao2024 (paper A): orderings of the training methods, overfitting curves, size sweeps
# ------------------------------------------------------------------------------------------------


def smallest(values: Mapping) -> object:
    """The key with the smallest value (ties: the first in the mapping's order), e.g. the method with
    the smallest gap in paper A Table 7."""
    if not values:
        raise ValueError("smallest needs at least one value")
    return min(values, key=values.get)


def falls_after_peak(peak: Mapping, last_epoch: int, fraction: float) -> bool:
    """Overfitting as in paper A Fig. 2 (left): a curve summarised by `peak_then_drop` peaks before
    `last_epoch` and falls from its peak by more than `fraction` x |peak| by the end."""
    return bool(peak["drop"] > fraction * abs(peak["peak"]) and peak["peak_epoch"] < last_epoch)


def stays_near_peak(peak: Mapping, fraction: float) -> bool:
    """The opposite verdict for a curve that should keep rising: it ends within `fraction` x |peak| of its peak."""
    return bool(peak["drop"] <= fraction * abs(peak["peak"]))


def within_budget(values, budget: float, slack: float = 1e-6) -> bool:
    """Every value is at most `budget` (+ `slack` for float rounding), e.g. |ε| of an L∞ attack."""
    return bool(all(value <= budget + slack for value in values))


def matches_and_beats(values: Mapping, subject, matched, beaten, tolerance: float) -> bool:
    """values[subject] is at most `tolerance` above values[matched] and strictly below every key in `beaten`."""
    return bool(values[subject] <= values[matched] + tolerance and values[subject] < min(values[key] for key in beaten))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation of two short sequences (ranks by order of appearance, no tie correction; 0 for
    fewer than two points)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of the same length, got {len(x)} and {len(y)}")
    rank_x, rank_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rank_x, rank_y)[0, 1]) if len(x) > 1 else 0.0


def shrinks_along(sizes: Sequence[float], values: Sequence[float], tolerance: float) -> dict:
    """`values` fall along `sizes`: the last is more than `tolerance` below the first and the rank
    correlation is negative. Returns {"spearman", "holds"}."""
    rho = spearman(sizes, values)
    return {"spearman": rho, "holds": bool(values[-1] < values[0] - tolerance and rho < 0)}


def grows_along(sizes: Sequence[float], values: Sequence[float]) -> dict:
    """`values` grow along `sizes`: the last above the first and a positive rank correlation.
    Returns {"spearman", "holds"}."""
    rho = spearman(sizes, values)
    return {"spearman": rho, "holds": bool(values[-1] > values[0] and rho > 0)}


def rises_then_flattens(values: Sequence[float], tolerance: float, flat_fraction: float) -> dict:
    """A score (larger is better) that rises along a sweep and then flattens (paper A Fig. 7a).

    rise = best - first (must exceed `tolerance`, best not first); flattens: the last value is within
    `tolerance` of the best and the last step moves it by less than `flat_fraction` x max(rise,
    tolerance). Returns {"best_index", "rise", "last_step", "rises", "flattens", "holds"}.
    """
    array = np.asarray(values, dtype=np.float64)
    best = int(np.argmax(array))
    rise = float(array[best] - array[0])
    last_step = float(array[-1] - array[-2]) if len(array) > 1 else 0.0
    rises = bool(rise > tolerance and best > 0)
    flattens = bool(array[-1] >= array[best] - tolerance and abs(last_step) < flat_fraction * max(rise, tolerance))
    return {"best_index": best, "rise": rise, "last_step": last_step, "rises": rises, "flattens": flattens,
            "holds": rises and flattens}


def inverted_u(values: Sequence[float], tolerance: float) -> dict:
    """A score (larger is better) with its best strictly inside the sweep and the last value more than
    `tolerance` below it (paper A Fig. 7c: U-shaped negative ELBO). Returns {"peak_index", "decline", "holds"}."""
    array = np.asarray(values, dtype=np.float64)
    peak = int(np.argmax(array))
    decline = float(array[peak] - array[-1])
    return {"peak_index": peak, "decline": decline, "holds": bool(0 < peak < len(array) - 1 and decline > tolerance)}


def no_decline_at_end(values: Sequence[float], tolerance: float) -> dict:
    """The last value of a score (larger is better) is within `tolerance` of its best (Fig. 7d: no decline).
    Returns {"peak_index", "decline", "holds"}."""
    array = np.asarray(values, dtype=np.float64)
    decline = float(array.max() - array[-1])
    return {"peak_index": int(np.argmax(array)), "decline": decline, "holds": bool(decline <= tolerance)}


def falls_by(values: Sequence[float], tolerance: float) -> bool:
    """At least two values and the last more than `tolerance` below the first."""
    return bool(len(values) > 1 and values[-1] < values[0] - tolerance)


def worse_by(pairs: Mapping, tolerance: float) -> list:
    """Keys of `pairs` {key: (baseline, candidate)} (larger is better) where the candidate is more than
    `tolerance` below the baseline."""
    return [key for key, (baseline, candidate) in pairs.items() if candidate < baseline - tolerance]


def down_up_down(losses: Sequence[float], first_leg: int, tolerance: float, descent_fraction: float) -> dict:
    """Paper A Fig. 8's "down, up, down again" of a loss along a path of model sizes.

    The first descent ends at the lowest loss among the first `first_leg` points; the ascent runs from
    there to the highest loss after it; the second descent from that worst point to the end of the path.
    Holds when the first descent and the ascent exceed `tolerance` and the second descent exceeds
    max(tolerance, descent_fraction x ascent). Returns the three amounts and "holds".
    """
    array = np.asarray(losses, dtype=np.float64)
    if not len(array):
        return {"first_descent": 0.0, "ascent": 0.0, "second_descent": 0.0, "holds": False}
    first_min = int(np.argmin(array[:first_leg])) if first_leg else 0
    later_max = first_min + int(np.argmax(array[first_min:]))
    first_descent = float(array[0] - array[first_min])
    ascent = float(array[later_max] - array[first_min])
    second_descent = float(array[later_max] - array[-1])
    holds = bool(first_descent > tolerance and ascent > tolerance and second_descent > max(tolerance, descent_fraction * ascent))
    return {"first_descent": first_descent, "ascent": ascent, "second_descent": second_descent, "holds": holds}


def not_copies(plausible_median: float, test_median: float, near_copy_fraction: float, *, min_ratio: float,
               max_near_copies: float) -> dict:
    """A generative model's samples are new images, not copies of its training set: their median
    distance to the nearest training image is at least `min_ratio` x that of real test images, and at
    most `max_near_copies` of them are nearer than the test images' 1st percentile. Returns {"ratio", "holds"}."""
    ratio = plausible_median / test_median
    return {"ratio": ratio, "holds": bool(ratio >= min_ratio and near_copy_fraction <= max_near_copies)}


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
