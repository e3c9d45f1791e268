"""Tests of vaegen_utils.tetrominoes: factors, rendering, cache, the four splits, NN distances.

Rendering tests use small strata such as (4, 2, 2, 4, 4); full-size properties (163,840 points)
are tested on the factors only, which take milliseconds. Nothing here needs opencv: the public
generator's images enter only through a few moments recorded from it (see REFERENCE_MOMENTS).
"""

from __future__ import annotations

import colorsys
import json
import math
import warnings

import numpy as np
import pytest
import torch
from matplotlib.colors import rgb_to_hsv

from vaegen_utils import tetrominoes as tet
from vaegen_utils.checked_arrays import read_checked_npz
from vaegen_utils.data import ImageDataset

SMALL_STRATA = (4, 2, 2, 4, 4)  # 256 points


@pytest.fixture(scope="module")
def paper_factors() -> np.ndarray:
    return tet.sample_factors(1)[0]  # (163840, 5)


@pytest.fixture(scope="module")
def small_data() -> tet.TetrominoData:
    return tet.generate_tetrominoes(3, strata=SMALL_STRATA)


def generator_sampling_logic(seed: int, strata) -> tuple[np.ndarray, np.ndarray]:
    """The generator's stratified_uniform + 'id' split, restated: factors and the train mask."""
    ranges = [(0, 337.5), (0, 0.875), (2, 5), (8, 23), (8, 23)]
    state = np.random.RandomState(seed)  # the generator calls np.random.seed(seed)
    lows = [
        np.linspace(low, high, count, endpoint=False) for (low, high), count in zip(ranges, strata)
    ]
    grids = np.meshgrid(*lows)  # default 'xy' indexing, as in the generator
    borders = np.stack([grid.flatten() for grid in grids], axis=-1)
    widths = np.array([[(high - low) / count for (low, high), count in zip(ranges, strata)]])
    factors = borders + state.rand(*borders.shape) * widths
    train_mask = state.permutation(len(factors)) < len(factors) * 0.5
    return factors, train_mask


def point_sampled_coverage(factors: np.ndarray, image_size: int, supersampling: int) -> np.ndarray:
    """Brute force: test every sample point of every pixel against the J. (n, H, W)."""
    s = supersampling
    points = (np.arange(image_size * s) + 0.5) / s
    centre_u = factors[:, 3] + 0.5 + 1 / 32
    centre_v = factors[:, 4] + 0.5 + 1 / 32
    angle = np.deg2rad(factors[:, 0])
    cos, sin, scale = (
        np.cos(angle)[:, None, None],
        np.sin(angle)[:, None, None],
        factors[:, 2, None, None],
    )
    du = points[None, None, :] - centre_u[:, None, None]  # (n, 1, W*s)
    dv = points[None, :, None] - centre_v[:, None, None]  # (n, H*s, 1)
    a = (cos * du - sin * dv) / scale
    b = (sin * du + cos * dv) / scale
    column = (a >= -0.005) & (a < 0.995) & (b >= -1.505) & (b < 1.495)
    foot = (a >= -1.005) & (a < -0.005) & (b >= 0.495) & (b < 1.495)
    inside = (column | foot).reshape(len(factors), image_size, s, image_size, s)
    return inside.mean(axis=(2, 4))


# ------------------------------------------------------------------------------------------
# Factors
# ------------------------------------------------------------------------------------------


def test_factor_ranges_are_the_generators():
    ranges = tet.factor_ranges()
    expected = [(0, 337.5), (0, 0.875), (2, 5), (8, 23), (8, 23)]
    np.testing.assert_array_equal(ranges, np.array(expected, dtype=float))
    assert tuple(tet.factor_ranges(64)[3]) == (8.0, 55.0)  # [2*5 - 2, size - 2*5 + 1]
    assert tet.PAPER_NUM_IMAGES == 16 * 8 * 5 * 16 * 16 == 163_840


@pytest.mark.parametrize("strata", [SMALL_STRATA, tet.PAPER_STRATA])
def test_factors_and_random_split_equal_the_generator_logic_bit_for_bit(strata):
    factors, train_mask = generator_sampling_logic(1, strata)
    ours, _ = tet.sample_factors(1, strata=strata)
    np.testing.assert_array_equal(ours, factors)
    split = tet.random_split(len(factors), 1)
    np.testing.assert_array_equal(split.train_indices, np.flatnonzero(train_mask))


