"""Paper A's diffusion model on CPU: a small diffusers UNet, DDPM training, DDIM/Heun sampling, sample banks.

Paper A (Xiao, Zenn, Bamler 2024, App. D) trains an EDM (Karras et al. 2022) from scratch on
each VAE training set and samples it with a deterministic 18-step Heun sampler, one seed per image;
DMaaPx (Algorithm 2) then trains the VAE on T x N pre-drawn samples, a fresh block of N = |D_train|
per effective epoch. This module is the CPU-sized version of that pipeline:

- `DiffusionConfig`: the UNet (diffusers `UNet2DModel`, no attention by default) and the DDPM noise
  schedule, JSON-serialisable, saved next to the weights (`save_diffusion` / `load_diffusion`).
- `train_diffusion(config, images, steps=...)`: the DDPM noise-prediction MSE (Ho et al. 2020) with
  AdamW, linear warm-up then a constant learning rate, gradient-norm clipping, an optional EMA of the
  weights, bf16 autocast as an option, a NaN guard, and atomic checkpoints from which a rerun resumes
  bit-for-bit (every step's batch, timesteps and noise are a pure function of (seed, step)).
  The learning rate is constant after warm-up so a run can be extended (train to 2000 steps, later to
  4000 in the same run_dir) and early and final checkpoints can be compared (`load_checkpoint`).
- `sample(model, n, sampler="ddim", steps=20, seed=...)`: deterministic (eta = 0) DDIM with
  "trailing" timesteps, or the Heun sampler with Karras sigmas (EDM-style, 2*steps-1 network
  evaluations). Image i's starting noise comes from its own generator, seeded with
  `derive_seed(seed, "diffusion-sample", i)` (paper A: "a unique seed per image"), so image i does
  not depend on how many images are drawn with it or in which chunk.
- `SampleBank` / `generate_bank`: samples stored once as uint8 chunks under
  `cache_dir()/sample_banks/<key[:16]>-<name>/`, with a manifest (weights SHA-256, sampler, steps,
  seed, chunk list); resumable and extendable; `bank.data_source(N)` feeds `training.train`.

Data convention. Images come in [0, 1] (the project's k/255 or {0, 1}) and are scaled to [-1, 1]
for the UNet (`x * 2 - 1`); the DDPM/DDIM schedulers clip predicted x0 to [-1, 1] (`clip_sample`,
as in diffusers' examples). Samples go back to [0, 1].

28 vs 32 pixels (decision). Paper A's MLP VAE reads 32 x 32 = 1024 inputs (paper A App. B), i.e. the
28 x 28 MNIST-type images padded to 32 x 32, and its EDM works at 32 x 32. Here the diffusion model
works on the **unpadded 28 x 28 images with a 3-level UNet** (28 -> 14 -> 7; the default 4-level UNet
fails at 28, diffusers #3630), and the 2-pixel zero border is added when the VAE reads the data
(`pad_images`, `SampleBank.data_source(pad_to=32)`): real and synthetic images then have the same,
exactly zero border (a DM trained on padded images would have to learn it and would leave faint
noise there), and each UNet evaluation costs (28/32)^2 = 77% of a 32 x 32 one. A config with
`sample_size > image_size` pads inside the model instead (`pad_value`), and `image_size = 32`
trains on already padded data; both are supported and tested.

BinaryMNIST samples (decision, UNVERIFIED in the paper, paper A App. D-E). The DM is trained on the
binary images themselves (values -1/+1 after scaling), so its samples are nearly binary already;
`binarize_samples` thresholds them with the rule that made the training data
(`data.FIXED_THRESHOLD_LEVEL`: uint8 level k >= 128, i.e. x >= 0.5), a deterministic choice that keeps
one fixed binary image per bank entry, as the fixed binarization keeps one per training image.
The bank stores the grey levels; binarization happens on reading (`binarize=True`).

Sample bank blocks for DMaaPx (Algorithm 2). Effective epoch t (1-based) trains on block
b = (t - 1) mod k of N consecutive bank images, where k = the number of blocks used
(`num_blocks`, default all complete blocks). With k >= T every epoch sees N fresh samples (the
paper's "unlimited" DMaaPx, k = 1000); with k < T the k blocks are reused cyclically, which is our
reading of the paper's "k x |D_train| unique samples" ablation (Fig. 4 right; how the paper reuses
them is UNVERIFIED). Banks only grow: the first k*N images of a bank are the same whatever its final
size (bit-identical when chunk_size and the bank sizes are multiples of the sampling batch_size;
otherwise up to float rounding of other batch compositions), so k = 1, 2, 5, 10 all read prefixes
of one bank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import device as vdevice
from . import io as vio
from . import paths
from . import progress as progress_bars
from .checked_arrays import read_checked_npz, write_checked_npz
from .checks import check_int, file_sha256, named_fields
from .data import FIXED_THRESHOLD_LEVEL
from .seeding import derive_seed, make_generator
from . import locks
from .checkpoints import list_complete_checkpoints, remove_stale_staging, verify_checkpoint, write_checkpoint_atomically
from .training import weights_sha256

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
SAMPLERS = ("ddim", "heun")
PRECISIONS = ("float32", "bfloat16")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
SAVE_FORMAT = "vaegen_utils.diffusion"
SAVE_FORMAT_VERSION = 1
CHECKPOINTS_FOLDER = "checkpoints"
RUN_CONFIG_FILE = "config.json"
COMPLETE_MARKER = "complete"
STATE_FILE = "training_state.pt"
BANK_FORMAT = "vaegen_utils.diffusion.SampleBank"
BANK_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
BANK_LOCK_FILE = ".lock"
BANKS_FOLDER = "sample_banks"


# --------------------------------------------------------------------------------------------
# Configuration and model
# --------------------------------------------------------------------------------------------



@named_fields
@dataclass(frozen=True)
class DiffusionConfig:
    """A diffusers `UNet2DModel` plus its DDPM noise schedule; JSON-serialisable.

    image_size          height = width of the data images (28 for MNIST-type data, 32 for CIFAR).
    sample_size         height = width the UNet works at; > image_size pads the images inside the
                        model with `pad_value` (a data value in [0, 1]) and crops samples back.
    channels            image channels (1 greyscale, 3 RGB).
    block_out_channels  channels per UNet level; the number of levels L needs sample_size divisible
                        by 2**(L-1) (28: at most 3 levels; 32: up to 6).
    layers_per_block    ResNet blocks per level (diffusers default 2; 1 halves the cost).
    attention           False (default): no self-attention anywhere (DownBlock2D/UpBlock2D and no
                        mid-block attention), ~5x cheaper per training step on CPU.
                        True: attention at every level but the first, as in the HF MNIST example.
    norm_num_groups     GroupNorm groups; must divide every entry of block_out_channels.
    num_train_timesteps, beta_schedule, beta_start, beta_end: the DDPM forward process
                        (diffusers names; "squaredcos_cap_v2" = Nichol & Dhariwal's cosine schedule,
                        used by the HF MNIST example; beta_start/beta_end only for linear schedules).
    """

    image_size: int = 28
    sample_size: int = 28
    channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention: bool = False
    norm_num_groups: int = 32
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for name in ("image_size", "sample_size", "channels", "layers_per_block", "norm_num_groups", "num_train_timesteps"):
            set_field(name, check_int(name, getattr(self, name), minimum=1))
        channels = self.block_out_channels
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) == 0:
            raise ValueError(f"block_out_channels must be a non-empty list of ints, got {channels!r}")
        channels = tuple(check_int("block_out_channels[...]", value, minimum=1) for value in channels)
        set_field("block_out_channels", channels)
        levels = len(channels)
        if self.sample_size % (2 ** (levels - 1)) != 0:
            raise ValueError(
                f"a {levels}-level UNet halves the image {levels - 1} times, so sample_size must be divisible "
                f"by {2 ** (levels - 1)}; got sample_size={self.sample_size}. At 28x28 use at most 3 levels, "
                f"e.g. block_out_channels=(32, 64, 64), or set sample_size=32 to pad (diffusers #3630)."
            )
        if self.sample_size < self.image_size or (self.sample_size - self.image_size) % 2:
            raise ValueError(
                f"sample_size ({self.sample_size}) must be >= image_size ({self.image_size}) and differ from it "
                f"by an even number of pixels (the image is padded equally on both sides)"
            )
        bad = [value for value in channels if value % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"norm_num_groups={self.norm_num_groups} must divide every block_out_channels entry, but not {bad}; "
                f"lower norm_num_groups (e.g. 8) or use multiples of it"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if not isinstance(self.attention, bool):
            raise ValueError(f"attention must be True or False, got {self.attention!r}")
        for name in ("beta_start", "beta_end", "pad_value"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            set_field(name, float(value))
        if not 0.0 <= self.pad_value <= 1.0:
            raise ValueError(f"pad_value is a data value and must be in [0, 1], got {self.pad_value}")

    @property
    def levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["block_out_channels"] = list(self.block_out_channels)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DiffusionConfig":
        values = dict(values)  # unknown keys are refused with the valid field names (checks.named_fields)
        if "block_out_channels" in values:
            values["block_out_channels"] = tuple(values["block_out_channels"])
        return cls(**values)

    def with_changes(self, **changes) -> "DiffusionConfig":
        return dataclasses.replace(self, **changes)

    # Schedulers ----------------------------------------------------------------------------
    def _schedule_kwargs(self) -> dict:
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            prediction_type="epsilon",
        )

    def ddpm_scheduler(self):
        """The training-time forward process (`add_noise`); clips predicted x0 to [-1, 1]."""
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self._schedule_kwargs(), clip_sample=True)

    def ddim_scheduler(self):
        """DDIM (eta = 0 in `step`) with 'trailing' timesteps: the first step starts at t = T-1,
        which matters for few-step sampling (Lin et al. 2024); predicted x0 clipped to [-1, 1]."""
        from diffusers import DDIMScheduler

        return DDIMScheduler(**self._schedule_kwargs(), clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")

    def heun_scheduler(self):
        """EDM-style 2nd-order Heun sampler on Karras et al.'s sigma grid (rho = 7), as in paper A's EDM.

        Caveat: the cosine schedule's sigma_max is ~2e4 (vs EDM's 80), so Karras spacing spends several
        steps at very high noise; with `beta_schedule="linear"` sigma_max is ~157.
        """
        from diffusers import HeunDiscreteScheduler

        with warnings.catch_warnings():  # numpy 2 copy= deprecation inside diffusers' Heun scheduler
            warnings.simplefilter("ignore", DeprecationWarning)
            return HeunDiscreteScheduler(**self._schedule_kwargs(), use_karras_sigmas=True, clip_sample=True)


def tiny_config(**changes) -> DiffusionConfig:
    """A UNet small enough for unit tests (~30k parameters; 2 levels at 8x8)."""
    values = dict(image_size=8, sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)
    values.update(changes)
    return DiffusionConfig(**values)


def cpu_config(image_size: int = 28, channels: int = 1) -> DiffusionConfig:
    """The cpu profile's UNet: 3 levels (32, 64, 64), one ResNet block per level, no attention.

    1.05 M parameters at 28x28: the HF MNIST example's UNet (diffusers' unconditional training example) without attention and
    with one ResNet block per level instead of two. Measured on the project's 2-core AMX machine
    while two other jobs kept it busy (load ~4), one torch thread, batch 128: 2.8 s per float32
    training step, 1.0 s in bfloat16 (2.7x); DDIM-20 sampling 7 images/s float32, 17-29 in bfloat16.
    The 4-level (32, 64, 64, 64) UNet on 32x32 padded images costs 1.27 s per bf16 step (+24%) and
    (64, 64, 64) at 28x28 1.61 s. Re-measure on an idle machine with `measure_speed(cpu_config())`.
    """
    return DiffusionConfig(image_size=image_size, sample_size=image_size, channels=channels)


class DiffusionModel(nn.Module):
    """A `UNet2DModel` built from a `DiffusionConfig` (`.unet`, `.config`).

    `forward(x_scaled, t)` returns the predicted noise for UNet-sized inputs in [-1, 1];
    `to_model_space(images)` / `to_data_space(x)` convert between data images in [0, 1]
    (`config.data_shape`) and padded, scaled UNet inputs.
    """

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        if not isinstance(config, DiffusionConfig):
            raise ValueError(f"DiffusionModel needs a DiffusionConfig, got {type(config).__name__}")
        from diffusers import UNet2DModel

        self.config = config
        levels = config.levels
        if config.attention:
            down = ("DownBlock2D",) + ("AttnDownBlock2D",) * (levels - 1)
            up = ("AttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",)
        else:
            down = ("DownBlock2D",) * levels
            up = ("UpBlock2D",) * levels
        self.unet = UNet2DModel(
            sample_size=config.sample_size,
            in_channels=config.channels,
            out_channels=config.channels,
            layers_per_block=config.layers_per_block,
            block_out_channels=config.block_out_channels,
            down_block_types=down,
            up_block_types=up,
            add_attention=config.attention,
            norm_num_groups=config.norm_num_groups,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample

    @property
    def padding(self) -> int:
        return (self.config.sample_size - self.config.image_size) // 2

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """Data images (N, C, H, W) in [0, 1] -> padded UNet inputs in [-1, 1]."""
        if self.padding:
            images = F.pad(images, (self.padding,) * 4, value=self.config.pad_value)
        return images * 2.0 - 1.0

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        """UNet-space samples in [-1, 1] -> data images in [0, 1], padding cropped."""
        images = ((x + 1.0) / 2.0).clamp_(0.0, 1.0)
        if self.padding:
            p = self.padding
            images = images[..., p:-p, p:-p]
        return images.contiguous()

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


def build_diffusion_model(config: DiffusionConfig | Mapping[str, Any], seed: int | None = None) -> DiffusionModel:
    """Build the model; with `seed`, initialise under a forked RNG (the global RNG is untouched)."""
    if isinstance(config, Mapping):
        config = DiffusionConfig.from_dict(config)
    if seed is None:
        return DiffusionModel(config)
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionModel(config)



def save_diffusion(model: DiffusionModel, folder: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `weights.pt` then `config.json` (config, both SHA-256s, `extra`) atomically into `folder`.

    `weights_sha256` in config.json is the hash of the state dict (`weights_sha256(model)`, the
    identity sample banks record); `file_sha256` is the hash of weights.pt (checked by `load_diffusion`).
    """
    if not isinstance(model, DiffusionModel):
        raise ValueError(f"save_diffusion needs a DiffusionModel, got {type(model).__name__}")
    folder = Path(folder)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    vio.atomic_save(folder / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    payload = {
        "format": SAVE_FORMAT,
        "format_version": SAVE_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "num_parameters": model.num_parameters(),
        "weights_sha256": weights_sha256(model),
        "file_sha256": file_sha256(folder / WEIGHTS_FILE),
        **dict(extra or {}),
    }
    vio.atomic_write_json(folder / CONFIG_FILE, payload)
    return folder


def load_diffusion(folder: str | os.PathLike, *, device: str | torch.device | None = None) -> DiffusionModel:
    """The model saved by `save_diffusion` (eval mode) on `device` (default `device.resolve()`: CUDA
    when available); errors name the folder and the fix."""
    folder = Path(folder)
    fix = f"delete {folder} and save or train the diffusion model again"
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no complete saved diffusion model at {folder}: {name} is missing; {fix}")
    payload = vio.read_json(folder / CONFIG_FILE)
    if not isinstance(payload, dict) or payload.get("format") != SAVE_FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE} was not written by vaegen_utils.diffusion.save_diffusion; {fix}")
    if payload.get("file_sha256") and file_sha256(folder / WEIGHTS_FILE) != payload["file_sha256"]:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not match {folder / CONFIG_FILE} (SHA-256 differs); {fix}")
    model = build_diffusion_model(DiffusionConfig.from_dict(payload["config"]), seed=0)
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the folder and the fix
        raise ValueError(f"could not load {folder / WEIGHTS_FILE} ({type(error).__name__}: {error}); {fix}") from error
    return model.to(vdevice.resolve(device)).eval()


