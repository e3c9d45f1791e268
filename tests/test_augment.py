"""Tests of vaegen_utils.augment (Aug.Naive / Aug.Tuned batch transforms); about a second in total."""

from __future__ import annotations

import math

import pytest
import torch

from vaegen_utils import augment, models, training
from vaegen_utils.augment import AugmentConfig, Augment


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def grey() -> torch.Tensor:
    """64 greyscale 28x28 images on the 8-bit grid k/255."""
    return torch.randint(0, 256, (64, 1, 28, 28), generator=generator(1)).float() / 255.0


@pytest.fixture(scope="module")
def binary() -> torch.Tensor:
    images = torch.zeros((64, 1, 28, 28))
    images[:, :, 8:20, 12:16] = 1.0  # a bar, like a "1"
    return images


def blob(size: int = 28, top: int = 12, left: int = 12) -> torch.Tensor:
    image = torch.zeros((1, 1, size, size))
    image[..., top : top + 3, left : left + 3] = torch.tensor([[20.0, 40.0, 60.0], [80.0, 100.0, 120.0], [140.0, 160.0, 255.0]]) / 255.0
    return image


@pytest.mark.parametrize("transform", [augment.aug_naive(), augment.aug_tuned("mnist"), augment.aug_naive(p=0.9)])
def test_shape_range_grid_and_determinism(grey, transform):
    out = transform(grey, generator(3))
    assert out.shape == grey.shape and out.dtype == grey.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(torch.round(out * 255) / 255, out)  # still on the data's 8-bit grid
    assert torch.equal(out, transform(grey, generator(3)))  # same generator state -> same batch
    assert not torch.equal(out, transform(grey, generator(4)))
    assert not torch.equal(out, grey)


def test_p_zero_is_the_identity(grey):
    transform = Augment(augment.naive_config(p=0.0))
    assert torch.equal(transform(grey, generator(0)), grey)


def test_images_without_an_applied_op_are_bit_identical(grey):
    transform = augment.aug_naive(p=0.05)
    params = transform.sample_parameters(len(grey), generator(5))
    out = transform.apply(grey, params)
    untouched = ~params.applied[:, :8].any(dim=1)  # greyscale: hue and saturation never act
    assert untouched.any() and (~untouched).any()
    assert torch.equal(out[untouched], grey[untouched])
    assert all(not torch.equal(out[i], grey[i]) for i in (~untouched).nonzero().flatten().tolist() if params.applied[i, :6].any())


def test_each_op_is_applied_with_probability_p():
    transform = augment.aug_naive(p=0.1)
    applied = transform.sample_parameters(20000, generator(7)).applied.float().mean(dim=0)
    expected = torch.full_like(applied, 0.1)
    expected[1] = 0.0  # Table 8 has no vertical flip
    assert torch.allclose(applied, expected, atol=0.01), applied
    tuned = augment.aug_tuned("mnist", p=0.12).sample_parameters(20000, generator(7)).applied.float().mean(dim=0)
    expected = torch.tensor([0.0, 0.0, 0.12, 0.12, 0.12, 0.12, 0.0, 0.0, 0.0, 0.0])  # no flips, no colour
    assert torch.allclose(tuned, expected, atol=0.01), tuned


def test_a_translation_moves_the_mass_by_exactly_the_drawn_shift():
    transform = Augment(AugmentConfig(p=1.0, translate_px=3))
    image = blob().repeat(16, 1, 1, 1)
    params = transform.sample_parameters(16, generator(11))
    out = transform.apply(image, params)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    for i in range(16):
        tx, ty = params.translate[i].tolist()
        assert max(abs(tx), abs(ty)) <= 3
        expected = torch.roll(image[i], shifts=(ty, tx), dims=(-2, -1))  # the blob is far from the border
        assert torch.equal(out[i], expected), (tx, ty)
        mass = out[i, 0].sum()
        com = ((out[i, 0] * xs).sum() / mass, (out[i, 0] * ys).sum() / mass)
        com0 = ((image[i, 0] * xs).sum() / mass, (image[i, 0] * ys).sum() / mass)
        assert torch.allclose(torch.tensor(com) - torch.tensor(com0), torch.tensor([float(tx), float(ty)]), atol=1e-5)
    assert len({tuple(t) for t in params.translate.tolist()}) > 4  # the shifts vary


def test_flips_and_quarter_rotations_are_exact():
    image = blob(top=5, left=9)
    flip = Augment(AugmentConfig(p=1.0, hflip=True, vflip=True))
    assert torch.equal(flip(image, generator(0)), image.flip(-1).flip(-2))
    rotate = Augment(AugmentConfig(p=1.0, rotate_deg=90.0))
    params = rotate.sample_parameters(1, generator(0))
    params.rotate_rad[:] = math.pi / 2
    out = rotate.apply(image, params)
    assert torch.equal(out, torch.rot90(image, 1, (-2, -1))) or torch.equal(out, torch.rot90(image, -1, (-2, -1)))


def test_scaling_up_magnifies_about_the_centre():
    image = torch.zeros((1, 1, 28, 28))
    image[..., 12:16, 12:16] = 1.0
    transform = Augment(AugmentConfig(p=1.0, scale_std=1.0, binary=True))
    params = transform.sample_parameters(1, generator(0))
    params.scale_exponent[:] = 1.0  # 2x
    out = transform.apply(image, params)
    assert out.sum() == 64 and torch.equal(out[..., 10:18, 10:18], torch.ones(1, 1, 8, 8))


def test_binary_data_stays_binary(binary):
    for transform in (augment.aug_naive(p=1.0), augment.aug_tuned("mnist", p=1.0)):
        out = transform(binary, generator(2))
        assert set(out.unique().tolist()) <= {0.0, 1.0}
        assert not torch.equal(out, binary)
        assert (out.sum(dim=(1, 2, 3)) > 0).all()  # the digit does not vanish


def test_colour_ops_leave_grey_rgb_pixels_grey_and_greyscale_images_alone():
    rgb_grey = torch.full((4, 3, 8, 8), 100 / 255.0)
    colour = Augment(AugmentConfig(p=1.0, hue_max=1.0, saturation_std=1.0))
    assert torch.allclose(colour(rgb_grey, generator(0)), rgb_grey, atol=1e-6)  # grey axis is invariant
    rgb = torch.rand((4, 3, 8, 8), generator=generator(1))
    out = colour(rgb, generator(0))
    assert out.shape == rgb.shape and not torch.equal(out, rgb)
    greyscale = torch.rand((4, 1, 8, 8), generator=generator(1))
    assert torch.equal(colour(greyscale, generator(0)), greyscale)


def test_presets_and_bad_configs():
    assert augment.tuned_config("cifar10").padding_mode == "reflection"
    assert augment.naive_config().p == 0.1 and augment.tuned_config().p == 0.12
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(p=1.5)
    with pytest.raises(ValueError, match="dataset"):
        augment.tuned_config("svhn")
    assert "aug_naive" in augment.aug_naive().describe()


def test_plugs_into_the_training_engine_as_a_batch_transform(binary, tmp_path):
    vae = models.build_model(models.MLPVAEConfig(data_shape=(1, 28, 28), latent_dim=2, hidden_sizes=(16,), likelihood="bernoulli"), seed=0)
    config = training.TrainConfig(epochs=1, batch_size=32)
    result = training.train(vae, binary, config, eval_sets={"train": binary}, batch_transform=augment.aug_naive(p=0.5), run_dir=tmp_path)
    assert math.isfinite(result.final("train")["elbo"])
    assert "aug_naive" in (tmp_path / "config.json").read_text()