def test_every_stratum_holds_exactly_one_point_inside_its_bin(paper_factors):
    factors, strata = tet.sample_factors(1)
    assert factors.shape == (163_840, 5) and strata.shape == (163_840, 5)
    assert factors.dtype == np.float64 and strata.dtype == np.int64
    flat = np.ravel_multi_index(tuple(strata.T), tet.PAPER_STRATA)
    assert len(np.unique(flat)) == tet.PAPER_NUM_IMAGES  # every stratum exactly once
    ranges = tet.factor_ranges()
    widths = (ranges[:, 1] - ranges[:, 0]) / np.array(tet.PAPER_STRATA)
    bin_low = ranges[:, 0] + strata * widths
    assert np.all(factors >= bin_low - 1e-12) and np.all(factors < bin_low + widths + 1e-12)
    assert np.all(factors >= ranges[:, 0]) and np.all(factors < ranges[:, 1])
    # Within-bin positions look uniform: mean 0.5, sd 1/sqrt(12).
    within = (factors - bin_low) / widths
    np.testing.assert_allclose(within.mean(axis=0), 0.5, atol=0.005)
    np.testing.assert_allclose(within.std(axis=0), 1 / math.sqrt(12), atol=0.005)


def test_generation_is_deterministic_in_the_seed(small_data):
    again = tet.generate_tetrominoes(3, strata=SMALL_STRATA)
    np.testing.assert_array_equal(again.images, small_data.images)
    np.testing.assert_array_equal(again.factors, small_data.factors)
    other = tet.generate_tetrominoes(4, strata=SMALL_STRATA)
    assert not np.array_equal(other.factors, small_data.factors)
    np.testing.assert_array_equal(other.strata, small_data.strata)  # same strata, new draws


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------


def test_images_are_uint8_rgb_with_a_black_background(small_data):
    images = small_data.images
    assert images.dtype == np.uint8 and images.shape == (256, 3, 32, 32)
    vertices = tet.tetromino_vertices(small_data.factors)  # (N, 6, 2)
    pixel = np.arange(32)
    for image, corners in zip(images, vertices):
        low, high = corners.min(axis=0), corners.max(axis=0)
        # Pixels wholly outside the J's bounding box are exactly black in every channel.
        outside_u = (pixel + 1 <= low[0]) | (pixel >= high[0])
        outside_v = (pixel + 1 <= low[1]) | (pixel >= high[1])
        outside = outside_v[:, None] | outside_u[None, :]
        assert np.all(image[:, outside] == 0)
        assert image.max() == 255  # some pixel is wholly inside the J at full value


@pytest.mark.parametrize("supersampling", [4, 16])
def test_scanline_rendering_equals_brute_force_point_sampling(small_data, supersampling):
    factors = small_data.factors[::8]  # 32 images
    coverage = tet._coverage(factors, image_size=32, supersampling=supersampling)
    expected = point_sampled_coverage(factors, 32, supersampling)
    # Both count the same sample points; only points within ~1e-12 px of an edge could differ.
    assert np.abs(coverage - expected).max() <= 1 / supersampling**2 + 1e-12
    assert np.mean(coverage != expected) < 1e-3


def test_axis_aligned_angles_render_like_brute_force():
    factors = np.array([[angle, 0.2, 3.3, 14.2, 15.7] for angle in (0.0, 90.0, 180.0, 270.0)])
    coverage = tet._coverage(factors, image_size=32, supersampling=16)
    expected = point_sampled_coverage(factors, 32, 16)
    assert np.abs(coverage - expected).max() <= 1 / 256 + 1e-12