# --------------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------------


def pad_images(images: torch.Tensor, size: int, value: float = 0.0) -> torch.Tensor:
    """Pad (N, C, H, W) images equally on all sides to size x size (28 -> 32: 2 pixels of `value`).

    Paper A's MLP VAE reads 32 x 32 images (paper A App. B); MNIST's background is 0, so the zero
    border is the natural extension of the image. Images already size x size are returned as is.
    """
    height, width = images.shape[-2:]
    if height == size and width == size:
        return images
    if height > size or width > size or (size - height) % 2 or (size - width) % 2:
        raise ValueError(
            f"cannot pad {height}x{width} images to {size}x{size}: the size must be at least the image size "
            f"and differ from it by an even number of pixels"
        )
    ph, pw = (size - height) // 2, (size - width) // 2
    return F.pad(images, (pw, pw, ph, ph), value=value)


def quantize_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> uint8 levels k = round(255 x) (the data module's k/255 convention)."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def uint8_to_float(levels: torch.Tensor) -> torch.Tensor:
    """uint8 levels k -> float32 k/255 (bit-identical to `data.load_dataset`'s greyscale images)."""
    return levels.to(torch.float32).div_(255.0)


def binarize_samples(images: torch.Tensor) -> torch.Tensor:
    """Binary {0, 1} float32 images by the data module's fixed rule: level round(255 x) >= 128.

    For uint8 input the levels are used directly. This is the threshold that binarized the
    BinaryMNIST training data (`data.FIXED_THRESHOLD_LEVEL`); applying it to DM samples is our
    choice, UNVERIFIED in paper A (see the module docstring).
    """
    levels = images if images.dtype == torch.uint8 else quantize_uint8(images)
    return (levels >= FIXED_THRESHOLD_LEVEL).to(torch.float32)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


class DiffusionNonFiniteLossError(FloatingPointError):
    """The diffusion loss or gradient norm became NaN/inf at `step`; raised before the update."""

    def __init__(self, *, step: int, loss: float, grad_norm: float | None = None):
        self.step, self.loss, self.grad_norm = step, loss, grad_norm
        what = f"loss={loss}" + ("" if grad_norm is None else f", gradient norm={grad_norm}")
        super().__init__(
            f"non-finite diffusion training {what} at step {step}; the model holds the weights from before "
            f"this step. Check the images for NaN/inf (torch.isfinite(images).all()) and that they are in "
            f"[0, 1], lower the learning rate, or try precision='float32'."
        )


@dataclass
class DiffusionTrainResult:
    """What `train_diffusion` returns.

    model        the model to sample from: the EMA weights if ema_decay is set, else the raw weights.
    raw_model    the optimised weights.
    losses       the training loss of every step (float32 MSE of the noise prediction), steps 1..N.
    run_dir      the run folder or None; steps: the final step; resumed_from: checkpoint step or None;
    train_seconds  cumulative training wall-clock time over all sessions of the run.
    """

    model: DiffusionModel
    raw_model: DiffusionModel
    losses: list[float]
    steps: int
    run_dir: Path | None = None
    resumed_from: int | None = None
    train_seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def smoothed_losses(self, window: int = 50) -> np.ndarray:
        """Moving average of the per-step losses (for plots)."""
        values = np.asarray(self.losses, dtype=np.float64)
        if len(values) < window:
            return values
        kernel = np.ones(window) / window
        return np.convolve(values, kernel, mode="valid")


def checkpoint_folder(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_FOLDER / f"step_{step:07d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[int]:
    """Steps with a complete checkpoint in run_dir, ascending."""
    return list_complete_checkpoints(run_dir, "step_")


def load_checkpoint(
    run_dir: str | os.PathLike, step: int | None = None, *, ema: bool = True, device: str | torch.device | None = None
) -> DiffusionModel:
    """The model saved at `step` (default: the last); the EMA weights when the run kept them and ema=True.

    Use it to compare an early and the final checkpoint of one run (the issue's quality report).
    """
    steps = list_checkpoints(run_dir)
    if not steps:
        raise FileNotFoundError(f"no complete diffusion checkpoint in {Path(run_dir) / CHECKPOINTS_FOLDER}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(f"no complete diffusion checkpoint for step {step} in {run_dir}; available: {steps}")
    folder = checkpoint_folder(run_dir, step)
    _verify(folder)
    if ema and (folder / "ema").is_dir():
        return load_diffusion(folder / "ema", device=device)
    return load_diffusion(folder / "model", device=device)


def _verify(folder: Path) -> dict:
    """Check every file of a diffusion checkpoint against the SHA-256 recorded in its marker."""
    fix = (
        f"Delete the checkpoint folder {folder}: train_diffusion then resumes from the previous checkpoint "
        f"(or delete the run folder {folder.parent.parent} to retrain)."
    )
    return verify_checkpoint(folder, fix=fix, required=("model/" + WEIGHTS_FILE,))


def read_training_state(run_dir: str | os.PathLike, step: int) -> dict:
    """The verified training state (optimizer, losses, step, seconds) of the checkpoint at `step`."""
    folder = checkpoint_folder(run_dir, step)
    _verify(folder)
    try:
        return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the folder and the fix
        raise ValueError(
            f"could not read {folder / STATE_FILE} ({type(error).__name__}: {error}); delete {folder} to resume "
            f"from the previous checkpoint"
        ) from error


def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=make_generator(derive_seed(seed, "diffusion-batch-order", epoch)))


def batch_indices(seed: int, step: int, batch_size: int, n: int, _cache: dict | None = None) -> torch.Tensor:
    """Indices of the images of (0-based) `step`: consecutive slices of a stream of seeded epoch permutations.

    A pure function of (seed, step), so a resumed run draws exactly the batches of an uninterrupted one.
    """
    start = step * batch_size
    pieces, remaining, position = [], batch_size, start
    while remaining:
        epoch, offset = divmod(position, n)
        if _cache is not None and _cache.get("epoch") == epoch:
            permutation = _cache["permutation"]
        else:
            permutation = _epoch_permutation(seed, epoch, n)
            if _cache is not None:
                _cache.update(epoch=epoch, permutation=permutation)
        take = min(remaining, n - offset)
        pieces.append(permutation[offset : offset + take])
        remaining -= take
        position += take
    return torch.cat(pieces)


def _settings_dict(**settings) -> dict:
    return json.loads(json.dumps(settings, default=vio._json_default))


def _data_fingerprint(images: torch.Tensor) -> dict:
    from .cache import data_fingerprint  # lazy: cache imports training

    return data_fingerprint(images)


def _check_training_images(images: Any, config: DiffusionConfig) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor (N, C, H, W) in [0, 1], got "
            f"{type(images).__name__ if not isinstance(images, torch.Tensor) else images.dtype}"
        )
    if tuple(images.shape[1:]) != config.data_shape or images.shape[0] == 0:
        raise ValueError(
            f"images have shape {tuple(images.shape)} but the config expects (N, {', '.join(map(str, config.data_shape))}); "
            f"set image_size/channels in DiffusionConfig to the data (28 for MNIST; pad with pad_images for 32)"
        )
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf values; clean the data before training")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images must be in [0, 1] (the data range), got values in [{low}, {high}]")


