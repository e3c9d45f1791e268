"""Nearest-neighbour distances (vaegen_utils.neighbours) against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaegen_utils.neighbours import nearest_neighbour_distances


def test_nearest_neighbour_distances_equal_brute_force():
    generator = torch.Generator().manual_seed(0)
    train = torch.rand(37, 3, 4, 4, generator=generator)
    test = torch.rand(23, 3, 4, 4, generator=generator)
    test[5] = train[11]  # an exact duplicate
    distances, indices = nearest_neighbour_distances(test, train, test_block=7, train_block=10)
    brute = torch.cdist(test.reshape(23, -1).double(), train.reshape(37, -1).double())  # (23, 37)
    expected, expected_index = brute.min(dim=1)
    assert torch.equal(indices, expected_index)
    torch.testing.assert_close(distances.double(), expected, atol=1e-5, rtol=0)
    assert distances[5] == 0 and indices[5] == 11


def test_nearest_neighbour_distances_of_uint8_images_and_subsamples():
    images = np.random.default_rng(3).integers(0, 256, size=(256, 3, 8, 8), dtype=np.uint8)
    train, test = images[:128], images[128:]
    full = nearest_neighbour_distances(test, train, test_block=50, train_block=40)
    as_float = nearest_neighbour_distances(
        torch.from_numpy(test).float() / 255, torch.from_numpy(train).float() / 255
    )
    torch.testing.assert_close(full.distances, as_float.distances)
    brute = torch.cdist(
        torch.from_numpy(test).reshape(128, -1).double() / 255,
        torch.from_numpy(train).reshape(128, -1).double() / 255,
    )
    torch.testing.assert_close(full.distances.double(), brute.min(dim=1).values, atol=1e-4, rtol=0)
    part = nearest_neighbour_distances(test, train, max_test=20, subsample_seed=1)
    assert len(part.distances) == len(part.test_rows) == 20
    torch.testing.assert_close(part.distances, full.distances[part.test_rows])
    with pytest.raises(ValueError, match="same shape"):
        nearest_neighbour_distances(test, train[:, :2])