def test_coverage_adds_up_to_the_area_of_the_j(small_data):
    inside = tet.frame_overhang(small_data.factors) < 0
    factors = small_data.factors[inside]
    coverage = tet._coverage(factors, image_size=32, supersampling=16)
    area = 4 * factors[:, 2] ** 2  # 4 cells of scale x scale pixels
    # Each scanline's count per rectangle is off by < 1 sample, on at most 2R*s + 1 scanlines.
    bound = (2 * tet.J_RADIUS_CELLS * factors[:, 2] * 16 + 1) * 2 / 16**2
    assert np.all(np.abs(coverage.sum(axis=(1, 2)) - area) <= bound)
    assert np.abs(coverage.sum(axis=(1, 2)) - area).mean() < 0.1


def test_orientation_and_position_follow_the_generator():
    # Angle 0: the J's column is on the right of its centre, its foot at the bottom left.
    image = tet.render_tetrominoes(np.array([[0.0, 0.0, 4.0, 15.0, 15.0]]))[0, 0]  # red channel
    centre = 15.5 + 1 / 32
    assert image[int(centre + 4), int(centre + 2)] == 255  # column, below the centre
    assert image[int(centre - 4), int(centre + 2)] == 255  # column, above the centre
    assert image[int(centre + 4), int(centre - 2)] == 255  # foot: left, bottom
    assert image[int(centre - 4), int(centre - 2)] == 0  # the empty top-left cell
    # Angle 90 turns the J counter-clockwise on screen: the foot goes to the bottom right
    # (a point (a, b) goes to centre + scale * (b, -a)).
    image = tet.render_tetrominoes(np.array([[90.0, 0.0, 4.0, 15.0, 15.0]]))[0, 0]
    assert image[int(centre + 2), int(centre + 4)] == 255  # foot
    assert image[int(centre - 2), int(centre - 4)] == 255  # the column, now a horizontal bar
    assert image[int(centre - 2), int(centre + 4)] == 255
    assert image[int(centre + 2), int(centre - 4)] == 0


# Moments of the value channel of images rendered by the public generator's own code
# (neu-pml/tetrominoes get_data_by_label: cv2.warpAffine at 512x512 + INTER_AREA resize, run once
# with opencv-python-headless 5.0.0, which is not a dependency of this project):
# [sum, mean u, mean v, var u, var v, cov uv, 3rd moment u, 3rd moment v], u/v at pixel centres.
REFERENCE_MOMENTS = {
    (0.0, 0.1, 5.0, 8.0, 8.0): [100.0, 9.75, 9.75, 6.9375, 19.1875, -4.6875, -11.7188, -35.1562],
    (90.0, 0.5, 2.0, 15.3, 20.7): [16.0, 16.3125, 20.75, 3.1523, 1.1875, 0.75, -2.3452, 0.8438],
    (33.3, 0.8, 3.7, 12.2, 17.9): [
        54.76,
        13.9865,
        18.6911,
        3.4995,
        10.9249,
        2.1239,
        1.5637,
        -5.7687,
    ],
    (250.0, 0.3, 4.4, 18.6, 10.1): [
        77.44,
        17.7494,
        11.2749,
        11.5353,
        8.7975,
        5.886,
        15.087,
        -12.0919,
    ],
    (300.0, 0.6, 2.6, 21.4, 13.3): [
        27.0407,
        21.6984,
        14.702,
        5.5618,
        1.6577,
        -0.8261,
        2.558,
        0.5181,
    ],
}


def value_moments(image: np.ndarray) -> np.ndarray:
    value = image.max(axis=0).astype(np.float64) / 255  # (H, W); S = 1, so V = max channel
    u = np.arange(value.shape[1]) + 0.5
    v = np.arange(value.shape[0]) + 0.5
    mass = value.sum()
    mean_u, mean_v = (value * u).sum() / mass, (value * v[:, None]).sum() / mass
    du, dv = u[None, :] - mean_u, v[:, None] - mean_v
    central = [
        (value * du**2).sum(),
        (value * dv**2).sum(),
        (value * du * dv).sum(),
        (value * du**3).sum(),
        (value * dv**3).sum(),
    ]
    return np.array([mass, mean_u, mean_v, *(np.array(central) / mass)])


