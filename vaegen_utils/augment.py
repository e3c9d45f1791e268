"""Paper A's augmentation baselines Aug.Naive and Aug.Tuned as batch transforms for `training.train`.

Paper A (App. E, Tables 8-10) uses the StyleGAN2-ADA augmentation pipeline (Karras
et al. 2020) with every operation applied with probability b in {0.1, 0.12}. This is a torch-only
re-implementation of the operations the tables list, for 1-channel and 3-channel images in [0, 1]:

    op (table name)            parameter drawn per image                          config field
    horizontal / vertical flip mirror                                              hflip, vflip
    translation t px           integer shift (tx, ty), each uniform in {-t..t}     translate_px
    scaling 2^s                isotropic scale 2^s, s ~ N(0, std^2)                scale_std
    rotation d deg             angle uniform in [-d, d]                            rotate_deg
    anisotropic scaling 2^s    x scaled by 2^s, y by 2^-s, s ~ N(0, std^2)         aniso_std
    anisotropic rotation p     with probability p the anisotropy axis is a random
                               angle in [0, pi) instead of the image axes          aniso_rotation_p
    brightness                 add b ~ N(0, std^2) (ADA: in [-1, 1] units)         brightness_std
    contrast 2^s               scale about mid-grey by 2^s, s ~ N(0, std^2)        contrast_std
    hue rotation               rotate RGB about the grey axis, uniform in
                               [-h*pi, h*pi] (RGB only)                            hue_max
    saturation 2^s             scale chroma by 2^s, s ~ N(0, std^2) (RGB only)     saturation_std

Interpretation (UNVERIFIED, the tables give one number per op): the tables' ranges "s in [0, 0.2]"
or "sigma in [0, 0.15]" are read as ADA's standard deviations (ADA: scale_std = aniso_std = 0.2,
brightness_std = 0.2, i.e. the same numbers), angles as ADA's uniform maximum, translation as the
maximum integer shift, and "anisotropic rotation p" as the probability that the anisotropic
scaling is conjugated by a random rotation (ADA's pre-/post-rotation around it). Which of 0.1 and
0.12 belongs to which method is not stated; the presets use 0.1 for Aug.Naive and 0.12 for
Aug.Tuned (both are parameters). Tuned CIFAR's "horizontal flip (probability 1)" is read as a flip
with probability 0.5 for every image (the usual random flip).

Mechanics. All geometric operations of an image are composed into one affine map and applied
with a single bilinear `grid_sample` (as ADA does, so there is one interpolation, not one per op);
a pure integer translation or flip therefore moves pixels exactly. Outside the image is filled with
0 (`padding_mode="zeros"`: MNIST's background) or mirrored ("reflection", CIFAR). Colour
operations act in ADA's centred space c = 2x - 1 and the result is clamped to [0, 1].
Outputs stay in the data's own value set: greyscale images are re-quantized to the 8-bit grid
k/255 (the project's data convention), and binary data (BinaryMNIST; detected as all values in
{0, 1} unless `binary=` is given) are re-binarized at 0.5 after the transform (our choice: a
rotated or scaled binary digit becomes grey at its edges, and a Bernoulli VAE wants binary data;
brightness and contrast then almost never change a binary pixel, since they preserve which side of
mid-grey it is on unless |brightness| > 1).
Images to which no operation applies are returned bit-identical; with p = 0 the batch is returned
unchanged. Random numbers are drawn from the generator the engine passes (`(x_batch, generator)`),
all of them for every image whatever is applied, so a batch's result depends only on the
generator state and the batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import named_fields

PADDING_MODES = ("zeros", "reflection", "border")
# Column of each op's "is applied" draw in the (B, NUM_OPS) uniform matrix.
_OPS = ("hflip", "vflip", "translate", "scale", "rotate", "aniso", "brightness", "contrast", "hue", "saturation")
_LUMA_AXIS = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)


@named_fields
@dataclass(frozen=True)
class AugmentConfig:
    """One augmentation pipeline; every op with probability `p` (or its own override). See module docstring."""

    name: str = "custom"
    p: float = 0.1
    hflip: bool = False
    vflip: bool = False
    hflip_probability: float | None = None
    translate_px: int = 0
    scale_std: float = 0.0
    rotate_deg: float = 0.0
    aniso_std: float = 0.0
    aniso_rotation_p: float = 0.0
    brightness_std: float = 0.0
    contrast_std: float = 0.0
    hue_max: float = 0.0
    saturation_std: float = 0.0
    padding_mode: str = "zeros"
    binary: bool | None = None
    quantize: bool = True

    def __post_init__(self) -> None:
        for name in ("p", "aniso_rotation_p") + (("hflip_probability",) if self.hflip_probability is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {value!r}")
        for name in ("scale_std", "rotate_deg", "aniso_std", "brightness_std", "contrast_std", "hue_max", "saturation_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (0 disables the op), got {value!r}")
        if isinstance(self.translate_px, bool) or not isinstance(self.translate_px, int) or self.translate_px < 0:
            raise ValueError(f"translate_px must be an int >= 0 (maximum shift in pixels), got {self.translate_px!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        for name in ("hflip", "vflip", "quantize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.binary is not None and not isinstance(self.binary, bool):
            raise ValueError(f"binary must be True, False or None (detect), got {self.binary!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def probabilities(self) -> dict[str, float]:
        """Probability that each op is applied to an image (0 for disabled ops)."""
        p = self.p
        return {
            "hflip": (self.hflip_probability if self.hflip_probability is not None else p) if self.hflip else 0.0,
            "vflip": p if self.vflip else 0.0,
            "translate": p if self.translate_px else 0.0,
            "scale": p if self.scale_std else 0.0,
            "rotate": p if self.rotate_deg else 0.0,
            "aniso": p if self.aniso_std else 0.0,
            "brightness": p if self.brightness_std else 0.0,
            "contrast": p if self.contrast_std else 0.0,
            "hue": p if self.hue_max else 0.0,
            "saturation": p if self.saturation_std else 0.0,
        }


def naive_config(p: float = 0.1, *, binary: bool | None = None, padding_mode: str = "zeros") -> AugmentConfig:
    """Aug.Naive (paper A Table 8, all datasets): flips, translation <= 3 px, scaling std 0.2, rotation
    <= 10 deg, anisotropic scaling std 0.2 (axis rotated with p 0.5), brightness std 0.2, contrast std
    0.25, hue <= 0.25 pi and saturation std 0.5 (the last two act on RGB images only)."""
    return AugmentConfig(
        name="aug_naive", p=p, hflip=True, translate_px=3, scale_std=0.2, rotate_deg=10.0, aniso_std=0.2,
        aniso_rotation_p=0.5, brightness_std=0.2, contrast_std=0.25, hue_max=0.25, saturation_std=0.5,
        padding_mode=padding_mode, binary=binary,
    )


def tuned_config(dataset: str = "mnist", p: float = 0.12, *, binary: bool | None = None) -> AugmentConfig:
    """Aug.Tuned: dataset "mnist" (BinaryMNIST / FashionMNIST, Table 9: translation <= 3 px, scaling
    std 0.15, rotation <= 10 deg, anisotropic scaling std 0.15, axis rotated with p 0.4; no flips, no
    colour) or "cifar10" (Table 10: horizontal flip for every image with probability 0.5, vertical
    flip, scaling std 0.2, rotation <= 360 deg, anisotropic scaling std 0.2, axis rotated with p 0.5;
    reflection padding)."""
    if dataset in ("mnist", "binary_mnist", "fashion_mnist"):
        return AugmentConfig(
            name="aug_tuned_mnist", p=p, translate_px=3, scale_std=0.15, rotate_deg=10.0, aniso_std=0.15,
            aniso_rotation_p=0.4, padding_mode="zeros", binary=binary,
        )
    if dataset == "cifar10":
        return AugmentConfig(
            name="aug_tuned_cifar10", p=p, hflip=True, hflip_probability=0.5, vflip=True, scale_std=0.2,
            rotate_deg=360.0, aniso_std=0.2, aniso_rotation_p=0.5, padding_mode="reflection", binary=binary,
        )
    raise ValueError(f"dataset must be 'mnist' (also 'binary_mnist', 'fashion_mnist') or 'cifar10', got {dataset!r}")


@dataclass
class AugmentParameters:
    """Per-image draws of one batch (B rows): `applied` bool (B, 10) in the order of `OPS`, and values."""

    applied: torch.Tensor
    translate: torch.Tensor  # (B, 2) integer pixels (x, y)
    scale_exponent: torch.Tensor  # (B,)
    rotate_rad: torch.Tensor  # (B,)
    aniso_exponent: torch.Tensor  # (B,)
    aniso_axis_rad: torch.Tensor  # (B,) 0 where the axis is not rotated
    brightness: torch.Tensor  # (B,)
    contrast_exponent: torch.Tensor  # (B,)
    hue_rad: torch.Tensor  # (B,)
    saturation_exponent: torch.Tensor  # (B,)

    def op(self, name: str) -> torch.Tensor:
        return self.applied[:, _OPS.index(name)]


OPS = _OPS


class Augment:
    """Batch transform `(x_batch, generator) -> x_batch` (training.train's `batch_transform`)."""

    def __init__(self, config: AugmentConfig):
        if not isinstance(config, AugmentConfig):
            raise ValueError(f"Augment needs an AugmentConfig, got {type(config).__name__}")
        self.config = config

    def describe(self) -> str:
        return "augment(" + json.dumps(self.config.to_dict(), sort_keys=True) + ")"

    def __repr__(self) -> str:
        return f"Augment({self.config.name}, p={self.config.p})"

    # Parameters ---------------------------------------------------------------------------
    def sample_parameters(self, batch_size: int, generator: torch.Generator) -> AugmentParameters:
        """Draw every op's 'applied' flag and value for batch_size images (fixed draw order)."""
        c = self.config
        b = batch_size
        uniform = torch.rand((b, len(_OPS)), generator=generator)
        probabilities = torch.tensor([c.probabilities()[name] for name in _OPS])
        applied = uniform < probabilities
        t = c.translate_px
        translate = torch.randint(-t, t + 1, (b, 2), generator=generator)
        scale = torch.randn(b, generator=generator) * c.scale_std
        rotate = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(c.rotate_deg)
        aniso = torch.randn(b, generator=generator) * c.aniso_std
        axis_rotated = torch.rand(b, generator=generator) < c.aniso_rotation_p
        axis = torch.where(axis_rotated, torch.rand(b, generator=generator) * math.pi, torch.zeros(b))
        brightness = torch.randn(b, generator=generator) * c.brightness_std
        contrast = torch.randn(b, generator=generator) * c.contrast_std
        hue = (torch.rand(b, generator=generator) * 2 - 1) * math.pi * c.hue_max
        saturation = torch.randn(b, generator=generator) * c.saturation_std
        return AugmentParameters(applied, translate, scale, rotate, aniso, axis, brightness, contrast, hue, saturation)

    # Application ----------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"augmentation expects a batch (B, C, H, W), got {getattr(x, 'shape', type(x))}")
        if x.shape[0] == 0 or self.config.p == 0.0 and self.config.hflip_probability in (None, 0.0):
            return x
        params = self.sample_parameters(x.shape[0], generator)
        return self.apply(x, params)

    def apply(self, x: torch.Tensor, params: AugmentParameters) -> torch.Tensor:
        """Apply given parameters (from `sample_parameters`) to a batch; rows with no op stay identical."""
        c = self.config
        channels, height, width = x.shape[1:]
        # The parameters stay where they were drawn (the CPU generator's device): the row selection
        # and the small affine/colour matrices are computed there without a host sync, and only
        # what touches the images moves to x's device.
        device = x.device
        binary = c.binary if c.binary is not None else ((x == 0) | (x == 1)).all()  # a device flag when detected
        geometric = params.applied[:, :6].any(dim=1)
        photometric = params.applied[:, 6:8].any(dim=1)
        if channels == 3:
            photometric |= params.applied[:, 8:].any(dim=1)
        rows = (geometric | photometric).nonzero().flatten()
        if len(rows) == 0:
            return x
        out = x.clone()
        rows_on_device = rows.to(device, non_blocking=True)
        batch = x.index_select(0, rows_on_device).to(torch.float32)
        geo_rows = geometric[rows]
        if geo_rows.any():
            if height != width:
                raise ValueError(f"geometric augmentation needs square images, got {height}x{width}")
            theta = _inverse_affine(params, rows, size=width).to(device, non_blocking=True)  # (R, 2, 3)
            grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
            warped = F.grid_sample(batch, grid, mode="bilinear", padding_mode=c.padding_mode, align_corners=False)
            batch = torch.where(geo_rows.view(-1, 1, 1, 1).to(device, non_blocking=True), warped, batch)
        if photometric[rows].any():
            batch = _colour(batch, params, rows, channels)
        batch = batch.clamp(0.0, 1.0)
        rebinarized = (batch >= 0.5).to(batch.dtype) if binary is not False else None
        other = (torch.round(batch * 255.0) / 255.0 if c.quantize else batch) if binary is not True else None
        if binary is True or binary is False:
            batch = rebinarized if binary else other
        else:
            batch = torch.where(binary, rebinarized, other)  # detected on the device: no host sync
        out[rows_on_device] = batch.to(x.dtype)
        return out


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    matrix = torch.zeros((len(angle), 3, 3))
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, -sin, sin, cos
    matrix[:, 2, 2] = 1.0
    return matrix


def _diagonal(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    matrix = torch.zeros((len(sx), 3, 3))
    matrix[:, 0, 0], matrix[:, 1, 1], matrix[:, 2, 2] = sx, sy, 1.0
    return matrix


def _inverse_affine(params: AugmentParameters, rows: torch.Tensor, size: int) -> torch.Tensor:
    """theta (R, 2, 3) for affine_grid: the inverse of flip -> scale -> aniso -> rotate -> translate.

    Coordinates are affine_grid's normalised ones (align_corners=False), in which pixel centres are
    at (2i + 1)/size - 1, so a shift of t pixels is 2t/size and flips map pixel i to size-1-i exactly.
    """
    on = lambda name: params.op(name)[rows]  # noqa: E731
    count = len(rows)
    one = torch.ones(count)
    flip_x = torch.where(on("hflip"), -one, one)
    flip_y = torch.where(on("vflip"), -one, one)
    forward = _diagonal(flip_x, flip_y)
    scale = torch.exp2(torch.where(on("scale"), params.scale_exponent[rows], torch.zeros(count)))
    forward = _diagonal(scale, scale) @ forward
    aniso = torch.where(on("aniso"), params.aniso_exponent[rows], torch.zeros(count))
    axis = torch.where(on("aniso"), params.aniso_axis_rad[rows], torch.zeros(count))
    forward = _rotation(axis) @ _diagonal(torch.exp2(aniso), torch.exp2(-aniso)) @ _rotation(-axis) @ forward
    angle = torch.where(on("rotate"), params.rotate_rad[rows], torch.zeros(count))
    forward = _rotation(angle) @ forward
    shift = torch.where(on("translate").view(-1, 1), params.translate[rows].to(torch.float32), torch.zeros(count, 2))
    translation = torch.eye(3).repeat(count, 1, 1)
    translation[:, :2, 2] = shift * 2.0 / size
    forward = translation @ forward
    return torch.linalg.inv(forward)[:, :2, :]


def _colour(batch: torch.Tensor, params: AugmentParameters, rows: torch.Tensor, channels: int) -> torch.Tensor:
    """Brightness, contrast (and for RGB hue, saturation) in ADA's centred space c = 2x - 1.

    The per-row values and matrices are computed where `params` live and moved to the batch's device.
    """
    device = batch.device
    on = lambda name: params.op(name)[rows].view(-1, 1, 1, 1)  # noqa: E731
    moved = lambda tensor: tensor.to(device, non_blocking=True)  # noqa: E731
    centred = batch * 2.0 - 1.0
    brightness = moved(params.brightness[rows].view(-1, 1, 1, 1))
    centred = torch.where(moved(on("brightness")), centred + brightness, centred)
    contrast = moved(torch.exp2(params.contrast_exponent[rows]).view(-1, 1, 1, 1))
    centred = torch.where(moved(on("contrast")), centred * contrast, centred)
    if channels == 3:
        axis = _LUMA_AXIS
        outer = torch.outer(axis, axis)  # projection onto the grey axis
        count = len(rows)
        angle = params.hue_rad[rows]
        # Rodrigues rotation about the grey axis.
        cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
        eye = torch.eye(3)
        hue = (
            torch.cos(angle).view(-1, 1, 1) * (eye - outer)
            + torch.sin(angle).view(-1, 1, 1) * cross
            + outer
        )  # (R, 3, 3)
        hue = torch.where(on("hue").view(-1, 1, 1), hue, eye.expand(count, 3, 3))
        saturation = torch.exp2(params.saturation_exponent[rows]).view(-1, 1, 1)
        sat = outer + (eye - outer) * saturation
        sat = torch.where(on("saturation").view(-1, 1, 1), sat, eye.expand(count, 3, 3))
        matrix = moved(sat @ hue)
        centred = torch.einsum("rij,rjhw->rihw", matrix, centred)
    return (centred + 1.0) / 2.0


def aug_naive(p: float = 0.1, *, binary: bool | None = None, padding_mode: str = "zeros") -> Augment:
    """The Aug.Naive batch transform (see `naive_config`)."""
    return Augment(naive_config(p, binary=binary, padding_mode=padding_mode))


def aug_tuned(dataset: str = "mnist", p: float = 0.12, *, binary: bool | None = None) -> Augment:
    """The Aug.Tuned batch transform (see `tuned_config`)."""
    return Augment(tuned_config(dataset, p, binary=binary))
