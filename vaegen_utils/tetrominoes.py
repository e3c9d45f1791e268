"""Paper C's Tetrominoes data set and its four kinds of train/test split.

What this module is
-------------------
Paper C (Bozkurt et al., AISTATS 2021, §4.1) trains VAEs on 163,840 procedurally generated 32x32
colour images of a J tetromino with five i.i.d. continuous factors (rotation, hue, scale, x, y),
drawn as a stratified sample; §4.2 defines four kinds of train/test split (random 50/50,
checkerboard, constant density, constant volume). This module re-creates that data from the facts
of the public generator `neu-pml/tetrominoes` (`datasets/tetrominoes.py`, class `Tetrominoes`,
`stratified_uniform`, `checkerboard_pattern_5d`; paper C Secs. 4.1-4.2) in our own numpy code
(no opencv):

- `generate_tetrominoes(seed)` -> `TetrominoData` (uint8 images, factors, strata);
- `load_tetrominoes(seed)` -> `TetrominoDataset` (an `ImageDataset` with factors), generated once
  and cached in `data_dir()/tetrominoes/seed<seed>.npz` with a SHA-256 of the arrays
  (`vaegen_utils.checked_arrays`; `load_tetromino_data(seed)`: the same cache as uint8
  `TetrominoData`);
- `random_split`, `checkerboard_split`, `constant_volume_split`, `constant_density_split` and the
  dispatcher `make_split(name, factors, seed)` ("random", "checkerboard", "cv-16k", "cd-16k", ...);
Nearest-neighbour distances between a split's test and training images (paper C §4.4-4.5 compare
splits by them) are in the generic `vaegen_utils.neighbours`.

Factors, ranges and strata (the generator's `mode='id'/'ood'` settings, seed 1)
-------------------------------------------------------------------------------
| column | factor | range | strata | unit |
|---|---|---|---|---|
| 0 | angle | [0, 337.5) | 16 | degrees, counter-clockwise on screen |
| 1 | hue | [0, 0.875) | 8 | HSV hue as a fraction of the colour circle |
| 2 | scale | [2, 5) | 5 | pixels per J cell (the J is 4 cells) |
| 3 | x | [8, 23) | 16 | pixels (column of the J's centre) |
| 4 | y | [8, 23) | 16 | pixels (row of the J's centre) |

Each range is cut into equal bins and every one of the 16*8*5*16*16 = 163,840 strata holds exactly
one uniform draw (the generator's `stratified_uniform`). The ranges are documented choices:
- angle: paper C §4.1 says "[0.0, 360.0]", but the generator uses `[0, 360*(1 - 1/16)]` in
  continuous mode, so angles cover [0, 337.5) (bins of 21.09 degrees) and the wedge
  [337.5, 360) never occurs. We follow the generator: that is the data the paper trained on.
- hue: `[0, 1 - 1/8]` = [0, 0.875) (paper: "[0.0, 0.875]"); no wrap-around from magenta to red.
- x, y: the generator's `[2*5 - 2, size - 2*5 + 1]` = [8, 23) for 32x32 (the paper's "adaptive
  range"). It is not quite tight: the J reaches 1.804 cells = 9.02 px from its centre, so a large J
  near the edge of that range can stick out of the frame by up to 0.55 px and be clipped
  (`frame_overhang` computes this exactly; we keep the generator's range).
The ranges do not change with `strata` (small strata are for tests); x and y follow `image_size`.

Rendering (the generator's `get_data_by_label`, reproduced)
-----------------------------------------------------------
The generator draws a J of 100-px cells on a 300x200 canvas (cells: the whole right column plus
the bottom-left cell), maps it with `cv2.warpAffine` onto a 512x512 canvas (16x the output) with the
matrix `T(16(x+0.5), 16(y+0.5)) @ (scale*0.16) R(angle) @ T(-100, -150)`, R = [[cos, sin],
[-sin, cos]] in (column, row) coordinates, and box-averages 16x16 blocks down to 32x32
(`cv2.resize(..., INTER_AREA)`). `warpAffine` treats INTER_AREA as bilinear, whose ramp is one
source pixel = 0.01 cell wide, so each output pixel is in effect the fraction of a regular 16x16
grid of sample points that falls inside the J. In output-pixel coordinates (pixel i spans
[i, i+1), rows downwards) this means:
- the J's rotation centre is at (x + 0.5 + 1/32, y + 0.5 + 1/32): the 512-canvas pixel centres
  are integers, so its point 16(x + 0.5) lies at (16(x + 0.5) + 0.5) / 16;
- in the J's own frame (cell units, a to the right, b downwards, origin at the rotation centre)
  the J is the right column a in [0, 1), b in [-1.5, 1.5) plus the bottom-left cell a in [-1, 0),
  b in [0.5, 1.5), all shifted by -0.005 cells (the generator rotates about (100, 150) while the
  canvas's pixel area is centred on (99.5, 149.5));
- a point p of that frame lands at centre + scale * R p, with R above (positive angles turn the J
  counter-clockwise on screen, as cv2.getRotationMatrix2D does).
We sample the same `supersampling` x `supersampling` grid per pixel (default 16 = the generator),
not by testing every point but scanline by scanline: each row of sample points meets each of the
J's two rectangles in one interval, whose sample count is exact integer arithmetic; the counts are
scattered to pixels with `np.bincount` and a running sum (`_coverage`). Cost is O(scanlines): about
8 s for all 163,840 images (numpy, one core). Against the generator's own cv2 images (run once
outside the project) 99.1% of uint8 values agree exactly and the rest differ by <= 7 levels (the
bilinear ramp of `warpAffine`); s = 16 vs s = 64 differ by <= 8 levels at edge pixels.
Colour: HSV with H = hue, S = 1, V = coverage, i.e. RGB = coverage * rgb(hue), black background;
stored as uint8 k = round(255 * RGB) (the project's k/255 convention; the generator kept float32,
so this rounding, < 0.5/255, is one more difference from its data).

Splits (paper C §4.2)
------------------------------------
Every split function is a pure function of the factors and/or (n, seed) and returns a `Split`
(a named tuple of sorted int64 `train_indices`, `test_indices`, disjoint, together covering the
points they were built from).
- `random_split(n, seed)`: the generator's `mode='id'` split, `np.random.permutation(n) < n/2`
  drawn from the same seeded stream right after the factors, so for seed 1 it is the generator's
  81,920/81,920 partition bit for bit.
- `constant_volume_split(n, n_train, seed)`: train = {i: perm[i] < n_train} with the same
  permutation, so CV sets are nested and CV(81,920) is the random split (paper: "CV(82k/82k)").
  The public `generate_tetromino.py <dir> 0.1 ...` instead builds ratio data sets with
  `Tetrominoes(train_ratio=r)` without `mode='id'`, i.e. with other default factor ranges; we follow
  the paper's definition (a random subset of the same data set).
- `checkerboard_split(factors)`: each factor range halved at the generator's
  width (high + 1e-9 - low) / 2, 2^5 cells, train = even sum of half-indices. Every test cell's five
  face-neighbours are training cells. Not exactly 50/50: the scale midpoint 3.5 cuts the middle
  scale stratum [3.2, 3.8), so its 32,768 points fall on either side by chance; seed 1 gives
  82,021 train / 81,819 test (the generator's logic gives the same numbers).
- `constant_density_split(factors, n_train, seed)`: the random split's train and test parts both
  cropped to one centred box whose side along every factor is ratio^(1/5) of the range (the
  generator's `CroppedTetrominoes(dataset, ratio)` in neu-pml/tetrominoes), so the density
  of points stays that of the full set and the volume fraction is `ratio`. By default the box is
  sized so that the training part holds exactly `n_train` points (ratio ~ n_train / 81,920); with
  `exact_size=False` ratio = n_train / 81,920 exactly and the size is approximate. The test part is
  the random split's test points in the same box (about as many as the training points).
  UNVERIFIED: which split the paper cropped and how it chose the ratios.
- `PAPER_TRAIN_SIZES`: "8k" ... "65k" = k x 8,192 (8,192 ... 65,536). An inference from paper C §4.2:
  the paper's CV(16k/147k) is 16,384 + 147,456, and 8,192 * {1..8} matches every listed size.

Randomness
----------
`np.random.RandomState(seed)`: an explicit generator object (never the global state). Not
`np.random.Generator`, on purpose: the generator seeds the legacy stream (`np.random.seed(1)`), so
only RandomState reproduces its factor values and its split, and NumPy keeps RandomState's stream
frozen across versions (NEP 19) whereas Generator streams may change.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vaegen_utils import paths
from vaegen_utils.checked_arrays import read_checked_npz, write_checked_npz
from vaegen_utils.checks import check_int
from vaegen_utils.data import ImageDataset

__all__ = [
    "FACTOR_NAMES",
    "PAPER_STRATA",
    "PAPER_IMAGE_SIZE",
    "PAPER_SEED",
    "PAPER_NUM_IMAGES",
    "PAPER_TRAIN_SIZES",
    "SPLIT_NAMES",
    "DEFAULT_SUPERSAMPLING",
    "TetrominoData",
    "TetrominoDataset",
    "Split",
    "DensityBox",
    "factor_ranges",
    "sample_factors",
    "render_tetrominoes",
    "hue_to_rgb",
    "tetromino_vertices",
    "frame_overhang",
    "generate_tetrominoes",
    "load_tetrominoes",
    "load_tetromino_data",
    "cache_path",
    "random_split",
    "constant_volume_split",
    "checkerboard_cells",
    "checkerboard_split",
    "constant_density_box",
    "constant_density_split",
    "make_split",
]

logger = logging.getLogger(__name__)

FACTOR_NAMES = ("angle", "hue", "scale", "x", "y")
NUM_FACTORS = len(FACTOR_NAMES)
PAPER_STRATA = (16, 8, 5, 16, 16)  # bins per factor, in FACTOR_NAMES order
PAPER_IMAGE_SIZE = 32
PAPER_SEED = 1  # the generator fixes seed=1 in mode 'id' and 'ood'
PAPER_NUM_IMAGES = math.prod(PAPER_STRATA)  # 163,840
NUM_CHANNELS = 3
DEFAULT_SUPERSAMPLING = 16  # the generator's 16x canvas; see the module docstring

# An inference from paper C §4.2: the listed sizes are k * 8,192.
PAPER_TRAIN_SIZES: dict[str, int] = {
    "8k": 8192,
    "16k": 16384,
    "25k": 24576,
    "33k": 32768,
    "41k": 40960,
    "49k": 49152,
    "57k": 57344,
    "65k": 65536,
}
SPLIT_NAMES = (
    "random",
    "checkerboard",
    *(f"cv-{size}" for size in PAPER_TRAIN_SIZES),
    *(f"cd-{size}" for size in PAPER_TRAIN_SIZES),
)

# The generator's factor limits for 32x32 (datasets/tetrominoes.py, mode 'id'/'ood').
ANGLE_RANGE = (0.0, 360.0 * (1 - 1 / 16))  # [0, 337.5): 360*(1 - 1/num_angles)
HUE_RANGE = (0.0, 1 - 1 / 8)  # [0, 0.875): 1 - 1/num_colors
SCALE_RANGE = (2.0, 5.0)
MIN_IMAGE_SIZE = 20  # below this the generator's position range [8, size - 9) is nearly empty
MAX_IMAGE_SIZE = 256

# The J in its own frame, in cells: a to the right, b downwards, origin at the rotation centre.
# The generator rotates about (100, 150) of a 200x300 canvas whose pixel area spans
# [-0.5, 199.5] x [-0.5, 299.5]: the J sits 0.5 source px = 0.005 cell up-left of that centre.
SOURCE_PIXEL_OFFSET = -0.005
J_COLUMN_A = (0.0 + SOURCE_PIXEL_OFFSET, 1.0 + SOURCE_PIXEL_OFFSET)  # right column: a range
J_COLUMN_B = (-1.5 + SOURCE_PIXEL_OFFSET, 1.5 + SOURCE_PIXEL_OFFSET)  # right column: b range
J_FOOT_A = (-1.0 + SOURCE_PIXEL_OFFSET, 0.0 + SOURCE_PIXEL_OFFSET)  # bottom-left cell: a range
J_FOOT_B = (0.5 + SOURCE_PIXEL_OFFSET, 1.5 + SOURCE_PIXEL_OFFSET)  # bottom-left cell: b range
J_VERTICES = np.array(  # (6, 2): the J's outline, (a, b)
    [
        (J_COLUMN_A[0], J_COLUMN_B[0]),
        (J_COLUMN_A[1], J_COLUMN_B[0]),
        (J_COLUMN_A[1], J_COLUMN_B[1]),
        (J_FOOT_A[0], J_FOOT_B[1]),
        (J_FOOT_A[0], J_FOOT_B[0]),
        (J_COLUMN_A[0], J_FOOT_B[0]),
    ]
)
J_RADIUS_CELLS = float(np.max(np.hypot(J_VERTICES[:, 0], J_VERTICES[:, 1])))  # 1.8042
J_AREA_CELLS = 4.0
# The generator's centre 16(x + 0.5) on the 16x canvas, whose pixel centres are integers.
CENTRE_OFFSET_PIXELS = 0.5 + 0.5 / 16
# cos or sin exactly 0 (angle 0) would make an edge parallel to the scanlines; nudging it by
# this much keeps every crossing finite and moves the J by < 1e-10 px.
MIN_ABS_DIRECTION = 1e-12

# checkerboard_pattern_5d's half width (high + 1e-9 - low) / 2, kept for identical cells.
CHECKERBOARD_EPSILON = 1e-9

CACHE_FORMAT_VERSION = 2  # 2: written by vaegen_utils.checked_arrays
RENDER_VERSION = 1  # bump when the rendering changes: cached files are then rebuilt
RENDER_CHUNK_SIZE = 256  # images per vectorised chunk (all sizes 128-1024 run at the same speed)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    # RandomState takes seeds in [0, 2**32).
    return check_int("seed", seed, minimum=0, maximum=2**32 - 1)


def _check_strata(strata: Any) -> tuple[int, ...]:
    try:
        values = tuple(strata)
    except TypeError:
        raise ValueError(
            f"strata must be {NUM_FACTORS} bin counts ({', '.join(FACTOR_NAMES)}), got {strata!r}"
        ) from None
    if len(values) != NUM_FACTORS:
        raise ValueError(
            f"strata must hold {NUM_FACTORS} bin counts, one per factor "
            f"({', '.join(FACTOR_NAMES)}); "
            f"got {len(values)}: {values!r}. The paper's are {PAPER_STRATA}."
        )
    return tuple(
        check_int(f"strata[{name}]", value, minimum=1) for name, value in zip(FACTOR_NAMES, values)
    )


def _check_image_size(image_size: Any) -> int:
    return check_int("image_size", image_size, minimum=MIN_IMAGE_SIZE, maximum=MAX_IMAGE_SIZE)


def _check_supersampling(supersampling: Any) -> int:
    return check_int("supersampling", supersampling, minimum=1, maximum=256)


def _as_factor_array(factors: Any) -> np.ndarray:
    """Factors (N, 5) as float64 numpy (accepts numpy arrays and CPU torch tensors)."""
    if isinstance(factors, torch.Tensor):
        factors = factors.detach().cpu().numpy()
    array = np.asarray(factors, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != NUM_FACTORS:
        raise ValueError(
            f"factors must have shape (N, {NUM_FACTORS}) with columns {FACTOR_NAMES}, "
            f"got {array.shape}; pass TetrominoData.factors or TetrominoDataset.factors"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("factors contain NaN or infinity")
    return array


# --------------------------------------------------------------------------------------------
# Factors
# --------------------------------------------------------------------------------------------


def factor_ranges(image_size: int = PAPER_IMAGE_SIZE) -> np.ndarray:
    """(5, 2) array of [low, high) per factor in FACTOR_NAMES order (module docstring table).

    x and y follow the generator's `[2*5 - 2, image_size - 2*5 + 1]`: [8, 23) for 32x32.
    """
    image_size = _check_image_size(image_size)
    position = (2 * SCALE_RANGE[1] - 2, image_size - 2 * SCALE_RANGE[1] + 1)
    return np.array([ANGLE_RANGE, HUE_RANGE, SCALE_RANGE, position, position], dtype=np.float64)


def sample_factors(
    seed: int = PAPER_SEED,
    *,
    strata: Sequence[int] = PAPER_STRATA,
    image_size: int = PAPER_IMAGE_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """The stratified sample: one uniform draw per stratum. Returns (factors, strata_index).

    factors: float64 `(N, 5)` (angle, hue, scale, x, y); strata_index: int64 `(N, 5)`, the bin of
    each factor. N = prod(strata). Bit for bit the generator's `stratified_uniform` after
    `np.random.seed(seed)`: bin lows `np.linspace(low, high, n, endpoint=False)`, widths
    (high - low) / n, value = low_bin + u * width with u from `RandomState(seed).rand(N, 5)`, and
    the generator's row order, which comes from `np.meshgrid`'s default 'xy' indexing: rows run
    lexicographically over (hue bin, angle bin, scale bin, x bin, y bin).
    """
    seed = _check_seed(seed)
    strata = _check_strata(strata)
    ranges = factor_ranges(image_size)
    bin_lows = [
        np.linspace(low, high, count, endpoint=False) for (low, high), count in zip(ranges, strata)
    ]
    widths = np.array(
        [[(high - low) / count for (low, high), count in zip(ranges, strata)]]
    )  # (1, 5)
    # meshgrid(angle, hue, scale, x, y) with 'xy' indexing swaps the first two axes.
    generator_axes = (strata[1], strata[0], *strata[2:])
    bins = np.indices(generator_axes).reshape(NUM_FACTORS, -1).T  # (N, 5): hue, angle, scale, x, y
    bins = bins[:, [1, 0, 2, 3, 4]].astype(np.int64)  # (N, 5) in FACTOR_NAMES order
    borders = np.stack([bin_lows[k][bins[:, k]] for k in range(NUM_FACTORS)], axis=-1)  # (N, 5)
    random_state = np.random.RandomState(seed)
    factors = borders + random_state.rand(*borders.shape) * widths
    return factors, bins


# --------------------------------------------------------------------------------------------
# Geometry and rendering
# --------------------------------------------------------------------------------------------


def _centre_and_direction(factors: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre (u, v) in pixel coordinates, and cos/sin of the angle, each (N,)."""
    radians = np.deg2rad(factors[:, 0])
    return (
        factors[:, 3] + CENTRE_OFFSET_PIXELS,
        factors[:, 4] + CENTRE_OFFSET_PIXELS,
        np.cos(radians),
        np.sin(radians),
    )