def test_images_match_moments_of_the_public_generators_images():
    factors = np.array(list(REFERENCE_MOMENTS))
    images = tet.render_tetrominoes(factors)
    for image, expected in zip(images, REFERENCE_MOMENTS.values()):
        measured = value_moments(image)
        np.testing.assert_allclose(measured[0], expected[0], rtol=2e-3)  # area
        np.testing.assert_allclose(measured[1:3], expected[1:3], atol=0.01)  # centre, px
        np.testing.assert_allclose(measured[3:6], expected[3:6], atol=0.02)  # spread and tilt
        np.testing.assert_allclose(
            measured[6:], expected[6:], atol=0.05
        )  # asymmetry (the J's foot)


def test_hue_of_the_rendered_colour_matches_the_factor(small_data):
    for image, hue in zip(small_data.images, small_data.factors[:, 1]):
        pixels = image.reshape(3, -1).T.astype(np.float64) / 255  # (H*W, 3)
        bright = pixels.max(axis=1) >= 0.5
        measured = rgb_to_hsv(pixels[bright])
        difference = np.abs(measured[:, 0] - hue)
        assert np.all(np.minimum(difference, 1 - difference) < 2e-3)
        assert np.all(measured[:, 1] > 0.99)  # full saturation


def test_hue_to_rgb_is_hsv_with_full_saturation_and_value():
    hues = np.linspace(0, 0.999, 101)
    expected = np.array([colorsys.hsv_to_rgb(hue, 1.0, 1.0) for hue in hues])
    np.testing.assert_allclose(tet.hue_to_rgb(hues), expected, atol=1e-12)


def test_frame_overhang_bound_for_the_generator_ranges(paper_factors):
    overhang = tet.frame_overhang(paper_factors)
    # Analytic worst case: centre up to 23 + 0.53125, J radius 1.8042 cells * 5 px.
    worst = 23 + tet.CENTRE_OFFSET_PIXELS + tet.J_RADIUS_CELLS * 5 - 32
    assert 0.55 < worst < 0.56
    assert overhang.max() <= worst
    assert np.mean(overhang > 0) < 0.005  # a few hundred of 163,840 images lose a sliver
    central = (np.abs(paper_factors[:, 3:] - 15.5) < 6).all(axis=1)
    assert np.all(overhang[central] < 0)  # J's near the middle are always whole


def test_clipped_shapes_leave_no_wrapped_pixels():
    # A large J pushed against the bottom-right corner: pixels must not wrap to the other side.
    image = tet.render_tetrominoes(np.array([[45.0, 0.0, 5.0, 22.99, 22.99]]))[0]
    assert tet.frame_overhang(np.array([[45.0, 0.0, 5.0, 22.99, 22.99]]))[0] > 0
    assert np.all(image[:, :10, :] == 0) and np.all(image[:, :, :10] == 0)


# ------------------------------------------------------------------------------------------
# Cache and data set
# ------------------------------------------------------------------------------------------


