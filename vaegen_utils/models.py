"""VAE models of the three papers: config dataclasses, MLP / conv / residual-conv VAEs, save and load.

Every model here is a `VAE` (an `nn.Module`) with the interface of docs/architecture.md:

    config, likelihood, latent_dim, data_shape
    encode(x)            x (..., *data_shape)        -> mean, log_std  (..., Z) each
    decode(z)            z (..., Z)                  -> likelihood params (..., *likelihood.param_shape)
    log_likelihood(x, z) x (B, *data_shape), z (S, B, Z) (any leading dims that broadcast) -> (S, B)
    encoder_parameters(), decoder_parameters()   disjoint lists covering all parameters
    sample(n, generator), sample_with_latents(n, generator), reconstruct(x), num_parameters()

The posterior is q(z|x) = N(mean, diag(exp(log_std)^2)) and the prior N(0, I). Whatever the
encoder's standard-deviation parameterisation ("exp": the head outputs log sigma; "softplus": the
head outputs a with sigma = softplus(a) + softplus_min_std, paper B's code), `encode` returns
log sigma, so estimators need not know which one a model uses.

Families (one config dataclass each; `build_model(config, seed=...)` builds any of them):
- `MLPVAEConfig` / `MLPVAE`: fully connected, images flattened (papers A, B and C).
- `ConvVAEConfig` / `ConvVAE`: paper C's strided CNN.
- `ResidualConvVAEConfig` / `ResidualConvVAE`: paper A/B's residual conv net, latent on a
  (latent_channels, H/4, W/4) map presented as a flat (B, Z) vector.
Named presets reproduce each paper's networks: `zhang2022_mlp`, `bozkurt2021_mlp`, `xiao2024_mlp`,
`bozkurt2021_cnn`, `zhang2022_resnet`, `xiao2024_resnet`. Facts come from paper A (App. B, Tables 3-6),
paper B's official code and paper C (Sec. 4.3); UNVERIFIED marks choices the papers leave open;
each preset's docstring names its source.

Models with BatchNorm (the residual net) behave differently in train and eval mode: call
`model.eval()` before evaluating ELBOs, or per-data-point values depend on the batch they sit in.

`save(model, folder)` writes `config.json` and `weights.pt` atomically; `load(folder)` rebuilds the
model (or an `ensemble.EnsembleMLPVAE`) and checks that the files belong together.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import device as vdevice
from . import io as vio
from .checks import check_int, check_sequence, file_sha256, named_fields
from .likelihoods import LIKELIHOODS, Likelihood, make_likelihood

Shape = tuple[int, ...]

# Name under which likelihoods.py registers the PixelCNN++ mixture of logistics (Salimans et al. 2017).
MIXTURE_OF_LOGISTICS = "discretized_mixture_of_logistics"

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01 (PyTorch default)
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "silu": F.silu,
}
ENCODER_STD_PARAMETERISATIONS = ("softplus", "exp")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
SAVE_FORMAT = "vaegen_utils.models"
SAVE_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Config dataclasses
# --------------------------------------------------------------------------------------------------


def _positive_int(name: str, value: Any) -> int:
    return check_int(name, value, minimum=1)


def _positive_int_tuple(name: str, value: Any, *, allow_empty: bool = False) -> Shape:
    return check_sequence(name, value, _positive_int, min_length=0 if allow_empty else 1, example="(512, 512)")


def _choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}")
    return value


@dataclasses.dataclass(frozen=True)
class _VAEConfig:
    """Shared validation, serialisation and likelihood construction of the config dataclasses.

    Subclasses are frozen dataclasses with plain JSON-serialisable fields; vary one with
    `dataclasses.replace(config, latent_dim=16)`. Sequence fields are stored as tuples and written
    to JSON as lists; `config_from_dict(config.to_dict()) == config`.
    """

    family: ClassVar[str] = ""

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict including the family name (the input of `config_from_dict`)."""
        fields = {field.name: _to_json_value(getattr(self, field.name)) for field in dataclasses.fields(self)}
        return {"family": self.family, **fields}

    def build_likelihood(self) -> Likelihood:
        return make_likelihood(self.likelihood, self.data_shape, **self.likelihood_options)

    # Checks shared by all families; called from each subclass's __post_init__.
    def _validate_common(self, *, image_data: bool) -> None:
        data_shape = _positive_int_tuple("data_shape", self.data_shape)
        if image_data and len(data_shape) != 3:
            raise ValueError(
                f"{type(self).__name__}.data_shape must be (channels, height, width) such as (3, 32, 32), "
                f"got {self.data_shape!r}"
            )
        object.__setattr__(self, "data_shape", data_shape)
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        if not isinstance(self.likelihood_options, Mapping):
            raise ValueError(
                f"likelihood_options must be a dict of keyword arguments for the likelihood, "
                f"e.g. {{'sigma': 0.1}}, got {self.likelihood_options!r}"
            )
        options = dict(self.likelihood_options)
        try:
            json.dumps(options, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"likelihood_options must hold plain JSON values (numbers, strings, lists), "
                f"got {options!r}: {error}"
            ) from error
        object.__setattr__(self, "likelihood_options", options)
        try:
            self.build_likelihood()
        except TypeError as error:
            raise ValueError(
                f"likelihood {self.likelihood!r} does not accept likelihood_options {options!r} ({error}); "
                f"see vaegen_utils.likelihoods for its constructor arguments"
            ) from error
        _choice("encoder_std", self.encoder_std, ENCODER_STD_PARAMETERISATIONS)
        if isinstance(self.softplus_min_std, bool) or not isinstance(self.softplus_min_std, (int, float)):
            raise ValueError(f"softplus_min_std must be a number >= 0 such as 1e-6, got {self.softplus_min_std!r}")
        if not (0.0 <= float(self.softplus_min_std) < 1.0):
            raise ValueError(f"softplus_min_std must be in [0, 1) (a small floor such as 1e-6), got {self.softplus_min_std!r}")
        object.__setattr__(self, "softplus_min_std", float(self.softplus_min_std))