def tetromino_vertices(factors: Any) -> np.ndarray:
    """The J's outline in pixel coordinates: float64 `(N, 6, 2)` of (column u, row v).

    A point (a, b) of the J's frame lands at centre + scale * (cos a + sin b, -sin a + cos b).
    """
    factors = _as_factor_array(factors)
    centre_u, centre_v, cos, sin = _centre_and_direction(factors)
    scale = factors[:, 2:3]  # (N, 1)
    a, b = J_VERTICES[:, 0], J_VERTICES[:, 1]  # (6,)
    u = centre_u[:, None] + scale * (cos[:, None] * a + sin[:, None] * b)  # (N, 6)
    v = centre_v[:, None] + scale * (-sin[:, None] * a + cos[:, None] * b)  # (N, 6)
    return np.stack([u, v], axis=-1)


def frame_overhang(factors: Any, image_size: int = PAPER_IMAGE_SIZE) -> np.ndarray:
    """How far (pixels) each J reaches beyond the frame [0, image_size)^2: float64 `(N,)`.

    Positive values mean that part of the J is clipped. With the generator's ranges the worst case
    is 0.55 px (x or y near 23, scale near 5, a far corner pointing outwards).
    """
    image_size = _check_image_size(image_size)
    vertices = tetromino_vertices(factors)  # (N, 6, 2)
    below = -vertices.min(axis=1)  # (N, 2): how far left of / above 0
    above = vertices.max(axis=1) - image_size  # (N, 2)
    return np.maximum(below, above).max(axis=1)