def test_load_caches_checks_and_rebuilds(tmp_path, monkeypatch, small_data):
    dataset = tet.load_tetrominoes(3, strata=SMALL_STRATA, data_dir=tmp_path)
    path = tet.cache_path(3, strata=SMALL_STRATA, data_dir=tmp_path)
    assert path.is_file() and path.parent.name == "tetrominoes"
    assert isinstance(dataset, ImageDataset) and dataset.likelihood_hint == "bernoulli"
    assert dataset.images.dtype == torch.float32 and dataset.images.shape == (256, 3, 32, 32)
    np.testing.assert_array_equal(
        torch.round(dataset.images * 255).to(torch.uint8).numpy(), small_data.images
    )
    np.testing.assert_array_equal(dataset.factors.numpy(), small_data.factors)
    assert torch.equal(dataset.factor("scale"), dataset.factors[:, 2])
    assert len(torch.unique(dataset.labels)) == 256

    # A second load reads the cache (generating would fail here).
    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(tet, "generate_tetrominoes", no_generation)
    again = tet.load_tetrominoes(3, strata=SMALL_STRATA, data_dir=tmp_path)
    assert torch.equal(again.images, dataset.images)
    monkeypatch.undo()

    # A corrupt file is rebuilt with a warning.
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.warns(UserWarning, match="rebuilding the Tetrominoes cache"):
        rebuilt = tet.load_tetrominoes(3, strata=SMALL_STRATA, data_dir=tmp_path)
    assert torch.equal(rebuilt.images, dataset.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tet.load_tetrominoes(3, strata=SMALL_STRATA, data_dir=tmp_path)  # healthy again

    arrays = tet.load_tetromino_data(3, strata=SMALL_STRATA, data_dir=tmp_path)
    np.testing.assert_array_equal(arrays.images, small_data.images)

    # The paper's settings get the short name.
    assert tet.cache_path(1, data_dir=tmp_path).name == "seed1.npz"


def test_cache_is_a_checked_npz_and_other_settings_are_rebuilt(tmp_path, monkeypatch):
    data = tet.load_tetromino_data(3, strata=SMALL_STRATA, data_dir=tmp_path)
    path = tet.cache_path(3, strata=SMALL_STRATA, data_dir=tmp_path)
    with np.load(path) as archive:
        assert sorted(archive.files) == ["factors", "images", "settings", "sha256", "strata"]
        settings = json.loads(str(archive["settings"]))
    assert settings["seed"] == 3 and settings["render"] == tet.RENDER_VERSION
    stored = read_checked_npz(path, ["images", "factors", "strata"], settings)
    np.testing.assert_array_equal(stored["factors"], data.factors)

    # A file written by another rendering version is outdated: rebuilt with a warning.
    monkeypatch.setattr(tet, "RENDER_VERSION", tet.RENDER_VERSION + 1)
    with pytest.warns(UserWarning, match=r"rebuilding the Tetrominoes cache .*wanted"):
        rebuilt = tet.load_tetromino_data(3, strata=SMALL_STRATA, data_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt.images, data.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tet.load_tetromino_data(3, strata=SMALL_STRATA, data_dir=tmp_path)


def test_binarize_error_names_the_tetrominoes(tmp_path):
    dataset = tet.load_tetrominoes(3, strata=SMALL_STRATA, data_dir=tmp_path)
    assert "ImageDataset" not in repr(dataset) and "split='all'" in repr(dataset)
    with pytest.raises(ValueError, match=r"'tetrominoes' \(split 'all'\) has binarization=None"):
        dataset.binarize(None)


def test_dataset_subset_keeps_factors_and_positions(small_data, tmp_path):
    dataset = tet.load_tetrominoes(3, strata=SMALL_STRATA, data_dir=tmp_path)
    split = tet.make_split("random", dataset.factors, 3)
    train = dataset.subset(split.train_indices, "train")
    assert train.split == "train" and len(train) == 128
    np.testing.assert_array_equal(train.indices.numpy(), split.train_indices)
    assert torch.equal(train.factors, dataset.factors[split.train_indices])
    nested = train.subset(np.array([0, 5]), "train")
    np.testing.assert_array_equal(nested.indices.numpy(), split.train_indices[[0, 5]])


def test_bad_arguments_raise_actionable_errors():
    with pytest.raises(ValueError, match="5 bin counts"):
        tet.sample_factors(1, strata=(4, 4))
    with pytest.raises(ValueError, match="seed"):
        tet.sample_factors(-1)
    with pytest.raises(ValueError, match="image_size"):
        tet.generate_tetrominoes(1, strata=(1, 1, 1, 1, 1), image_size=8)
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        tet.render_tetrominoes(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="outside"):
        tet.checkerboard_split(np.array([[400.0, 0.1, 3.0, 10.0, 10.0]]))


# ------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------


def assert_partition(split: tet.Split, n: int) -> None:
    train, test = split
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # sorted, no repeats
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(n))


def test_random_split_is_81920_81920(paper_factors):
    split = tet.make_split("random", paper_factors, 1)
    assert (len(split.train_indices), len(split.test_indices)) == (81_920, 81_920)
    assert_partition(split, 163_840)
    other = tet.random_split(163_840, 2)
    assert not np.array_equal(other.train_indices, split.train_indices)


def test_constant_volume_sizes_are_exact_and_nested(paper_factors):
    previous = None
    for name, size in tet.PAPER_TRAIN_SIZES.items():
        split = tet.make_split(f"cv-{name}", paper_factors, 1)
        assert len(split.train_indices) == size and len(split.test_indices) == 163_840 - size
        assert_partition(split, 163_840)
        if previous is not None:
            assert np.all(np.isin(previous, split.train_indices))
        previous = split.train_indices
    assert len(tet.make_split("cv-16k", paper_factors, 1).test_indices) == 147_456  # CV(16k/147k)
    half = tet.constant_volume_split(163_840, 81_920, 1)
    np.testing.assert_array_equal(half.train_indices, tet.random_split(163_840, 1).train_indices)


def test_checkerboard_parity_neighbours_and_sizes(paper_factors):
    split = tet.make_split("checkerboard", paper_factors, 1)
    assert_partition(split, 163_840)
    # Not 50/50: the scale cut 3.5 splits the middle scale stratum (the generator gives the same).
    assert (len(split.train_indices), len(split.test_indices)) == (82_021, 81_819)
    cells = tet.checkerboard_cells(paper_factors)
    assert np.all(cells.sum(axis=1)[split.train_indices] % 2 == 0)
    assert np.all(cells.sum(axis=1)[split.test_indices] % 2 == 1)
    cell_number = cells @ (2 ** np.arange(5))
    train_cells = set(cell_number[split.train_indices].tolist())
    test_cells = set(cell_number[split.test_indices].tolist())
    assert len(train_cells) == len(test_cells) == 16 and not train_cells & test_cells
    for cell in test_cells:
        for factor in range(5):
            assert cell ^ (1 << factor) in train_cells  # each face-neighbour is a training cell
    # Each factor keeps its uniform marginal in train and test: each half holds about half.
    for factor in range(5):
        share = cells[split.train_indices, factor].mean()
        assert abs(share - 0.5) < 0.01


def test_checkerboard_cuts_are_the_range_midpoints(paper_factors):
    cells = tet.checkerboard_cells(paper_factors)
    midpoints = tet.factor_ranges().mean(axis=1)
    np.testing.assert_array_equal(cells, (paper_factors >= midpoints + 5e-10).astype(np.int64))


@pytest.mark.parametrize("name", ["8k", "33k", "65k"])
def test_constant_density_box_holds_its_points_and_the_target_size(paper_factors, name):
    size = tet.PAPER_TRAIN_SIZES[name]
    split = tet.make_split(f"cd-{name}", paper_factors, 1)
    box = tet.constant_density_box(paper_factors, size, 1)
    assert len(split.train_indices) == size  # exact by default
    base = tet.random_split(163_840, 1)
    assert np.all(np.isin(split.train_indices, base.train_indices))
    assert np.all(np.isin(split.test_indices, base.test_indices))
    inside = box.contains(paper_factors)
    np.testing.assert_array_equal(np.flatnonzero(inside), np.union1d(*split))  # box = its points
    # Constant density: the box holds its volume fraction of the points.
    assert abs(inside.sum() / 163_840 - box.volume_fraction) < 0.01
    assert abs(len(split.test_indices) - size) < 5 * math.sqrt(size)
    # Centred, with the same side fraction along every factor.
    ranges = tet.factor_ranges()
    np.testing.assert_allclose((box.low + box.high) / 2, ranges.mean(axis=1))
    np.testing.assert_allclose(
        (box.high - box.low) / (ranges[:, 1] - ranges[:, 0]), box.side_fraction
    )


def test_constant_density_generator_recipe_is_close_to_the_target(paper_factors):
    for size in (8192, 32768):
        split = tet.constant_density_split(paper_factors, size, 1, exact_size=False)
        box = tet.constant_density_box(paper_factors, size, 1, exact_size=False)
        np.testing.assert_allclose(box.volume_fraction, size / 81_920)
        assert abs(len(split.train_indices) - size) < 5 * math.sqrt(size)


def test_make_split_rejects_unknown_names(paper_factors):
    for name in ("cv-7k", "cd", "holdout", "CV-16k"):
        with pytest.raises(ValueError, match="unknown split"):
            tet.make_split(name, paper_factors, 1)
    assert len(tet.make_split("cv-1000", paper_factors, 1).train_indices) == 1000
    assert "cd-65k" in tet.SPLIT_NAMES and len(tet.SPLIT_NAMES) == 18