@named_fields
@dataclasses.dataclass(frozen=True)
class MLPVAEConfig(_VAEConfig):
    """Fully connected VAE: `hidden_sizes` for the encoder, the same sizes reversed for the decoder.

    Encoder: flatten, then [Linear, activation] for each entry of `hidden_sizes`, then one Linear
    head to 2·latent_dim (mean and the standard-deviation parameter). Decoder: [Linear, activation]
    for each entry of `reversed(hidden_sizes)`, then Linear to the likelihood's parameters.
    This is paper B's official `densenet_encoder/decoder` with hidden_sizes=(500,)·(h_layer_num+1),
    and paper C's MLP (Sec. 4.3) with hidden_sizes=(512,)·num_layers. See the presets below.

    encoder_std: "softplus" (paper B: sigma = softplus(a) + softplus_min_std) or "exp" (the head
    outputs log sigma; paper C's authors' precedent code). softplus_min_std is used by "softplus"
    only (B's code has no floor; 1e-6 keeps log sigma finite and its gradient bounded).
    """

    family: ClassVar[str] = "mlp"

    data_shape: Shape = (1, 28, 28)
    latent_dim: int = 10
    hidden_sizes: Shape = (500, 500)
    likelihood: str = "bernoulli"
    likelihood_options: dict = dataclasses.field(default_factory=dict)
    activation: str = "relu"
    encoder_std: str = "softplus"
    softplus_min_std: float = 1e-6

    def __post_init__(self) -> None:
        self._validate_common(image_data=False)
        object.__setattr__(self, "latent_dim", _positive_int("latent_dim", self.latent_dim))
        object.__setattr__(self, "hidden_sizes", _positive_int_tuple("hidden_sizes", self.hidden_sizes))
        _choice("activation", self.activation, ACTIVATIONS)