def hue_to_rgb(hue: Any) -> np.ndarray:
    """Fully saturated, full-value RGB of hue in [0, 1): float64 `(N, 3)` in [0, 1].

    HSV -> RGB with S = V = 1 (the formula of cv2.COLOR_HSV2RGB and colorsys): piecewise linear.
    """
    six_h = 6.0 * np.asarray(hue, dtype=np.float64)[..., None]  # (N, 1)
    red = np.abs(six_h - 3.0) - 1.0
    green = 2.0 - np.abs(six_h - 2.0)
    blue = 2.0 - np.abs(six_h - 4.0)
    return np.clip(np.concatenate([red, green, blue], axis=-1), 0.0, 1.0)


def _slab_constants(levels: tuple[float, float], scale: np.ndarray, direction: np.ndarray):
    """(start, end) constants of one slab's crossings per image, ordered by direction's sign."""
    first = levels[0] * scale / direction
    second = levels[1] * scale / direction
    return np.minimum(first, second), np.maximum(first, second)


def _coverage(factors: np.ndarray, *, image_size: int, supersampling: int) -> np.ndarray:
    """Fraction of each pixel's s x s sample points inside the J: float64 `(n, H, W)`.

    Sample points sit at ((k + 0.5) / s) in pixel coordinates, k = 0 .. s * size - 1, in both
    directions. Along a scanline (a row of sample points, v fixed) the J's frame coordinates are
    a = (cos du - sin dv) / scale and b = (sin du + cos dv) / scale (du, dv: offsets from the
    centre), so each of the J's two rectangles {a in [a0, a1), b in [b0, b1)} meets it in one
    interval of u. In sample units sigma = s * u - 0.5, a sample k lies in [l, r) exactly when
    ceil(sigma(l)) <= k < ceil(sigma(r)). An interval [K0, K1) of sample indices adds
    (s - K0 mod s) to pixel K0 // s and (K0 mod s) to the next pixel (and minus that for K1); a
    running sum along the row then gives every pixel its count. Only the rows the J can reach are
    visited (it lies within J_RADIUS_CELLS * scale of its centre).
    """
    s, size = supersampling, image_size
    n = factors.shape[0]
    centre_u, centre_v, cos, sin = _centre_and_direction(factors)
    cos = np.where(np.abs(cos) < MIN_ABS_DIRECTION, np.copysign(MIN_ABS_DIRECTION, cos), cos)
    sin = np.where(np.abs(sin) < MIN_ABS_DIRECTION, np.copysign(MIN_ABS_DIRECTION, sin), sin)
    scale = factors[:, 2]

    # The window of pixel rows that can hold part of the J (the same height for the whole chunk).
    radius = J_RADIUS_CELLS * scale  # (n,)
    num_rows = min(size, int(math.floor(2 * J_RADIUS_CELLS * float(scale.max()))) + 2)
    first_row = np.clip(np.floor(centre_v - radius), 0, size - num_rows)  # (n,)
    scanline = np.arange(num_rows * s)  # (L,)
    v = first_row[:, None] + (scanline[None, :] + 0.5) / s  # (n, L) pixel coordinates
    dv = v - centre_v[:, None]  # (n, L)

    # a(u) = a_level  <=>  du = a_level * scale / cos + (sin / cos) dv
    # b(u) = b_level  <=>  du = b_level * scale / sin - (cos / sin) dv
    offset = s * centre_u - 0.5  # (n,): sigma = offset + s * du
    a_slope = (s * sin / cos)[:, None] * dv  # (n, L)
    b_slope = (-s * cos / sin)[:, None] * dv  # (n, L)

    # Flat index of (image, pixel row, column 0) in an accumulator of (n, H, W + 2): (n, L).
    pixel_row = first_row.astype(np.int64)[:, None] + scanline // s
    row_start = (np.arange(n)[:, None] * size + pixel_row) * (size + 2)
    indices, weights = [], []
    for a_levels, b_levels in ((J_COLUMN_A, J_COLUMN_B), (J_FOOT_A, J_FOOT_B)):
        a_start, a_end = _slab_constants(a_levels, scale, cos)
        b_start, b_end = _slab_constants(b_levels, scale, sin)
        start = np.maximum(
            a_slope + (offset + s * a_start)[:, None], b_slope + (offset + s * b_start)[:, None]
        )
        end = np.minimum(
            a_slope + (offset + s * a_end)[:, None], b_slope + (offset + s * b_end)[:, None]
        )
        np.maximum(end, start, out=end)  # an empty interval counts no samples
        for sigma, sign in ((start, 1.0), (end, -1.0)):
            first_sample = np.clip(np.ceil(sigma), 0, size * s).astype(np.int64)  # (n, L)
            pixel = first_sample // s
            remainder = first_sample - pixel * s
            flat = (row_start + pixel).ravel()
            indices += [flat, flat + 1]
            weights += [(sign * (s - remainder)).ravel(), (sign * remainder).ravel()]
    accumulator = np.bincount(
        np.concatenate(indices), weights=np.concatenate(weights), minlength=n * size * (size + 2)
    )
    counts = np.cumsum(accumulator.reshape(n, size, size + 2), axis=2)[:, :, :size]  # (n, H, W)
    return np.clip(counts, 0, s * s) / (s * s)