@locks.holding_folder_lock("run_dir")
def train_diffusion(
    config: DiffusionConfig,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    precision: str = "float32",
    run_dir: str | os.PathLike | None = None,
    checkpoint_steps: Sequence[int] | int | None = None,
    ema_decay: float | None = 0.999,
    warmup_steps: int = 100,
    grad_clip: float | None = 1.0,
    weight_decay: float = 0.0,
    progress: bool | None = None,
    device: str | torch.device | None = None,
) -> DiffusionTrainResult:
    """Train a `DiffusionModel` on `images` (N, C, H, W) in [0, 1] with the DDPM noise-prediction loss.

    Each step: a batch of images (`batch_indices`, epochs of seeded permutations), uniform timesteps
    t in {0..T-1}, noise eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, loss =
    mean((eps_theta(x_t, t) - eps)^2); AdamW (weight_decay), gradient-norm clipping at grad_clip,
    learning rate ramped linearly over warmup_steps then constant; EMA weights with decay
    min(ema_decay, (1 + s) / (10 + s)) at step s (the usual warm-up, so early checkpoints' EMA is not
    dominated by the random initialisation). precision="bfloat16" runs the UNet under bf16 autocast of
    the device type (loss, gradients and AdamW in float32).

    device: where the UNet trains (default `device.resolve()`: CUDA when available). The weights are
    initialised on the CPU and moved, the images are staged on the device once (uint8 where exact),
    and batch order, timesteps and noise are drawn by CPU generators and copied, so every device
    trains on the same draws. On the CPU the loss is read every step (NaN guard before the update,
    as always); elsewhere every `device.sync_every` steps, with fused AdamW skipping updates after a
    non-finite loss or gradient norm (`found_inf`), so the model keeps its last good weights.

    run_dir: `config.json` (the run's identity: model config, every setting except `steps`, a data
    fingerprint and the initial weights' hash) and `checkpoints/step_XXXXXXX/` folders (model, EMA,
    optimizer state, losses; the marker holds every file's SHA-256, checked before resuming), each
    written to a temp folder and renamed when complete; the folder is locked for the whole call. A rerun resumes
    from the last checkpoint at or before `steps` and ends bit-identical to an uninterrupted run; a
    larger `steps` extends a finished run. checkpoint_steps: a list of steps or k (every k steps); the
    final step is always checkpointed.
    """
    if not isinstance(config, DiffusionConfig):
        raise ValueError(f"config must be a DiffusionConfig, got {type(config).__name__}")
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if ema_decay is not None and not 0.0 < float(ema_decay) < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1) or None (no EMA), got {ema_decay!r}")
    if grad_clip is not None and not float(grad_clip) > 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")
    _check_training_images(images, config)
    if isinstance(checkpoint_steps, int) and not isinstance(checkpoint_steps, bool):
        checkpoint_set = set(range(check_int("checkpoint_steps", checkpoint_steps, minimum=1), steps + 1, checkpoint_steps))
    else:
        checkpoint_set = {check_int("checkpoint_steps[...]", value, minimum=1) for value in (checkpoint_steps or [])}
    checkpoint_set = {value for value in checkpoint_set if value <= steps} | {steps}

    init_seed = derive_seed(seed, "diffusion-init")
    device = vdevice.resolve(device)
    model = build_diffusion_model(config, seed=init_seed)  # initialised on the CPU: the same weights on every device
    ema_model = build_diffusion_model(config, seed=init_seed) if ema_decay is not None else None
    settings = _settings_dict(
        batch_size=batch_size,
        learning_rate=float(learning_rate),
        seed=seed,
        precision=precision,
        ema_decay=None if ema_decay is None else float(ema_decay),
        warmup_steps=warmup_steps,
        grad_clip=None if grad_clip is None else float(grad_clip),
        weight_decay=float(weight_decay),
        optimizer="AdamW",
        loss="DDPM epsilon MSE",
    )
    setup = _settings_dict(
        kind="diffusion_training",
        format_version=1,
        diffusion_config=config.to_dict(),
        settings=settings,
        data=_data_fingerprint(images),
        initial_weights_sha256=weights_sha256(model),
    )
    run_path = Path(run_dir) if run_dir is not None else None
    model.to(device)
    if ema_model is not None:
        ema_model.to(device)
    # Fused AdamW only off the CPU: it honours found_inf (deferred NaN checks), and the CPU keeps
    # the foreach kernel its committed numbers were made with.
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(learning_rate), weight_decay=float(weight_decay), **fused)
    losses: list[float] = []
    start_step, train_seconds, resumed_from = 0, 0.0, None
    if run_path is not None:
        _check_or_write_setup(run_path, setup)
        remove_stale_staging(run_path, holding_lock=True)  # interrupted writes; we hold the run's lock
        resume = [value for value in list_checkpoints(run_path) if value <= steps]
        if resume:
            folder = checkpoint_folder(run_path, resume[-1])
            state = read_training_state(run_path, resume[-1])  # verifies every file of the checkpoint
            model.load_state_dict(load_diffusion(folder / "model").state_dict())
            if ema_model is not None:
                ema_model.load_state_dict(load_diffusion(folder / "ema").state_dict())
            optimizer.load_state_dict(state["optimizer"])
            start_step, train_seconds = int(state["step"]), float(state["train_seconds"])
            losses = [float(value) for value in state["losses"]]
            resumed_from = start_step

    scheduler = config.ddpm_scheduler()
    alphas_cumprod = vdevice.to_device(scheduler.alphas_cumprod.to(torch.float32), device)  # (T,)
    use_bf16 = precision == "bfloat16"
    staged = vdevice.stage_images(images, device)
    n = images.shape[0]
    permutation_cache: dict = {}
    parameters = list(model.parameters())
    ema_parameters = list(ema_model.parameters()) if ema_model is not None else []
    guard = _DiffusionGuard(optimizer, device, losses)
    bar = _progress_bar(progress, total=steps - start_step)
    model.train()
    try:
        for step in range(start_step, steps):  # 0-based; the step number reported is step + 1
            started = time.perf_counter()
            index = vdevice.to_device(batch_indices(seed, step, batch_size, n, permutation_cache), device)
            x0 = model.to_model_space(staged.batch(index))
            generator = make_generator(derive_seed(seed, "diffusion-step", step))
            t = vdevice.randint(0, config.num_train_timesteps, (x0.shape[0],), generator=generator, device=device)
            noise = vdevice.randn(x0.shape, generator=generator, device=device)
            abar = alphas_cumprod[t].view(-1, 1, 1, 1)
            noisy = abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise
            with vdevice.autocast(device, use_bf16):
                predicted = model(noisy, t)
            loss = F.mse_loss(predicted.float(), noise)
            if guard.record(step + 1, loss.detach()):
                guard.check()  # on the CPU: every step, before the update
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(parameters, float(grad_clip))
                if guard.record_norm(step + 1, norm.detach()):
                    guard.check()
            for group in optimizer.param_groups:
                group["lr"] = float(learning_rate) * (min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0)
            optimizer.step()
            if ema_model is not None:
                decay = min(float(ema_decay), (1.0 + step) / (10.0 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_parameters, parameters, 1.0 - decay)
            train_seconds += time.perf_counter() - started
            bar.update(1)
            if (step + 1) % 50 == 0:
                guard.check()  # moves the pending losses into `losses`
                bar.set_postfix({"loss": f"{np.mean(losses[-50:]):.4f}"}, refresh=False)
            if run_path is not None and (step + 1) in checkpoint_set:
                guard.check()  # never checkpoint weights that saw a non-finite loss
                state = {
                    "step": step + 1,
                    "train_seconds": train_seconds,
                    "optimizer": optimizer.state_dict(),
                    "losses": torch.tensor(losses, dtype=torch.float64),
                    "torch_version": str(torch.__version__),
                }
                _write_checkpoint(run_path, step + 1, model, ema_model, state, settings)
        guard.check()
    finally:
        bar.close()
        guard.detach()
    model.eval()
    if ema_model is not None:
        ema_model.eval()
    return DiffusionTrainResult(
        model=ema_model if ema_model is not None else model,
        raw_model=model,
        losses=losses,
        steps=steps,
        run_dir=run_path,
        resumed_from=resumed_from,
        train_seconds=train_seconds,
        settings=settings,
    )


class _DiffusionGuard:
    """The diffusion NaN guard without a host sync per step (see `train_diffusion`).

    Losses (and gradient norms) stay on the device until `check` reads them, every
    `device.sync_every` steps (every step on the CPU) and before checkpoints; a device flag, given
    to fused AdamW as `found_inf`, makes it skip every update from the first non-finite value on.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, losses: list[float]):
        self.optimizer, self.losses = optimizer, losses
        self.every = vdevice.sync_every(device)
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # (step, loss, grad norm)
        self.flag = torch.zeros((), dtype=torch.float32, device=device)
        if optimizer.defaults.get("fused"):
            optimizer.found_inf = self.flag

    def _fold(self, value: torch.Tensor) -> None:
        self.flag.copy_(torch.maximum(self.flag, (~torch.isfinite(value)).float()))

    def record(self, step: int, loss: torch.Tensor) -> bool:
        """Keep a step's loss; True when it is time to `check`."""
        self.pending.append((step, loss, None))
        self._fold(loss)
        return len(self.pending) >= self.every

    def record_norm(self, step: int, norm: torch.Tensor) -> bool:
        """Keep the step's gradient norm; True on the CPU, where it is checked before the update."""
        if self.pending and self.pending[-1][0] == step:
            self.pending[-1] = (step, self.pending[-1][1], norm)
        else:  # the loss of this step was checked already
            self.pending.append((step, None, norm))
        self._fold(norm)
        return self.every == 1

    def check(self) -> None:
        """One host read of the pending losses and norms; raise for the first non-finite one."""
        if not self.pending:
            return
        zero = torch.zeros((), dtype=torch.float32, device=self.flag.device)
        values = torch.stack(
            [torch.stack([zero if loss is None else loss.float(), zero if norm is None else norm.float()])
             for _, loss, norm in self.pending]
        )  # (k, 2)
        for (step, loss, norm), (loss_value, norm_value) in zip(self.pending, vdevice.to_host(values).tolist()):
            if loss is not None and not math.isfinite(loss_value):
                raise DiffusionNonFiniteLossError(step=step, loss=loss_value)
            if norm is not None and not math.isfinite(norm_value):
                logged = self.losses[-1] if loss is None and self.losses else loss_value
                self.optimizer.zero_grad(set_to_none=True)
                raise DiffusionNonFiniteLossError(step=step, loss=logged, grad_norm=norm_value)
            if loss is not None:
                self.losses.append(loss_value)
        self.pending.clear()

    def detach(self) -> None:
        if getattr(self.optimizer, "found_inf", None) is self.flag:
            del self.optimizer.found_inf


def _check_or_write_setup(run_dir: Path, setup: dict) -> None:
    path = run_dir / RUN_CONFIG_FILE
    if path.is_file():
        stored = vio.read_json(path)
        if stored != setup:
            if not list_checkpoints(run_dir):
                vio.atomic_write_json(path, setup)  # nothing saved under the old setup: take the folder over
                return
            changed = sorted(key for key in set(stored) | set(setup) if stored.get(key) != setup.get(key))
            raise ValueError(
                f"{run_dir} holds a diffusion run with a different setup (differs in: {', '.join(changed)}); "
                f"its checkpoints cannot be resumed with this setup. Delete {run_dir} to start over, or pass "
                f"another run_dir."
            )
        return
    if list_checkpoints(run_dir):
        raise ValueError(f"{run_dir} has checkpoints but no {RUN_CONFIG_FILE}; delete {run_dir} or pass another run_dir")
    vio.atomic_write_json(path, setup)


def _write_checkpoint(run_dir: Path, step: int, model, ema_model, state: dict, settings: dict) -> Path:
    def fill(staging: Path) -> None:
        extra = {"training": {"step": step, **settings}}
        save_diffusion(model, staging / "model", extra=extra)
        if ema_model is not None:
            save_diffusion(ema_model, staging / "ema", extra={**extra, "ema": True})
        vio.atomic_save(staging / STATE_FILE, lambda tmp: torch.save(state, tmp))

    return write_checkpoint_atomically(run_dir / CHECKPOINTS_FOLDER, checkpoint_folder(run_dir, step), fill, {"step": step})


def _progress_bar(progress: bool | None, *, total: int, desc: str = "diffusion training", unit: str = "step"):
    """`vaegen_utils.progress` decides widget / text / terminal / off."""
    return progress_bars.bar(total=total, progress=progress, desc=desc, unit=unit)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def initial_noise(config: DiffusionConfig, seed: int, start: int, count: int) -> torch.Tensor:
    """x_T for images start..start+count-1: image i from its own generator derive_seed(seed, 'diffusion-sample', i)."""
    shape = (config.channels, config.sample_size, config.sample_size)
    return torch.stack(
        [torch.randn(shape, generator=make_generator(derive_seed(seed, "diffusion-sample", i))) for i in range(start, start + count)]
    )


def network_evaluations(sampler: str, steps: int) -> int:
    """UNet evaluations per image: DDIM `steps`, Heun 2*steps-1 (EDM's 18 steps = 35 NFE)."""
    return steps if sampler == "ddim" else 2 * steps - 1


@torch.no_grad()
def sample(
    model: DiffusionModel,
    n: int,
    *,
    sampler: str = "ddim",
    steps: int = 20,
    seed: int = 0,
    start_index: int = 0,
    batch_size: int = 250,
    precision: str = "float32",
    progress: bool | None = None,
) -> torch.Tensor:
    """n images (n, C, image_size, image_size) in [0, 1] from a deterministic sampler.

    sampler="ddim": DDIM with eta = 0 (no noise after x_T), 'trailing' timesteps, predicted x0
    clipped to [-1, 1]; sampler="heun": the EDM-style Heun sampler (Karras sigmas), 2*steps-1
    evaluations. Image i (i = start_index, ...) starts from the noise of its own seeded CPU generator,
    so the same (seed, i) gives the same image whatever n and start_index (up to float rounding
    differences of other batch compositions), on every device. precision="bfloat16" runs the UNet
    under bf16 autocast of its device type. The UNet runs where the model lives; the images come
    back on the CPU (like a data set), one host copy per batch.
    """
    if not isinstance(model, DiffusionModel):
        raise ValueError(f"sample needs a DiffusionModel, got {type(model).__name__}")
    n = check_int("n", n, minimum=0)
    steps = check_int("steps", steps, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    start_index = check_int("start_index", start_index, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    config = model.config
    device = vdevice.of(model)
    vdevice.apply_policy(device)
    was_training = model.training
    model.eval()
    outputs = []
    bar = _progress_bar(progress, total=n, desc=f"{sampler.upper()}-{steps} sampling", unit="image")
    try:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            x = vdevice.to_device(initial_noise(config, seed, start_index + start, count), device)
            x = _denoise(model, x, sampler=sampler, steps=steps, use_bf16=precision == "bfloat16")
            outputs.append(vdevice.to_host(model.to_data_space(x)))
            bar.update(count)
    finally:
        bar.close()
        model.train(was_training)
    if not outputs:
        return torch.zeros((0, *config.data_shape))
    return torch.cat(outputs)


def _denoise(model: DiffusionModel, x: torch.Tensor, *, sampler: str, steps: int, use_bf16: bool) -> torch.Tensor:
    config = model.config
    device = x.device

    def predict(inputs: torch.Tensor, t) -> torch.Tensor:
        if sampler == "ddim":  # t is a host integer: the schedule stays on the CPU, no sync per step
            timestep = torch.full((inputs.shape[0],), int(round(float(t))), dtype=torch.long, device=device)
        else:
            timestep = t
        with vdevice.autocast(device, use_bf16):
            return model(inputs, timestep).float()

    if sampler == "ddim":
        scheduler = config.ddim_scheduler()
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            x = scheduler.step(predict(x, t), t, x, eta=0.0).prev_sample
        return x
    scheduler = config.heun_scheduler()  # stateful (keeps the first Heun stage): one per batch
    with warnings.catch_warnings():  # numpy 2 copy= deprecation inside diffusers' Heun scheduler
        warnings.simplefilter("ignore", DeprecationWarning)
        scheduler.set_timesteps(steps)  # sigmas stay on the CPU: 0-dim factors, no host sync per step
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        inputs = scheduler.scale_model_input(x, t)
        x = scheduler.step(predict(inputs, t), t, x).prev_sample
    return x


# --------------------------------------------------------------------------------------------
# Quality checks
# --------------------------------------------------------------------------------------------


def memorization_report(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    *,
    max_queries: int | None = 2000,
    seed: int = 0,
) -> dict:
    """Nearest-training-neighbour L2 distances of DM samples vs of real test images (memorization check).

    A DM that copies its training set gives samples much closer to their nearest training image
    than held-out test images are (distance ~0 for copies). Returns the distances (float32 tensors)
    and summaries: medians, 10th percentiles, and the fraction of samples nearer to the training set
    than the 1st percentile of test distances (`near_copy_fraction`; ~0.01 if samples behave like
    test images). Uses `neighbours.nearest_neighbour_distances` (blockwise, exact for duplicates).
    """
    from .neighbours import nearest_neighbour_distances

    sample_nn = nearest_neighbour_distances(samples, train_images, max_test=max_queries, subsample_seed=seed)
    test_nn = nearest_neighbour_distances(test_images, train_images, max_test=max_queries, subsample_seed=seed)
    sample_d, test_d = sample_nn.distances.double(), test_nn.distances.double()
    threshold = float(torch.quantile(test_d, 0.01))
    return {
        "sample_distances": sample_nn.distances,
        "test_distances": test_nn.distances,
        "sample_nearest_indices": sample_nn.indices,
        "sample_median": float(sample_d.median()),
        "test_median": float(test_d.median()),
        "sample_p10": float(torch.quantile(sample_d, 0.1)),
        "test_p10": float(torch.quantile(test_d, 0.1)),
        "test_p01": threshold,
        "near_copy_fraction": float((sample_d < threshold).double().mean()),
    }


# --------------------------------------------------------------------------------------------
# Sample banks
# --------------------------------------------------------------------------------------------


def bank_settings(
    model: DiffusionModel,
    *,
    sampler: str = "ddim",
    steps: int = 20,
    seed: int = 0,
    precision: str = "float32",
    batch_size: int = 250,
    chunk_size: int = 1000,
) -> dict:
    """Everything that decides a bank's images (not their number: banks grow by whole chunks)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {
        "format": BANK_FORMAT,
        "format_version": BANK_FORMAT_VERSION,
        "weights_sha256": weights_sha256(model),
        "diffusion_config": model.config.to_dict(),
        "sampler": sampler,
        "steps": check_int("steps", steps, minimum=1),
        "eta": 0.0,
        "network_evaluations_per_image": network_evaluations(sampler, steps),
        "seed": check_int("seed", seed, minimum=0),
        "seeding": "image i starts from torch.randn with generator seed derive_seed(seed, 'diffusion-sample', i)",
        "precision": precision,
        "batch_size": check_int("batch_size", batch_size, minimum=1),
        "chunk_size": check_int("chunk_size", chunk_size, minimum=1),
        "sample_shape": list(model.config.data_shape),
        "storage": "uint8 levels k = round(255 x), x in [0, 1]; read back as k/255",
    }


def bank_key(settings: Mapping[str, Any]) -> str:
    from .cache import config_key

    return config_key(dict(settings))


def bank_folder(settings: Mapping[str, Any], *, name: str = "bank", root: str | os.PathLike | None = None) -> Path:
    """`<root or cache_dir()/sample_banks>/<key[:16]>-<name>/`; an existing folder with that key wins."""
    from .cache import slugify

    base = Path(root) if root is not None else paths.cache_dir() / BANKS_FOLDER
    key = bank_key(settings)
    if base.is_dir():
        existing = sorted(path for path in base.glob(f"{key[:16]}-*") if path.is_dir())
        if existing:
            return existing[0]
    return base / f"{key[:16]}-{slugify(name)}"


class SampleBank:
    """Diffusion samples stored as uint8 chunks with a manifest; see the module docstring.

    Layout of `folder`: `manifest.json` (settings incl. weights SHA-256, sampler, steps, seed;
    key; `chunks`: [{index, file, start, count, sha256}]; `num_samples`; versions; timings) and
    `chunk_XXXXXX-n<count>.npz` (`chunk_XXXXXX.npz` in older banks; a `checked_arrays` file holding
    `images` uint8 (count, C, H, W) and its SHA-256). Chunk i holds images [i*chunk_size,
    i*chunk_size + count). Reading needs no lock: the manifest is replaced atomically and a chunk
    file, once listed, is never rewritten (a grown chunk gets a new file).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no sample bank at {self.folder} ({MANIFEST_FILE} missing); create it with generate_bank(...)")
        self.manifest = vio.read_json(path)
        if self.manifest.get("settings", {}).get("format") != BANK_FORMAT:
            raise ValueError(f"{path} is not a vaegen sample-bank manifest; delete {self.folder} and generate the bank again")
        self._chunks: dict[int, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"SampleBank({str(self.folder)!r}, num_samples={self.num_samples}, sampler={self.settings['sampler']!r}, steps={self.settings['steps']})"

    # Properties -------------------------------------------------------------------------
    @property
    def settings(self) -> dict:
        return self.manifest["settings"]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def num_samples(self) -> int:
        return int(self.manifest["num_samples"])

    def __len__(self) -> int:
        return self.num_samples

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.settings["sample_shape"])

    @property
    def chunk_size(self) -> int:
        return int(self.settings["chunk_size"])

    # Reading ----------------------------------------------------------------------------
    def _chunk(self, index: int) -> torch.Tensor:
        if index in self._chunks:
            return self._chunks[index]
        entries = {entry["index"]: entry for entry in self.manifest["chunks"]}
        if index not in entries:
            raise IndexError(f"chunk {index} is not in the bank {self.folder} ({self.num_samples} samples)")
        entry = entries[index]
        arrays = read_checked_npz(self.folder / entry["file"], ["images"], _chunk_settings(self.key, entry["index"], entry["count"]))
        if arrays is None:
            raise ValueError(
                f"chunk file {self.folder / entry['file']} is missing or corrupt; rerun generate_bank(...) with the "
                f"same model and settings to regenerate it"
            )
        tensor = torch.from_numpy(arrays["images"])
        self._chunks[index] = tensor
        return tensor

    def uint8(self, start: int, stop: int) -> torch.Tensor:
        """Stored levels of images [start, stop) as a uint8 tensor (stop - start, C, H, W)."""
        if not 0 <= start <= stop <= self.num_samples:
            raise IndexError(f"images [{start}, {stop}) are outside the bank's {self.num_samples} samples")
        size = self.chunk_size
        pieces = []
        position = start
        while position < stop:
            index, offset = divmod(position, size)
            chunk = self._chunk(index)
            take = min(stop - position, chunk.shape[0] - offset)
            pieces.append(chunk[offset : offset + take])
            position += take
        if not pieces:
            return torch.zeros((0, *self.sample_shape), dtype=torch.uint8)
        return torch.cat(pieces)

    def images(self, start: int = 0, stop: int | None = None, *, binarize: bool = False, pad_to: int | None = None) -> torch.Tensor:
        """Images [start, stop) as float32 in the data range: k/255, or {0, 1} with binarize=True
        (`binarize_samples`); `pad_to=32` adds a zero border (`pad_images`)."""
        levels = self.uint8(start, self.num_samples if stop is None else stop)
        images = binarize_samples(levels) if binarize else uint8_to_float(levels)
        return pad_images(images, pad_to) if pad_to is not None else images

    def num_blocks(self, block_size: int) -> int:
        """How many whole blocks of block_size images the bank holds (k in paper A's k x N)."""
        return self.num_samples // check_int("block_size", block_size, minimum=1)

    def epoch_samples(
        self, epoch: int, block_size: int, *, num_blocks: int | None = None, binarize: bool = False, pad_to: int | None = None
    ) -> torch.Tensor:
        """The images of effective epoch `epoch` (1-based): block (epoch - 1) mod k of block_size images.

        k = num_blocks (default: every whole block in the bank). Algorithm 2 of paper A with k >= T
        epochs gives every epoch fresh samples; k < T cycles the blocks (module docstring).
        """
        epoch = check_int("epoch", epoch, minimum=1)
        available = self.num_blocks(block_size)
        k = available if num_blocks is None else check_int("num_blocks", num_blocks, minimum=1)
        if available == 0 or k > available:
            raise ValueError(
                f"the bank holds {self.num_samples} samples = {available} blocks of {block_size}, but {max(k, 1)} "
                f"block(s) are needed; generate a larger bank (generate_bank(..., num_samples={max(k, 1) * block_size}))"
            )
        block = (epoch - 1) % k
        return self.images(block * block_size, (block + 1) * block_size, binarize=binarize, pad_to=pad_to)

    def data_source(
        self, block_size: int, *, num_blocks: int | None = None, binarize: bool = False, pad_to: int | None = None
    ) -> "BankDataSource":
        """An `epoch -> images` callable for `training.train(..., data_source=...)` (DMaaPx)."""
        source = BankDataSource(self, block_size, num_blocks=num_blocks, binarize=binarize, pad_to=pad_to)
        source(1)  # fail now, not in epoch 1 of training, if the bank is too small
        return source

    def describe(self) -> str:
        return f"sample_bank(key={self.key[:16]}, sampler={self.settings['sampler']}, steps={self.settings['steps']}, seed={self.settings['seed']})"


class BankDataSource:
    """Callable `epoch -> images` over a SampleBank (Algorithm 2); `describe()` is stable for cache keys."""

    def __init__(self, bank: SampleBank, block_size: int, *, num_blocks: int | None, binarize: bool, pad_to: int | None):
        self.bank = bank
        self.block_size = check_int("block_size", block_size, minimum=1)
        self.num_blocks = bank.num_blocks(self.block_size) if num_blocks is None else check_int("num_blocks", num_blocks, minimum=1)
        self.binarize = bool(binarize)
        self.pad_to = pad_to

    def __call__(self, epoch: int) -> torch.Tensor:
        return self.bank.epoch_samples(
            epoch, self.block_size, num_blocks=self.num_blocks, binarize=self.binarize, pad_to=self.pad_to
        )

    def describe(self) -> str:
        return (
            f"sample_bank_data_source(bank={self.bank.key[:16]}, block_size={self.block_size}, "
            f"num_blocks={self.num_blocks}, binarize={self.binarize}, pad_to={self.pad_to})"
        )

    def __repr__(self) -> str:
        return self.describe()


def _chunk_settings(key: str, index: int, count: int) -> dict:
    return {"bank_key": key, "index": int(index), "count": int(count)}


def generate_bank(
    model: DiffusionModel,
    num_samples: int,
    *,
    sampler: str = "ddim",
    steps: int = 20,
    seed: int = 0,
    precision: str = "float32",
    batch_size: int = 250,
    chunk_size: int = 1000,
    name: str = "bank",
    root: str | os.PathLike | None = None,
    max_new_chunks: int | None = None,
    progress: bool | None = None,
) -> SampleBank:
    """Generate (or resume, or extend) the bank of `model`'s samples with these settings; returns it.

    The folder is chosen by the settings' key (`bank_folder`). Chunks already on disk whose file
    passes its SHA-256 check are kept; missing or corrupt ones are generated, a partial last chunk is
    regenerated whole (under a new name: the smaller one stays readable) when the bank grows.
    Generation holds the bank's lock (`vaegen_utils.locks`): a second process asking for the same
    bank waits, then finds the chunks made by the first. After every chunk the manifest is re-read
    and the chunk merged into it, written atomically, so a killed run continues from its last
    complete chunk. `max_new_chunks` stops after that many new chunks (a time budget, or a simulated
    kill in tests); the returned bank then holds fewer than num_samples images (check `len(bank)`).
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    settings = bank_settings(
        model, sampler=sampler, steps=steps, seed=seed, precision=precision, batch_size=batch_size, chunk_size=chunk_size
    )
    key = bank_key(settings)
    folder = bank_folder(settings, name=name, root=root)
    needed = [(index, min(chunk_size, num_samples - index * chunk_size)) for index in range(math.ceil(num_samples / chunk_size))]
    if folder.is_dir() and _missing_chunks(folder, key, settings, needed) == []:
        with contextlib.suppress(OSError):
            os.utime(folder / MANIFEST_FILE)  # "last used", for `python -m vaegen_utils.cache clean --older-than`
        return SampleBank(folder)  # the common case: complete, no lock needed
    folder.mkdir(parents=True, exist_ok=True)
    with locks.file_lock(folder / BANK_LOCK_FILE, purpose=f"generate_bank({num_samples}) into {folder}"):
        vio.remove_stale_temporaries(folder, holding_lock=True)  # every writer of this folder holds the lock
        missing = _missing_chunks(folder, key, settings, needed)  # again: another process may have made them
        # One bar for the whole bank (a 20,000-image DDIM-20 bank takes ~10 min on 2 cores), counting
        # verified chunks on disk as done; the per-chunk sample() calls stay silent.
        bank_bar = _progress_bar(progress, total=num_samples, desc=f"sample bank {name} ({sampler}-{steps})", unit="image")
        bank_bar.update(num_samples - sum(count for _, count in missing))
        for new_chunks, (index, count) in enumerate(missing):
            if max_new_chunks is not None and new_chunks >= max_new_chunks:
                break
            start = index * chunk_size
            started = time.perf_counter()
            images = sample(
                model, count, sampler=sampler, steps=steps, seed=seed, start_index=start,
                batch_size=batch_size, precision=precision, progress=False,
            )
            levels = quantize_uint8(images).numpy()
            file_name = f"chunk_{index:06d}-n{count}.npz"  # the count in the name: a grown chunk never replaces a smaller one in place
            write_checked_npz(folder / file_name, {"images": levels}, _chunk_settings(key, index, count))
            entry = {"index": index, "file": file_name, "start": start, "count": count, "sha256": file_sha256(folder / file_name)}
            _merge_into_manifest(folder, key, settings, entry, seconds=time.perf_counter() - started)
            bank_bar.update(count)
        bank_bar.close()
        _merge_into_manifest(folder, key, settings)  # a manifest exists even when nothing was missing
    return SampleBank(folder)


def _read_manifest(folder: Path, key: str, settings: Mapping[str, Any]) -> dict | None:
    """The bank's manifest, None when there is none; an error when it belongs to another bank."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = vio.read_json(path, fix=f"Delete {folder} and generate the bank again.")
    if manifest.get("key") != key or manifest.get("settings") != json.loads(json.dumps(dict(settings))):
        raise ValueError(f"{path} belongs to another bank (key mismatch); delete {folder} and rerun")
    return manifest


def _missing_chunks(folder: Path, key: str, settings: Mapping[str, Any], needed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(index, count) of the needed chunks the bank lacks: absent, smaller, or failing their check."""
    manifest = _read_manifest(folder, key, settings) or {}
    chunks = {int(entry["index"]): entry for entry in manifest.get("chunks", [])}
    missing = []
    for index, count in needed:
        entry = chunks.get(index)
        if entry is not None and entry["count"] >= count:
            if read_checked_npz(folder / entry["file"], ["images"], _chunk_settings(key, index, entry["count"])) is not None:
                continue  # (a corrupt file was deleted with a warning by read_checked_npz)
        missing.append((index, count))
    return missing


def _merge_into_manifest(
    folder: Path, key: str, settings: Mapping[str, Any], entry: dict | None = None, *, seconds: float | None = None
) -> None:
    """Re-read the manifest, add `entry`, write it atomically. Call while holding the bank's lock."""
    import diffusers

    manifest = _read_manifest(folder, key, settings) or {}
    chunks = {int(item["index"]): item for item in manifest.get("chunks", [])}
    timings = list(manifest.get("seconds_per_chunk", []))
    if entry is not None:
        chunks[entry["index"]] = entry
        timings.append(seconds)
    ordered = [chunks[index] for index in sorted(chunks)]
    complete = 0
    for item in ordered:  # count the contiguous prefix of complete chunks
        if item["start"] != complete:
            break
        complete += item["count"]
    vio.atomic_write_json(
        folder / MANIFEST_FILE,
        {
            "key": key,
            "settings": dict(settings),
            "num_samples": complete,
            "chunks": ordered,
            "seconds_per_chunk": timings,
            "versions": {"torch": str(torch.__version__), "diffusers": diffusers.__version__, "torch_threads": torch.get_num_threads()},
        },
    )


def open_bank(model: DiffusionModel, *, root: str | os.PathLike | None = None, **settings) -> SampleBank:
    """The existing bank of `model` with these settings (`bank_settings` keywords); FileNotFoundError if none."""
    folder = bank_folder(bank_settings(model, **settings), root=root)
    return SampleBank(folder)


# --------------------------------------------------------------------------------------------
# Speed measurements
# --------------------------------------------------------------------------------------------


def measure_speed(
    config: DiffusionConfig,
    *,
    batch_size: int = 128,
    train_repeats: int = 4,
    sample_batch_size: int = 250,
    sample_repeats: int = 3,
    precisions: Sequence[str] = PRECISIONS,
    rounds: int = 2,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict:
    """Seconds per training step and UNet forward cost, per precision, on this machine.

    Precisions are measured in alternating rounds (A B A B ...) and the minimum over repeats is kept,
    which is robust to other processes on a shared machine. DDIM-k images/s = images per forward /
    (k x forward seconds) (scheduler cost is negligible). Returns a dict with `train_step_s[precision]`,
    `forward_s[precision]` (for sample_batch_size images), `ddim20_images_per_s[precision]`, the parameter
    count, torch threads and the 1-minute load average at the start and end.
    """
    device = vdevice.resolve(device)
    model = build_diffusion_model(config, seed=seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = make_generator(seed)
    size = config.sample_size
    x = vdevice.randn((batch_size, config.channels, size, size), generator=generator, device=device)
    t = vdevice.randint(0, config.num_train_timesteps, (batch_size,), generator=generator, device=device)
    xs = vdevice.randn((sample_batch_size, config.channels, size, size), generator=generator, device=device)
    ts = torch.full((sample_batch_size,), config.num_train_timesteps // 2, dtype=torch.long, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    train = {p: float("inf") for p in precisions}
    forward = {p: float("inf") for p in precisions}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for _ in range(rounds):
        for precision in precisions:
            bf16 = precision == "bfloat16"
            for _ in range(train_repeats):
                started = time.perf_counter()
                with vdevice.autocast(device, bf16):
                    predicted = model(x, t)
                loss = F.mse_loss(predicted.float(), x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                synchronize()
                train[precision] = min(train[precision], time.perf_counter() - started)
            with torch.no_grad():
                for _ in range(sample_repeats):
                    started = time.perf_counter()
                    with vdevice.autocast(device, bf16):
                        model(xs, ts)
                    synchronize()
                    forward[precision] = min(forward[precision], time.perf_counter() - started)
    return {
        "config": config.to_dict(),
        "num_parameters": model.num_parameters(),
        "batch_size": batch_size,
        "sample_batch_size": sample_batch_size,
        "train_step_s": train,
        "forward_s": forward,
        "ddim20_images_per_s": {p: sample_batch_size / (20 * forward[p]) for p in precisions},
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    }