@named_fields
@dataclasses.dataclass(frozen=True)
class ConvVAEConfig(_VAEConfig):
    """Paper C's CNN VAE (Sec. 4.3: "64 channels, kernel size 4, stride 2 in every layer; 1 or 3 layers").

    Encoder: num_layers × [Conv(k, s, p=(k-s)/2) + activation] (data channels -> `channels`, then
    channels -> channels), flatten, one Linear head to 2·latent_dim.
    Decoder: Linear(latent_dim -> channels·h·w) + activation, reshape to (channels, h, w), then
    num_layers × ConvTranspose(k, s, p) with the activation between them and none after the last,
    which outputs the likelihood's parameter channels. h = H / stride**num_layers.

    UNVERIFIED choices (paper C's CNN table is in its appendix, which is not available; Sec. 4.3 gives the rest): padding 1
    (so each layer halves exactly: 32 -> 16 -> 8 -> 4), Linear heads on the flattened feature map,
    a Linear + activation before the first transposed conv (without it the 1-layer decoder would be
    linear in z), the decoder mirroring the encoder, and the "exp" (log sigma) head of the authors'
    earlier MLP code.
    """

    family: ClassVar[str] = "conv"

    data_shape: Shape = (3, 32, 32)
    latent_dim: int = 10
    channels: int = 64
    num_layers: int = 1
    kernel_size: int = 4
    stride: int = 2
    likelihood: str = "bernoulli"
    likelihood_options: dict = dataclasses.field(default_factory=dict)
    activation: str = "relu"
    encoder_std: str = "exp"
    softplus_min_std: float = 1e-6

    def __post_init__(self) -> None:
        self._validate_common(image_data=True)
        for name in ("latent_dim", "channels", "num_layers", "kernel_size", "stride"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        _choice("activation", self.activation, ACTIVATIONS)
        if self.kernel_size < self.stride or (self.kernel_size - self.stride) % 2:
            raise ValueError(
                f"kernel_size - stride must be even and >= 0 so that each layer scales the image by exactly "
                f"1/stride with padding (k - s) / 2; got kernel_size={self.kernel_size}, stride={self.stride} "
                f"(paper C: kernel_size=4, stride=2)"
            )
        factor = self.stride**self.num_layers
        _, height, width = self.data_shape
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by stride**num_layers = {factor}; "
                f"use fewer layers or pad the images (e.g. 28x28 MNIST to 32x32)"
            )
        _check_param_shape_is_spatial(self.build_likelihood(), self.data_shape)

    @property
    def padding(self) -> int:
        return (self.kernel_size - self.stride) // 2

    @property
    def bottleneck_shape(self) -> Shape:
        """(channels, h, w) of the last encoder feature map / first decoder feature map."""
        factor = self.stride**self.num_layers
        return (self.channels, self.data_shape[1] // factor, self.data_shape[2] // factor)


@named_fields
@dataclasses.dataclass(frozen=True)
class ResidualConvVAEConfig(_VAEConfig):
    """Paper A/B's residual conv VAE (paper A App. B, Tables 4–6, with caveats; paper B's official `fc_encoder/decoder`).

    Encoder: Conv C->c (k4 s2 p1, no bias), BN, ReLU, Conv c->c (k4 s2 p1, no bias), BN,
    num_residual_blocks × Residual, Conv1×1 c -> 2·latent_channels (bias): mean and softplus scale
    on a (latent_channels, H/4, W/4) grid, i.e. latent_dim = latent_channels·H·W/16 (64·m_z for 32×32).
    Decoder: Conv1×1 latent_channels -> c (no bias), BN, num_residual_blocks × Residual,
    2 × [ConvTranspose c->c (k4 s2 p1, no bias), BN, ReLU], Conv1×1 c -> parameter channels (bias).
    Residual: ReLU, Conv k1×k1 (no bias), BN, ReLU, Conv k2×k2 (no bias), BN, plus the skip, with
    (k1, k2) = residual_kernel_sizes: (3, 1) in paper B's code, (3, 3) in paper A's Table 6.

    Caveats resolved here (paper A App. B): two transposed convs as in B's code (A's Table 5 lists one,
    which cannot reach 32×32); the output conv produces the likelihood's parameter channels (A's "n_c -> 3"
    is schematic). residual_skip="input" adds the block input (A's Table 6); "relu_input" adds ReLU of it,
    which is what B's code computes because its in-place `nn.ReLU(True)` overwrites the skip tensor.
    """

    family: ClassVar[str] = "residual_conv"

    data_shape: Shape = (3, 32, 32)
    channels: int = 256
    latent_channels: int = 1
    num_residual_blocks: int = 2
    residual_kernel_sizes: Shape = (3, 1)
    residual_skip: str = "input"
    likelihood: str = "discretized_logistic"
    likelihood_options: dict = dataclasses.field(default_factory=dict)
    encoder_std: str = "softplus"
    softplus_min_std: float = 1e-6

    def __post_init__(self) -> None:
        self._validate_common(image_data=True)
        for name in ("channels", "latent_channels"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if isinstance(self.num_residual_blocks, bool) or not isinstance(self.num_residual_blocks, int) or self.num_residual_blocks < 0:
            raise ValueError(f"num_residual_blocks must be an integer >= 0 (2 in papers A and B), got {self.num_residual_blocks!r}")
        kernels = _positive_int_tuple("residual_kernel_sizes", self.residual_kernel_sizes)
        if len(kernels) != 2 or any(size % 2 == 0 for size in kernels):
            raise ValueError(
                f"residual_kernel_sizes must be two odd kernel sizes: (3, 1) for paper B's code or (3, 3) for "
                f"paper A's Table 6; got {self.residual_kernel_sizes!r}"
            )
        object.__setattr__(self, "residual_kernel_sizes", kernels)
        _choice("residual_skip", self.residual_skip, ("input", "relu_input"))
        _, height, width = self.data_shape
        if height % 4 or width % 4:
            raise ValueError(
                f"the residual net downsamples twice by 2, so height and width must be divisible by 4; "
                f"got {height}x{width} (pad 28x28 images to 32x32)"
            )
        _check_param_shape_is_spatial(self.build_likelihood(), self.data_shape)

    @property
    def latent_shape(self) -> Shape:
        """(latent_channels, H/4, W/4): the latent map that encode/decode flatten to (B, latent_dim)."""
        return (self.latent_channels, self.data_shape[1] // 4, self.data_shape[2] // 4)

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)


CONFIG_CLASSES: dict[str, type[_VAEConfig]] = {
    cls.family: cls for cls in (MLPVAEConfig, ConvVAEConfig, ResidualConvVAEConfig)
}


def config_from_dict(data: Mapping[str, Any]) -> _VAEConfig:
    """Rebuild a config from `config.to_dict()` (the "family" key picks the class)."""
    if not isinstance(data, Mapping) or "family" not in data:
        raise ValueError(
            f"a model config dict needs a 'family' key, one of {sorted(CONFIG_CLASSES)}; got {data!r}. "
            f"Write configs with config.to_dict()."
        )
    fields = dict(data)
    family = fields.pop("family")
    if family not in CONFIG_CLASSES:
        raise ValueError(f"unknown model family {family!r}; choose one of {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[family]
    allowed = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(
            f"{cls.__name__} has no field(s) {unknown}; allowed fields: {sorted(allowed)}. "
            f"The config was written by a different version of vaegen_utils: rebuild it."
        )
    return cls(**fields)


def _to_json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json_value(item) for key, item in value.items()}
    return value


def _check_param_shape_is_spatial(likelihood: Likelihood, data_shape: Shape) -> None:
    """Conv decoders emit (channels, H, W); the likelihood's param_shape must end in (H, W)."""
    param_shape = tuple(likelihood.param_shape)
    if tuple(param_shape[-2:]) != tuple(data_shape[-2:]):
        raise ValueError(
            f"likelihood {likelihood.name!r} has param_shape {param_shape}, which does not end in the image size "
            f"{tuple(data_shape[-2:])}; a conv decoder cannot produce it. Use an MLPVAEConfig instead."
        )


# --------------------------------------------------------------------------------------------------
# Presets (the papers' networks)
# --------------------------------------------------------------------------------------------------


def zhang2022_mlp(
    likelihood: str = "bernoulli", *, num_hidden_layers: int = 2, likelihood_options: dict | None = None
) -> MLPVAEConfig:
    """Paper B (Zhang, Hayes, Barber 2022), MNIST MLP: `densenet_encoder/decoder` (paper B's official code).

    784 -> 500 -> ... -> z=10, ReLU, mean head Linear, sigma = softplus(Linear) (plus a 1e-6 floor here),
    decoder mirrored. num_hidden_layers = h_layer_num + 1: 2 is the code default and the workshop text's
    "2-layer, hidden dimension 500"; the notebooks use 3 (which one the NeurIPS figure used is UNVERIFIED).
    likelihood: "bernoulli" for binary MNIST, "discretized_logistic" for greyscale MNIST. No BatchNorm
    (`if_bn=False`, as in the notebooks).
    """
    return MLPVAEConfig(
        data_shape=(1, 28, 28),
        latent_dim=10,
        hidden_sizes=(500,) * _positive_int("num_hidden_layers", num_hidden_layers),
        likelihood=likelihood,
        likelihood_options=dict(likelihood_options or {}),
        activation="relu",
        encoder_std="softplus",
    )


def bozkurt2021_mlp(num_layers: int = 1, *, data_shape: Sequence[int] = (3, 32, 32)) -> MLPVAEConfig:
    """Paper C (Bozkurt et al. 2021), MLP VAE (paper C Sec. 4.3): 512 units per layer, 1 or 3 layers.

    ReLU, z=10, Bernoulli likelihood on [0, 1] colour data (C's footnote 1), input 3·32·32 = 3072.
    UNVERIFIED: num_layers counts hidden layers in each of encoder and decoder (decoder mirrored); the
    sigma head outputs log sigma ("exp") as in the authors' earlier code (alicanb/vae_novel_examples).
    """
    return MLPVAEConfig(
        data_shape=tuple(data_shape),
        latent_dim=10,
        hidden_sizes=(512,) * _positive_int("num_layers", num_layers),
        likelihood="bernoulli",
        activation="relu",
        encoder_std="exp",
    )


def xiao2024_mlp(likelihood: str = "bernoulli", *, likelihood_options: dict | None = None) -> MLPVAEConfig:
    """Paper A (Xiao, Zenn, Bamler 2024), fully connected VAE (App. B.1).

    "Linear 1024 -> 512, hidden 512 -> 512, then to a latent of dimension 16"; the decoder mirrors it
    (16 -> 512 -> 512 -> 1024, "via three layers"). Images at 32×32 (1024 inputs).
    likelihood: "bernoulli" (BinaryMNIST) or "fixed_variance_gaussian" (FashionMNIST; sigma not stated,
    UNVERIFIED) or the mixture of logistics (Fig. 12). UNVERIFIED: ReLU, and the softplus sigma head
    (the paper only says the encoder outputs mean and variance).
    """
    return MLPVAEConfig(
        data_shape=(1, 32, 32),
        latent_dim=16,
        hidden_sizes=(512, 512),
        likelihood=likelihood,
        likelihood_options=dict(likelihood_options or {}),
        activation="relu",
        encoder_std="softplus",
    )


def bozkurt2021_cnn(num_layers: int = 1, *, data_shape: Sequence[int] = (3, 32, 32)) -> ConvVAEConfig:
    """Paper C (Bozkurt et al. 2021), CNN VAE (paper C Sec. 4.3): 64 channels, kernel 4, stride 2, 1 or 3 layers.

    ReLU, z=10, Bernoulli likelihood. The layout beyond these facts is UNVERIFIED; see ConvVAEConfig.
    """
    return ConvVAEConfig(
        data_shape=tuple(data_shape),
        latent_dim=10,
        channels=64,
        num_layers=_positive_int("num_layers", num_layers),
        kernel_size=4,
        stride=2,
        likelihood="bernoulli",
        activation="relu",
        encoder_std="exp",
    )


def zhang2022_resnet(
    latent_channels: int = 4, *, likelihood: str = "discretized_logistic", likelihood_options: dict | None = None
) -> ResidualConvVAEConfig:
    """Paper B (Zhang, Hayes, Barber 2022), CIFAR net `fc_encoder/decoder` (paper B's official code).

    256 channels, latent on 8×8 with `z_channels` = latent_channels (4 in the released checkpoint,
    z = 256; 16 in an earlier run.py), residual block 3×3 + 1×1, sigma = softplus. Likelihood: B's
    `x_dis='Logistic'`, the discretized logistic with linear channel-autoregressive means (9 output
    channels, `channel_coefficients=True`); for B's `'MixLogistic'` pass
    likelihood="discretized_mixture_of_logistics" with likelihood_options={"n_components": 10,
    "uniform_weight": 1e-4, "channel_mixture": "per_channel"}.
    residual_skip="input" (the intended block; "relu_input" reproduces the in-place-ReLU quirk).
    """
    if likelihood_options is None and likelihood == "discretized_logistic":
        likelihood_options = {"channel_coefficients": True}  # paper B code: 9 output channels
    return ResidualConvVAEConfig(
        data_shape=(3, 32, 32),
        channels=256,
        latent_channels=latent_channels,
        num_residual_blocks=2,
        residual_kernel_sizes=(3, 1),
        likelihood=likelihood,
        likelihood_options=dict(likelihood_options or {}),
        encoder_std="softplus",
    )


def xiao2024_resnet(
    latent_channels: int = 1,
    channels: int = 256,
    *,
    likelihood: str = MIXTURE_OF_LOGISTICS,
    likelihood_options: dict | None = None,
) -> ResidualConvVAEConfig:
    """Paper A (Xiao, Zenn, Bamler 2024), CIFAR-10 residual net (App. B, Tables 4–6).

    Defaults m_z = latent_channels = 1 (d_z = 64) and n_c = channels = 256 (the DMaaPx study and the
    baseline of the overparameterization sweeps m_z ∈ {1..64}, n_c ∈ {1..512}). Residual block 3×3 + 3×3
    (Table 6). Likelihood: discretized mixture of logistics; the number of components is not stated
    (UNVERIFIED; pass e.g. likelihood_options={"n_components": 10}, B's code value). sigma = softplus
    (UNVERIFIED for A; B's code).
    """
    return ResidualConvVAEConfig(
        data_shape=(3, 32, 32),
        channels=channels,
        latent_channels=latent_channels,
        num_residual_blocks=2,
        residual_kernel_sizes=(3, 3),
        likelihood=likelihood,
        likelihood_options=dict(likelihood_options or {}),
        encoder_std="softplus",
    )


PRESETS: dict[str, Callable[..., _VAEConfig]] = {
    "zhang2022_mlp": zhang2022_mlp,
    "bozkurt2021_mlp": bozkurt2021_mlp,
    "xiao2024_mlp": xiao2024_mlp,
    "bozkurt2021_cnn": bozkurt2021_cnn,
    "zhang2022_resnet": zhang2022_resnet,
    "xiao2024_resnet": xiao2024_resnet,
}


# --------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------


def log_softplus(a: torch.Tensor) -> torch.Tensor:
    """log(softplus(a)) without underflow: for a < -15, softplus(a) = e^a (1 - e^a/2 + ...), so
    log softplus(a) = a - e^a/2 + O(e^{2a}) (error < 1e-13); elsewhere the direct formula is exact.
    Both branches have finite gradients (the direct branch sees a clamped input)."""
    direct = torch.log(F.softplus(a.clamp(min=-15.0)))
    asymptotic = a - 0.5 * torch.exp(a.clamp(max=-15.0))
    return torch.where(a < -15.0, asymptotic, direct)


def encoder_log_std(raw: torch.Tensor, encoder_std: str, softplus_min_std: float) -> torch.Tensor:
    """log sigma from the encoder's raw scale output, for both parameterisations.

    "exp": raw is log sigma. "softplus": sigma = softplus(raw) + softplus_min_std (paper B's code uses
    sigma = softplus(raw)); log sigma = log(softplus(raw) + floor), or the underflow-free
    `log_softplus(raw)` when the floor is 0.
    """
    if encoder_std == "exp":
        return raw
    if softplus_min_std > 0.0:
        return torch.log(F.softplus(raw) + softplus_min_std)
    return log_softplus(raw)


def _check_data(x: torch.Tensor, data_shape: Shape, where: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{where} expects a torch.Tensor of shape (B, {', '.join(map(str, data_shape))}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{where} expects floating-point data in [0, 1], got dtype {x.dtype}; convert 8-bit images with x.float() / 255"
        )
    if x.dim() <= len(data_shape) or tuple(x.shape[x.dim() - len(data_shape):]) != tuple(data_shape):
        raise ValueError(
            f"{where} expects data of shape (B, {', '.join(map(str, data_shape))}), got {tuple(x.shape)}; "
            f"check the dataset's data_shape against model.data_shape (e.g. pad 28x28 to 32x32)"
        )


def _check_latent(z: torch.Tensor, latent_dim: int, where: str) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() < 1 or z.shape[-1] != latent_dim:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{where} expects latents of shape (..., {latent_dim}) (last dim = latent_dim), got {shape}")


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class _VAEMethodsMixin:
    """The VAE-interface methods that only combine other ones, for nn.Modules with the VAE interface.

    Shared by `VAE` (shapes as documented here) and the stacked ensembles of vaegen_utils.ensemble
    (a member dimension M in front of the batch: x `(M, B, ...)`, z `(S, M, B, Z)`, samples
    `(M, n, ...)`; an ensemble's `num_parameters` is the total over its members). The host class
    provides `encoder`, `decoder`, `likelihood`, `encode`, `decode` and `sample_with_latents(n, generator)`.
    """

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats summed over data dims: x `(B, *data_shape)`, z `(S, B, Z)` -> `(S, B)`.

        Leading dimensions of z broadcast against x's batch (x is not copied).
        """
        return self.likelihood.log_prob(x, self.decode(z))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of q(z|x) (train these alone for encoder-only training with the decoder frozen)."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of p(x|z); disjoint from encoder_parameters(), together all parameters."""
        return list(self.decoder.parameters())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples x ~ p(x) = ∫ p(x|z) N(z; 0, I) dz, shape `(n, *data_shape)` (no gradients)."""
        return self.sample_with_latents(n, generator)[1]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Likelihood mean of decode(encoder mean): x `(B, *data_shape)` -> `(B, *data_shape)` (differentiable)."""
        mean, _ = self.encode(x)
        return self.likelihood.mean(self.decode(mean))

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


class VAE(_VAEMethodsMixin, nn.Module):
    """Base class: a Gaussian encoder q(z|x), a standard normal prior and a decoder p(x|z).

    Subclasses create `self.encoder` and `self.decoder` (nn.Modules holding every parameter) and
    implement `_encode_flat(x)` for x `(N, *data_shape)` -> raw `(N, 2Z)` (mean, scale parameter)
    and `_decode_flat(z)` for z `(N, Z)` -> params `(N, *param_shape)`.
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type[_VAEConfig]]

    def __init__(self, config: _VAEConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.likelihood: Likelihood = config.build_likelihood()
        self.data_shape: Shape = tuple(config.data_shape)
        self.latent_dim: int = int(config.latent_dim)
        self.param_shape: Shape = tuple(self.likelihood.param_shape)

    # -- the interface -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) = N(mean, exp(log_std)^2): x `(B, *data_shape)` -> mean, log_std `(B, Z)` each.

        Extra leading dimensions are allowed: x `(..., *data_shape)` -> `(..., Z)`.
        """
        _check_data(x, self.data_shape, f"{type(self).__name__}.encode")
        leading = x.shape[: x.dim() - len(self.data_shape)]
        raw = self._encode_flat(x.reshape(-1, *self.data_shape))  # (N, 2Z)
        mean, raw_scale = raw.reshape(*leading, 2 * self.latent_dim).chunk(2, dim=-1)  # (..., Z) each
        return mean, encoder_log_std(raw_scale, self.config.encoder_std, self.config.softplus_min_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters of p(x|z): z `(..., Z)` -> `(..., *likelihood.param_shape)`."""
        _check_latent(z, self.latent_dim, f"{type(self).__name__}.decode")
        leading = z.shape[:-1]
        params = self._decode_flat(z.reshape(-1, self.latent_dim))  # (N, *param_shape)
        return params.reshape(*leading, *self.param_shape)

    @torch.no_grad()
    def sample_with_latents(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) `(n, Z)` and x ~ p(x|z) `(n, *data_shape)` (no gradients).

        Runs in the model's current mode: a BatchNorm model in train mode normalises with the
        sampled batch's statistics and updates its running statistics (as paper B's code does when
        it samples during training); call `.eval()` first for samples from the evaluated model.
        """
        n = _positive_int("n", n)
        reference = next(self.parameters())
        z = vdevice.randn((n, self.latent_dim), generator=generator, dtype=reference.dtype, device=reference.device)
        return z, self.likelihood.sample(self.decode(z), generator=generator)

    def extra_repr(self) -> str:
        return f"family={self.family!r}, latent_dim={self.latent_dim}, likelihood={self.likelihood!r}"

    # -- subclass hooks --------------------------------------------------------------------------
    def _encode_flat(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode_flat(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MLPEncoder(nn.Module):
    """Flatten, [Linear, activation] per hidden size, Linear head to 2·latent_dim."""

    def __init__(self, input_dim: int, hidden_sizes: Sequence[int], latent_dim: int, activation: str):
        super().__init__()
        sizes = [input_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(fan_in, fan_out) for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], 2 * latent_dim)  # [mean | scale parameter]
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, 2Z)
        for layer in self.hidden:
            x = self.activation(layer(x))
        return self.head(x)


class MLPDecoder(nn.Module):
    """[Linear, activation] per hidden size (encoder sizes reversed), Linear to the likelihood params."""

    def __init__(self, latent_dim: int, hidden_sizes: Sequence[int], output_dim: int, activation: str):
        super().__init__()
        sizes = [latent_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(fan_in, fan_out) for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(sizes[-1], output_dim)
        self.activation = ACTIVATIONS[activation]

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, Z) -> (N, P)
        for layer in self.hidden:
            z = self.activation(layer(z))
        return self.output(z)


class MLPVAE(VAE):
    """Fully connected VAE of papers A, B and C (see MLPVAEConfig and the presets). Images are flattened."""

    family: ClassVar[str] = "mlp"
    config_class: ClassVar[type[_VAEConfig]] = MLPVAEConfig

    def __init__(self, config: MLPVAEConfig):
        super().__init__(config)
        self.input_dim = math.prod(self.data_shape)
        self.output_dim = math.prod(self.param_shape)
        self.encoder = MLPEncoder(self.input_dim, config.hidden_sizes, config.latent_dim, config.activation)
        self.decoder = MLPDecoder(config.latent_dim, tuple(reversed(config.hidden_sizes)), self.output_dim, config.activation)

    # Linear layers accept any leading dims, so encode/decode skip the base class's reshapes.
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_data(x, self.data_shape, "MLPVAE.encode")
        raw = self.encoder(x.flatten(start_dim=x.dim() - len(self.data_shape)))  # (..., 2Z)
        mean, raw_scale = raw.chunk(2, dim=-1)  # (..., Z) each
        return mean, encoder_log_std(raw_scale, self.config.encoder_std, self.config.softplus_min_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_dim, "MLPVAE.decode")
        return self.decoder(z).unflatten(-1, self.param_shape)  # (..., *param_shape)


class ConvEncoder(nn.Module):
    """num_layers × [Conv(k, s, p) + activation], flatten, Linear head to 2·latent_dim (paper C)."""

    def __init__(self, config: ConvVAEConfig):
        super().__init__()
        in_channels = config.data_shape[0]
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if index == 0 else config.channels, config.channels,
                      config.kernel_size, config.stride, config.padding)
            for index in range(config.num_layers)
        )
        self.head = nn.Linear(math.prod(config.bottleneck_shape), 2 * config.latent_dim)
        self.activation = ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 2Z)
        for conv in self.convs:
            x = self.activation(conv(x))
        return self.head(x.flatten(start_dim=1))


class ConvDecoder(nn.Module):
    """Linear + activation, reshape, num_layers × ConvTranspose(k, s, p), activation between (paper C)."""

    def __init__(self, config: ConvVAEConfig, output_channels: int):
        super().__init__()
        self.bottleneck_shape = config.bottleneck_shape
        self.input = nn.Linear(config.latent_dim, math.prod(self.bottleneck_shape))
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(config.channels, output_channels if index == config.num_layers - 1 else config.channels,
                               config.kernel_size, config.stride, config.padding)
            for index in range(config.num_layers)
        )
        self.activation = ACTIVATIONS[config.activation]

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, Z) -> (N, C_out, H, W)
        h = self.activation(self.input(z)).reshape(-1, *self.bottleneck_shape)
        for index, deconv in enumerate(self.deconvs):
            h = deconv(h)
            if index < len(self.deconvs) - 1:
                h = self.activation(h)
        return h