def render_tetrominoes(
    factors: Any,
    *,
    image_size: int = PAPER_IMAGE_SIZE,
    supersampling: int = DEFAULT_SUPERSAMPLING,
    chunk_size: int = RENDER_CHUNK_SIZE,
) -> np.ndarray:
    """Render one J per factor row: uint8 `(N, 3, image_size, image_size)`, RGB, channel-first.

    Pixel value round(255 * coverage * rgb(hue)); coverage = fraction of the pixel's
    `supersampling`^2 sample points inside the J (module docstring, "Rendering").
    """
    factors = _as_factor_array(factors)
    image_size = _check_image_size(image_size)
    supersampling = _check_supersampling(supersampling)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    if np.any(factors[:, 2] <= 0):
        raise ValueError("scale (column 2 of factors) must be positive")
    images = np.empty((len(factors), NUM_CHANNELS, image_size, image_size), dtype=np.uint8)
    for begin in range(0, len(factors), chunk_size):
        chunk = factors[begin : begin + chunk_size]
        coverage = _coverage(chunk, image_size=image_size, supersampling=supersampling)  # (n, H, W)
        colour = hue_to_rgb(chunk[:, 1])  # (n, 3)
        values = coverage[:, None, :, :] * colour[:, :, None, None] * 255.0  # (n, 3, H, W)
        images[begin : begin + len(chunk)] = np.rint(values).astype(np.uint8)
    return images


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TetrominoData:
    """The generated data set as numpy arrays (what the cache stores).

    images: uint8 `(N, 3, H, W)`; factors: float64 `(N, 5)` (columns FACTOR_NAMES: angle in
    degrees, hue in [0, 1), scale in pixels per cell, x, y in pixels); strata: int64 `(N, 5)`, the
    bin of each factor. Rows are in the generator's order (module docstring).
    """

    images: np.ndarray
    factors: np.ndarray
    strata: np.ndarray
    seed: int
    strata_shape: tuple[int, ...]
    image_size: int
    supersampling: int

    def __len__(self) -> int:
        return len(self.factors)

    def __repr__(self) -> str:
        return (
            f"TetrominoData(n={len(self)}, seed={self.seed}, strata={self.strata_shape}, "
            f"image_size={self.image_size}, supersampling={self.supersampling})"
        )

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    @property
    def ranges(self) -> np.ndarray:
        """(5, 2) [low, high) per factor."""
        return factor_ranges(self.image_size)

    @property
    def labels(self) -> np.ndarray:
        """int64 `(N,)`: each point's stratum as one number (row-major over FACTOR_NAMES bins)."""
        return np.ravel_multi_index(tuple(self.strata.T), self.strata_shape).astype(np.int64)

    def factor(self, name: str) -> np.ndarray:
        """One factor column by name, e.g. data.factor('angle')."""
        return self.factors[:, _factor_column(name)]