def _output_channels(param_shape: Shape, data_shape: Shape) -> int:
    """Channels a conv decoder must emit so that (N, channels, H, W) reshapes to (N, *param_shape)."""
    return math.prod(param_shape) // (data_shape[-2] * data_shape[-1])


class ConvVAE(VAE):
    """Paper C's strided CNN VAE (see ConvVAEConfig for the layout and its UNVERIFIED choices)."""

    family: ClassVar[str] = "conv"
    config_class: ClassVar[type[_VAEConfig]] = ConvVAEConfig

    def __init__(self, config: ConvVAEConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config)
        self.decoder = ConvDecoder(config, _output_channels(self.param_shape, self.data_shape))

    def _encode_flat(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (N, 2Z)

    def _decode_flat(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(-1, *self.param_shape)  # (N, *param_shape)


class ResidualBlock(nn.Module):
    """ReLU, Conv k1 (no bias), BN, ReLU, Conv k2 (no bias), BN, plus the skip (papers A Table 6, B `Residual`)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 1), skip: str = "input"):
        super().__init__()
        first, second = kernel_sizes
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, first, 1, first // 2, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, second, 1, second // 2, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.skip_from_relu = skip == "relu_input"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(x) if self.skip_from_relu else x
        return skip + self.block(x)


class ResidualConvEncoder(nn.Module):
    def __init__(self, config: ResidualConvVAEConfig):
        super().__init__()
        channels = config.channels
        blocks = [ResidualBlock(channels, config.residual_kernel_sizes, config.residual_skip)
                  for _ in range(config.num_residual_blocks)]
        self.net = nn.Sequential(
            nn.Conv2d(config.data_shape[0], channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            *blocks,
            nn.Conv2d(channels, 2 * config.latent_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 2·m_z, H/4, W/4)
        return self.net(x)


class ResidualConvDecoder(nn.Module):
    def __init__(self, config: ResidualConvVAEConfig, output_channels: int):
        super().__init__()
        channels = config.channels
        blocks = [ResidualBlock(channels, config.residual_kernel_sizes, config.residual_skip)
                  for _ in range(config.num_residual_blocks)]
        self.net = nn.Sequential(
            nn.Conv2d(config.latent_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            *blocks,
            nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, output_channels, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, m_z, H/4, W/4) -> (N, C_out, H, W)
        return self.net(z)


class ResidualConvVAE(VAE):
    """Paper A/B's residual conv VAE for CIFAR-10 (see ResidualConvVAEConfig).

    The latent is a (latent_channels, H/4, W/4) map; encode flattens it to (B, latent_dim) in
    (channel, row, column) order and decode unflattens it, so estimators see a plain vector.
    Uses BatchNorm: call `.eval()` for evaluation.
    """

    family: ClassVar[str] = "residual_conv"
    config_class: ClassVar[type[_VAEConfig]] = ResidualConvVAEConfig

    def __init__(self, config: ResidualConvVAEConfig):
        super().__init__(config)
        self.latent_shape: Shape = config.latent_shape
        self.encoder = ResidualConvEncoder(config)
        self.decoder = ResidualConvDecoder(config, _output_channels(self.param_shape, self.data_shape))

    def _encode_flat(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.encoder(x)  # (N, 2·m_z, h, w)
        mean_map, scale_map = maps.chunk(2, dim=1)  # (N, m_z, h, w) each
        return torch.cat([mean_map.flatten(start_dim=1), scale_map.flatten(start_dim=1)], dim=1)  # (N, 2Z)

    def _decode_flat(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.reshape(-1, *self.latent_shape)).reshape(-1, *self.param_shape)  # (N, *param_shape)


MODEL_CLASSES: dict[str, type[VAE]] = {cls.family: cls for cls in (MLPVAE, ConvVAE, ResidualConvVAE)}


def build_model(config: _VAEConfig | Mapping[str, Any], seed: int | None = None) -> VAE:
    """Build the VAE described by `config` (a config object or its `to_dict()`).

    With `seed`, initialisation uses a forked RNG seeded with it: the same seed gives the same
    weights, and the global torch RNG state is left untouched. Without it, the global RNG is used
    (and advanced) as by any nn.Module constructor. Initialisation is PyTorch's default for
    Linear/Conv/BatchNorm, as in paper B's code.
    """
    if isinstance(config, Mapping):
        config = config_from_dict(config)
    if not isinstance(config, _VAEConfig):
        raise ValueError(f"build_model needs a model config (e.g. MLPVAEConfig(...)) or its to_dict(), got {type(config).__name__}")
    model_class = MODEL_CLASSES[config.family]
    if seed is None:
        return model_class(config)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


# --------------------------------------------------------------------------------------------------
# Save and load
# --------------------------------------------------------------------------------------------------


def save(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write `config.json` and `weights.pt` into `folder` atomically; returns the folder.

    Works for every VAE here and for `ensemble.EnsembleMLPVAE`. weights.pt is written first and
    config.json (which records weights.pt's SHA-256) last, so a folder interrupted mid-save is
    detected by `load` instead of silently pairing old config with new weights.
    """
    folder = Path(folder)
    payload = _describe(model)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    vio.atomic_save(folder / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    payload["weights_sha256"] = file_sha256(folder / WEIGHTS_FILE)
    vio.atomic_write_json(folder / CONFIG_FILE, payload)
    return folder


def load(folder: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by `save(model, folder)` (a VAE or an EnsembleMLPVAE) with its weights.

    Raises FileNotFoundError when the folder or a file is missing and ValueError when a file is
    corrupt or config.json does not describe weights.pt, each naming the folder and the fix.
    The model is returned in train mode, like a freshly built one.
    """
    folder = Path(folder)
    fix = f"delete {folder} and save or train the model again"
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"no saved model at {folder}: the folder does not exist; check the path or train the model")
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a complete saved model: {path.name} is missing; {fix}")
    try:
        payload = vio.read_json(config_path)
    except ValueError as error:
        raise ValueError(f"saved model {folder}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != SAVE_FORMAT:
        raise ValueError(f"{config_path} was not written by vaegen_utils.models.save; {fix}")
    try:
        model = _rebuild(payload)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} describes no valid model ({error}); {fix}") from error
    expected_sha = payload.get("weights_sha256")
    if expected_sha is not None and file_sha256(weights_path) != expected_sha:
        raise ValueError(
            f"{weights_path} does not match {config_path} (SHA-256 differs): the folder was partly overwritten "
            f"or corrupted; {fix}"
        )
    try:
        state = torch.load(weights_path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{weights_path} cannot be read ({type(error).__name__}: {error}); {fix}") from error
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{config_path} does not describe the weights in {weights_path} ({error}); the two files come from "
            f"different models. {fix}"
        ) from error
    return model.to(map_location)


def _describe(model: nn.Module) -> dict:
    """The config.json payload of a model (format, kind, config, likelihood config)."""
    if isinstance(model, VAE):
        kind_fields = {"kind": "vae"}
    elif hasattr(model, "_save_fields"):
        kind_fields = model._save_fields()
    else:
        raise ValueError(f"save() handles vaegen_utils VAEs and ensembles, got {type(model).__name__}")
    return {
        "format": SAVE_FORMAT,
        "format_version": SAVE_FORMAT_VERSION,
        **kind_fields,
        "config": model.config.to_dict(),
        "likelihood_config": model.likelihood.config(),
        "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
    }


def _rebuild(payload: dict) -> nn.Module:
    kind = payload.get("kind")
    config = config_from_dict(payload["config"])
    if kind == "vae":
        model_class = MODEL_CLASSES[config.family]
        with torch.random.fork_rng(devices=[]):  # the weights are overwritten; leave the global RNG alone
            return model_class(config)
    from . import ensemble  # late import: ensemble builds on this module

    ensemble_class = ensemble.ENSEMBLE_CLASSES.get(kind)  # EnsembleMLPVAE, EnsembleConvVAE
    if ensemble_class is not None:
        return ensemble_class._from_saved(config, payload)
    raise ValueError(f"unknown saved model kind {kind!r}")