def _factor_column(name: str) -> int:
    if name not in FACTOR_NAMES:
        raise ValueError(f"unknown factor {name!r}; choose one of {', '.join(FACTOR_NAMES)}")
    return FACTOR_NAMES.index(name)


def generate_tetrominoes(
    seed: int = PAPER_SEED,
    *,
    strata: Sequence[int] = PAPER_STRATA,
    image_size: int = PAPER_IMAGE_SIZE,
    supersampling: int = DEFAULT_SUPERSAMPLING,
) -> TetrominoData:
    """Draw the stratified factors and render every image (deterministic in `seed`).

    With the defaults this is paper C's data set: 163,840 images of 3x32x32 (about 8 s, one
    core). See the module docstring for ranges, geometry and colour.
    """
    strata = _check_strata(strata)
    image_size = _check_image_size(image_size)
    supersampling = _check_supersampling(supersampling)
    factors, strata_index = sample_factors(seed, strata=strata, image_size=image_size)
    images = render_tetrominoes(factors, image_size=image_size, supersampling=supersampling)
    return TetrominoData(
        images=images,
        factors=factors,
        strata=strata_index,
        seed=seed,
        strata_shape=strata,
        image_size=image_size,
        supersampling=supersampling,
    )


@dataclass(frozen=True, eq=False, repr=False)
class TetrominoDataset(ImageDataset):
    """An `ImageDataset` (float32 images k/255, likelihood_hint 'bernoulli') with its factors.

    Extra fields: `factors` float64 `(N, 5)` (columns FACTOR_NAMES), `strata` int64 `(N, 5)`,
    `seed`. `labels` hold each point's stratum number. `indices` (as in ImageDataset) are the
    positions in the full set after `subset`. Paper C uses a Bernoulli decoder on these [0, 1]
    values (§4.3, footnote 1), hence the hint.
    """

    factors: torch.Tensor | None = None
    strata: torch.Tensor | None = None
    seed: int = PAPER_SEED

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factors is None or self.strata is None:
            raise ValueError(
                "TetrominoDataset needs factors and strata; build it with load_tetrominoes()"
            )
        expected_shape = (len(self.images), NUM_FACTORS)
        if self.factors.dtype != torch.float64 or tuple(self.factors.shape) != expected_shape:
            raise ValueError(
                f"factors must be float64 ({len(self.images)}, {NUM_FACTORS}), got "
                f"{self.factors.dtype} {tuple(self.factors.shape)}"
            )
        if self.strata.dtype != torch.int64 or tuple(self.strata.shape) != expected_shape:
            raise ValueError(
                f"strata must be int64 ({len(self.images)}, {NUM_FACTORS}), got "
                f"{self.strata.dtype} {tuple(self.strata.shape)}"
            )

    def __repr__(self) -> str:
        part = "all points" if self.indices is None else f"subset of {len(self.indices)}"
        return (
            f"TetrominoDataset(split={self.split!r}, n={len(self)}, seed={self.seed}, "
            f"data_shape={self.data_shape}, likelihood_hint={self.likelihood_hint!r}, {part})"
        )

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    def factor(self, name: str) -> torch.Tensor:
        """One factor column by name, e.g. dataset.factor('scale')."""
        return self.factors[:, _factor_column(name)]

    def subset(self, indices: Any, split: str) -> TetrominoDataset:
        """The points at `indices` (e.g. `Split.train_indices`) as a data set named `split`.

        The images are copied (advanced indexing); `indices` of the result are positions in the
        full set, also when this data set is itself a subset.
        """
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        if index.dim() != 1:
            raise ValueError(f"indices must be 1-d, got shape {tuple(index.shape)}")
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise ValueError(
                f"indices must lie in [0, {len(self)}), "
                f"got [{int(index.min())}, {int(index.max())}]"
            )
        positions = index if self.indices is None else self.indices[index]
        return TetrominoDataset(
            images=self.images[index],
            labels=self.labels[index],
            name=self.name,
            split=split,
            data_shape=self.data_shape,
            likelihood_hint=self.likelihood_hint,
            indices=positions,
            factors=self.factors[index],
            strata=self.strata[index],
            seed=self.seed,
        )


def cache_path(
    seed: int = PAPER_SEED,
    *,
    strata: Sequence[int] = PAPER_STRATA,
    image_size: int = PAPER_IMAGE_SIZE,
    supersampling: int = DEFAULT_SUPERSAMPLING,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """`<data_dir>/tetrominoes/seed<seed>.npz` for the paper's settings, a longer name otherwise."""
    seed = _check_seed(seed)
    settings = (
        _check_strata(strata),
        _check_image_size(image_size),
        _check_supersampling(supersampling),
    )
    folder = Path(data_dir).expanduser() if data_dir is not None else paths.data_dir()
    name = f"seed{seed}"
    if settings != (PAPER_STRATA, PAPER_IMAGE_SIZE, DEFAULT_SUPERSAMPLING):
        name += f"_strata{'x'.join(map(str, strata))}_size{image_size}_ss{supersampling}"
    return folder / "tetrominoes" / f"{name}.npz"


def load_tetrominoes(
    seed: int = PAPER_SEED,
    *,
    strata: Sequence[int] = PAPER_STRATA,
    image_size: int = PAPER_IMAGE_SIZE,
    supersampling: int = DEFAULT_SUPERSAMPLING,
    data_dir: str | os.PathLike | None = None,
) -> TetrominoDataset:
    """The whole data set (split 'all') as float32 images k/255 `(N, 3, H, W)` plus factors.

    Generated once and cached at `cache_path(...)` (uint8 images, factors, strata, the settings
    and the SHA-256 of all of them); every load checks the hash and the settings. A corrupt or
    outdated cache file is rebuilt with a warning. Split it with `make_split` and
    `TetrominoDataset.subset`. Memory: 2 GB of float32 for the paper's 163,840 images.
    """
    data = load_tetromino_data(
        seed, strata=strata, image_size=image_size, supersampling=supersampling, data_dir=data_dir
    )
    # float32 division is correctly rounded, so round(x * 255) recovers k exactly.
    images = torch.from_numpy(data.images).to(torch.float32).div_(255.0)
    return TetrominoDataset(
        images=images,
        labels=torch.from_numpy(data.labels),
        name="tetrominoes",
        split="all",
        data_shape=(NUM_CHANNELS, data.image_size, data.image_size),
        likelihood_hint="bernoulli",
        factors=torch.from_numpy(data.factors),
        strata=torch.from_numpy(data.strata),
        seed=data.seed,
    )


def load_tetromino_data(
    seed: int = PAPER_SEED,
    *,
    strata: Sequence[int] = PAPER_STRATA,
    image_size: int = PAPER_IMAGE_SIZE,
    supersampling: int = DEFAULT_SUPERSAMPLING,
    data_dir: str | os.PathLike | None = None,
) -> TetrominoData:
    """The cached data set as uint8 numpy arrays (500 MB instead of 2 GB of float32).

    Same cache and checks as `load_tetrominoes`; for nearest-neighbour distances on uint8 images
    and for figures.
    """
    seed = _check_seed(seed)
    strata = _check_strata(strata)
    image_size = _check_image_size(image_size)
    supersampling = _check_supersampling(supersampling)
    path = cache_path(
        seed, strata=strata, image_size=image_size, supersampling=supersampling, data_dir=data_dir
    )
    settings = {
        "format": CACHE_FORMAT_VERSION,
        "render": RENDER_VERSION,
        "seed": seed,
        "strata": list(strata),
        "image_size": image_size,
        "supersampling": supersampling,
    }
    arrays = read_checked_npz(
        path,
        ("images", "factors", "strata"),
        settings,
        warning="rebuilding the Tetrominoes cache {path}: {reason}",
        stacklevel=2,
    )
    if arrays is not None:
        return TetrominoData(
            **arrays,
            seed=seed,
            strata_shape=strata,
            image_size=image_size,
            supersampling=supersampling,
        )
    logger.info("generating Tetrominoes (seed %d, strata %s) into %s", seed, strata, path)
    data = generate_tetrominoes(
        seed, strata=strata, image_size=image_size, supersampling=supersampling
    )
    write_checked_npz(
        path,
        {"images": data.images, "factors": data.factors, "strata": data.strata},
        settings,
        failure_warning=(
            "could not write the Tetrominoes cache {path} ({error}); "
            "it will be generated again next time"
        ),
        stacklevel=2,
    )
    return data


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


class Split(NamedTuple):
    """Sorted, disjoint int64 index arrays covering the points the split was made from."""

    train_indices: np.ndarray
    test_indices: np.ndarray


def _split_from_mask(train_mask: np.ndarray) -> Split:
    return Split(
        np.flatnonzero(train_mask).astype(np.int64), np.flatnonzero(~train_mask).astype(np.int64)
    )


def _generator_permutation(n: int, seed: int) -> np.ndarray:
    """The generator's split permutation: RandomState(seed) after the (n, 5) factor draws."""
    random_state = np.random.RandomState(seed)
    random_state.random_sample((n, NUM_FACTORS))  # the factors come first in the generator's stream
    return random_state.permutation(n)


def random_split(n: int, seed: int = PAPER_SEED, *, train_fraction: float = 0.5) -> Split:
    """Paper C's "50/50 random split (Default)", a.k.a. CV(82k/82k) (§4.2, split 1).

    The generator's `mode='id'`: train = {i : perm[i] < n * train_fraction}, so the train part has
    ceil(n * train_fraction) points (81,920 of 163,840). For seed 1 and n = 163,840 this is the
    generator's partition exactly (module docstring, "Splits").
    """
    n = check_int("n", n, minimum=2)
    seed = _check_seed(seed)
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(
            f"train_fraction must lie strictly between 0 and 1, got {train_fraction!r}"
        )
    return _split_from_mask(_generator_permutation(n, seed) < n * float(train_fraction))


def constant_volume_split(n: int, n_train: int, seed: int = PAPER_SEED) -> Split:
    """Paper C's "small data, constant volume" CV(n_train / n - n_train) split (§4.2, split 4).

    A random subset of n_train training points drawn without replacement; the test set is the
    rest. Uses the random split's permutation (train = {i : perm[i] < n_train}), so sets are
    nested across sizes and constant_volume_split(n, n // 2, seed) == random_split(n, seed).
    """
    n = check_int("n", n, minimum=2)
    n_train = check_int("n_train", n_train, minimum=1, maximum=n - 1)
    seed = _check_seed(seed)
    return _split_from_mask(_generator_permutation(n, seed) < n_train)


def checkerboard_cells(factors: Any, *, image_size: int = PAPER_IMAGE_SIZE) -> np.ndarray:
    """Half-index (0 or 1) of every factor: int64 `(N, 5)`; cell parity decides the split.

    Half width (high + 1e-9 - low) / 2 as in the generator's `checkerboard_pattern_5d`, so the cuts
    are at angle 168.75, hue 0.4375, scale 3.5, x = y = 15.5 (each + 5e-10).
    """
    factors = _as_factor_array(factors)
    ranges = factor_ranges(image_size)
    low, high = ranges[:, 0], ranges[:, 1]
    outside = (factors < low) | (factors >= high)
    if np.any(outside):
        row, column = np.argwhere(outside)[0]
        raise ValueError(
            f"factor {FACTOR_NAMES[column]} = {factors[row, column]} of point {row} lies outside "
            f"[{low[column]}, {high[column]}) (the ranges for image_size={image_size}); pass the "
            "factors of a generated data set and its image_size"
        )
    half_width = (high + CHECKERBOARD_EPSILON - low) / 2
    return np.floor((factors - low) / half_width).astype(np.int64)


def checkerboard_split(factors: Any, *, image_size: int = PAPER_IMAGE_SIZE) -> Split:
    """Paper C's "large data, checkerboard" split (§4.2, split 2; the generator's `mode='ood'`).

    Each factor range is halved; of the 2^5 cells, those with an even sum of half-indices are
    training cells and the others test cells, so each test cell's five face-neighbours (one factor
    flipped to its other half) are training cells. Sizes: 82,021 / 81,819 for seed 1, not
    81,920 / 81,920, because the scale cut 3.5 splits the middle scale stratum [3.2, 3.8).
    """
    cells = checkerboard_cells(factors, image_size=image_size)
    return _split_from_mask(cells.sum(axis=1) % 2 == 0)


@dataclass(frozen=True)
class DensityBox:
    """A box centred on the factor ranges: [low, high] per factor (closed), float64 `(5,)` each.

    `side_fraction` = the box side / the range along every factor; `volume_fraction` =
    side_fraction^5, the fraction of factor space (and, by stratification, of the points) inside.
    """

    low: np.ndarray
    high: np.ndarray
    side_fraction: float

    @property
    def volume_fraction(self) -> float:
        return self.side_fraction**NUM_FACTORS

    def contains(self, factors: Any) -> np.ndarray:
        """bool `(N,)`: which points lie inside the box."""
        factors = _as_factor_array(factors)
        return np.all((factors >= self.low) & (factors <= self.high), axis=1)


def _normalised_radius(factors: np.ndarray, image_size: int) -> np.ndarray:
    """max over factors of |f - centre| / half-range: the smallest centred box holding a point."""
    ranges = factor_ranges(image_size)
    centre = ranges.mean(axis=1)
    half_range = (ranges[:, 1] - ranges[:, 0]) / 2
    return np.max(np.abs(factors - centre) / half_range, axis=1)


def constant_density_box(
    factors: Any,
    n_train: int,
    seed: int = PAPER_SEED,
    *,
    exact_size: bool = True,
    image_size: int = PAPER_IMAGE_SIZE,
) -> DensityBox:
    """The centred box of `constant_density_split` (see there for the two ways to size it)."""
    factors = _as_factor_array(factors)
    base = random_split(len(factors), seed)
    n_train = check_int("n_train", n_train, minimum=1, maximum=len(base.train_indices))
    ranges = factor_ranges(image_size)
    if exact_size:
        radii = np.sort(_normalised_radius(factors[base.train_indices], image_size))
        inner = radii[n_train - 1]
        outer = radii[n_train] if n_train < len(radii) else 1.0
        if not inner < outer:
            raise ValueError(
                "two training points are equally far from the centre, so no centred box holds "
                f"exactly {n_train} of them; use n_train={n_train + 1} or exact_size=False"
            )
        side_fraction = float(min((inner + outer) / 2, 1.0))
    else:
        side_fraction = float((n_train / len(base.train_indices)) ** (1 / NUM_FACTORS))
    centre = ranges.mean(axis=1)
    half_side = side_fraction * (ranges[:, 1] - ranges[:, 0]) / 2
    return DensityBox(low=centre - half_side, high=centre + half_side, side_fraction=side_fraction)


def constant_density_split(
    factors: Any,
    n_train: int,
    seed: int = PAPER_SEED,
    *,
    exact_size: bool = True,
    image_size: int = PAPER_IMAGE_SIZE,
) -> Split:
    """Paper C's "small data, constant density" CD split (§4.2, split 3).

    Both parts of `random_split(N, seed)` are cropped to one box centred on the factor ranges with
    the same side fraction along every factor (paper C §4.2; the generator's
    `CroppedTetrominoes(dataset, ratio)`, side ratio^(1/5)), so the density of training points
    stays that of the full set while the range shrinks. exact_size=True (default): the box is the
    smallest that holds exactly `n_train` training points (its side lies halfway to the next one),
    so CD and CV sizes match; exact_size=False: ratio = n_train / (the random split's train size),
    the generator's recipe, and the train size is only close to n_train. Test = the random
    split's test points in the box (about n_train of them). Indices refer to the full set; points
    outside the box are in neither part.
    """
    factors = _as_factor_array(factors)
    box = constant_density_box(factors, n_train, seed, exact_size=exact_size, image_size=image_size)
    base = random_split(len(factors), seed)
    inside = box.contains(factors)
    return Split(
        base.train_indices[inside[base.train_indices]], base.test_indices[inside[base.test_indices]]
    )


_SIZED_SPLIT = re.compile(r"^(cv|cd)-(\d+k|\d+)$")


def make_split(
    name: str, factors: Any, seed: int = PAPER_SEED, *, image_size: int = PAPER_IMAGE_SIZE
) -> Split:
    """A split by name: "random", "checkerboard", "cv-<size>" or "cd-<size>".

    <size> is a key of PAPER_TRAIN_SIZES ("8k", "16k", ..., "65k") or a number of training points
    ("cv-16384"). `seed` is the split seed (1 reproduces the generator's random split). See
    SPLIT_NAMES for the paper's splits.
    """
    factors = _as_factor_array(factors)
    if name == "random":
        return random_split(len(factors), seed)
    if name == "checkerboard":
        return checkerboard_split(factors, image_size=image_size)
    match = _SIZED_SPLIT.match(name) if isinstance(name, str) else None
    kind, size = match.groups() if match is not None else (None, "")
    if size in PAPER_TRAIN_SIZES or size.isdigit():
        n_train = PAPER_TRAIN_SIZES[size] if size in PAPER_TRAIN_SIZES else int(size)
        if kind == "cv":
            return constant_volume_split(len(factors), n_train, seed)
        return constant_density_split(factors, n_train, seed, image_size=image_size)
    raise ValueError(
        f"unknown split {name!r}. Use 'random', 'checkerboard', 'cv-<size>' or 'cd-<size>' with "
        f"<size> one of {', '.join(PAPER_TRAIN_SIZES)} or a number of training points "
        "(e.g. 'cv-16384'); "
        f"the paper's splits: {', '.join(SPLIT_NAMES)}"
    )
