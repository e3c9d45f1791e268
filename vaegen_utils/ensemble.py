"""Several same-config MLP VAEs run as one module: stacked weights and batched matrix products.

(`EnsembleConvVAE`, at the end of this file, does the same for paper C's CNN with grouped
convolutions; `ensemble_class_for(config)` picks the class for a member config.)

`EnsembleMLPVAE` holds M members of one `MLPVAEConfig` as stacked parameters (each Linear layer
becomes a weight `(M, in, out)` and a bias `(M, 1, out)`) and runs all members at once with
`torch.baddbmm`. It has the VAE interface of docs/architecture.md with a member dimension in front
of the batch:

    encode(x)             x (B, *data_shape) shared by all members, or (M, B, *data_shape)
                          -> mean, log_std (M, B, Z)
    decode(z)             z (..., M, B, Z) -> params (..., M, B, *param_shape)
    log_likelihood(x, z)  x (B, ...) or (M, B, ...), z (S, M, B, Z) -> (S, M, B)

Members do not interact: member i's outputs, and the gradients of a loss that *sums* the
members' losses, equal those of the standalone `MLPVAE` `ensemble.member(i)` (up to float32
rounding). So a β sweep or a set of seeds trains as one model: build with `from_members(...)`
(or `build(config, seeds)`), optimise `sum_i loss_i` (e.g. `terms.loss(betas).mean(-1).sum()` with
betas `(M,)`; do not average over members, which would scale each member's gradient by 1/M), and
read members back with `member(i)` / `to_members()`. Adam is elementwise, so one Adam over the
stacked parameters steps each member exactly as its own Adam would.

Speed on CPU: the members' FLOPs are those of M single models, so the ensemble saves per-operation
overhead (Python, dispatch, thread synchronisation, optimizer calls), not arithmetic. Its stacked
gradients are large (12 members of a 3072x512 layer: 75 MB), above glibc's largest mmap threshold
(32 MB), so by default every backward pass would map fresh pages and fault them in (~40 ms per such
tensor on a 2-core CPU, as much as the matrix product that fills it). Building an ensemble therefore calls
`tune_cpu_allocator()`, which lets glibc keep freed blocks up to 256 MB for reuse (Linux/glibc only;
the process keeps up to that much freed memory instead of returning it to the OS).
"""

from __future__ import annotations

import ctypes
import math
import sys
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .likelihoods import Likelihood
from . import device as vdevice
from .models import (
    ACTIVATIONS,
    MLPVAE,
    ConvVAE,
    ConvVAEConfig,
    MLPVAEConfig,
    Shape,
    _check_data,
    _check_latent,
    _positive_int,
    _VAEMethodsMixin,
    build_model,
    encoder_log_std,
)

_ALLOCATOR_TUNED = False
_GLIBC_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_GLIBC_M_MMAP_THRESHOLD = -3


def tune_cpu_allocator(max_reused_bytes: int = 256 * 2**20) -> bool:
    """Make glibc serve and keep freed blocks up to `max_reused_bytes` from its heap (once per process).

    Without it, every tensor above 32 MB is a fresh mmap whose pages fault in on first touch, and
    is unmapped when freed: stacked ensemble gradients pay that on every backward pass. With it,
    such blocks are reused like smaller ones. Returns True when applied (Linux with glibc), False
    elsewhere, where nothing changes. Side effect: up to `max_reused_bytes` of freed memory stays
    with the process instead of going back to the OS.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = int(min(max_reused_bytes, 2**31 - 1))
    _ALLOCATOR_TUNED = bool(mallopt(_GLIBC_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_GLIBC_M_TRIM_THRESHOLD, limit))
    return _ALLOCATOR_TUNED


class StackedMLP(nn.Module):
    """M independent MLPs with the same layer sizes: weights `(M, in, out)`, biases `(M, 1, out)`.

    The activation follows every layer except the last. Input `(M, N, in)` (one batch per member)
    or `(N, in)` (one batch shared by all members: the first layer multiplies a stride-0 expanded
    view, so the input is never copied M times). Output `(M, N, out)`. No Python loop over members.
    """

    def __init__(self, num_members: int, sizes: Sequence[int], activation: str):
        super().__init__()
        self.num_members = num_members
        self.sizes = tuple(sizes)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(num_members, fan_in, fan_out)) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(num_members, 1, fan_out)) for fan_out in sizes[1:])
        self.activation = ACTIVATIONS[activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if h.dim() == 2:  # (N, in) shared by all members: expand is a view (stride 0), not a copy
                h = torch.baddbmm(bias, h.expand(self.num_members, *h.shape), weight)  # (M, N, out)
            else:
                h = torch.baddbmm(bias, h, weight)  # (M, N, out)
            if index < last:
                h = self.activation(h)
        return h

    def load_member(self, index: int, layers: Sequence[nn.Linear]) -> None:
        """Copy standalone nn.Linear layers (weight (out, in)) into member `index`."""
        with torch.no_grad():
            for weight, bias, layer in zip(self.weights, self.biases, layers, strict=True):
                weight[index].copy_(layer.weight.t())
                bias[index, 0].copy_(layer.bias)

    def store_member(self, index: int, layers: Sequence[nn.Linear]) -> None:
        """Copy member `index` into standalone nn.Linear layers."""
        with torch.no_grad():
            for weight, bias, layer in zip(self.weights, self.biases, layers, strict=True):
                layer.weight.copy_(weight[index].t())
                layer.bias.copy_(bias[index, 0])


def _encoder_layers(model: MLPVAE) -> list[nn.Linear]:
    return [*model.encoder.hidden, model.encoder.head]


def _decoder_layers(model: MLPVAE) -> list[nn.Linear]:
    return [*model.decoder.hidden, model.decoder.output]


class _StackedEnsembleVAE(_VAEMethodsMixin, nn.Module):
    """Shared plumbing of the stacked ensembles `EnsembleMLPVAE` and `EnsembleConvVAE`.

    Holds M members of one config (`config_class`); every output carries the member dimension M in
    front of the batch dimension (see module docstring). Subclasses set the class attributes below,
    create `self.encoder` / `self.decoder` in `_build_networks()`, and implement `encode`, `decode`,
    `_load_member`, `_store_member` and `_reference_parameter`.
    """

    save_kind: ClassVar[str] = ""
    config_class: ClassVar[type]
    member_class: ClassVar[type[nn.Module]]
    _config_error: ClassVar[str]  # ValueError text when __init__ gets a config of another family
    _saved_config_error: ClassVar[str]  # ValueError text when a saved ensemble has such a config

    def __init__(self, config: Any, num_members: int, *, seeds: Sequence[int] | None = None, _initialise: bool = True):
        """M members initialised as `build_model(config, seed=seeds[i])` would be.

        Without seeds, members are initialised from the global torch RNG, like M consecutive
        `member_class(config)` constructions.
        """
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ValueError(f"{self._config_error}, got {type(config).__name__}")
        num_members = _positive_int("num_members", num_members)
        if seeds is not None and len(seeds) != num_members:
            raise ValueError(f"got {len(seeds)} seeds for {num_members} members; pass one seed per member")
        tune_cpu_allocator()
        self.config = config
        self.likelihood: Likelihood = config.build_likelihood()
        self.data_shape: Shape = tuple(config.data_shape)
        self.latent_dim: int = int(config.latent_dim)
        self.param_shape: Shape = tuple(self.likelihood.param_shape)
        self.num_members = num_members
        self._build_networks()
        if _initialise:
            for index in range(num_members):
                seed = None if seeds is None else seeds[index]
                self._load_member(index, build_model(config, seed=seed))

    # -- subclass hooks ----------------------------------------------------------------------------
    def _build_networks(self) -> None:
        """Create `self.encoder` and `self.decoder` (called by __init__ once the shapes are set)."""
        raise NotImplementedError

    def _load_member(self, index: int, model: nn.Module) -> None:
        """Copy a standalone member model's weights into member `index`."""
        raise NotImplementedError

    def _store_member(self, index: int, model: nn.Module) -> None:
        """Copy member `index`'s weights into a standalone member model."""
        raise NotImplementedError

    def _reference_parameter(self) -> torch.Tensor:
        """A parameter whose dtype and device the ensemble's tensors follow."""
        raise NotImplementedError

    # -- construction and extraction -------------------------------------------------------------
    @classmethod
    def from_members(cls, members: Sequence[nn.Module]) -> "_StackedEnsembleVAE":
        """Stack copies of M standalone member models with equal configs (the members are not modified)."""
        members = list(members)
        member_name, config_name = cls.member_class.__name__, cls.config_class.__name__
        if not members:
            raise ValueError(f"from_members needs at least one {member_name}")
        for index, member in enumerate(members):
            if not isinstance(member, cls.member_class):
                raise ValueError(
                    f"member {index} is a {type(member).__name__}; {cls.__name__} stacks {member_name} models only"
                )
            if member.config != members[0].config:
                raise ValueError(
                    f"member {index} has config {member.config} but member 0 has {members[0].config}; "
                    f"all members must share one {config_name} (vary β or the seed, not the architecture)"
                )
        reference = next(members[0].parameters())
        ensemble = cls._uninitialised(members[0].config, len(members))
        ensemble.to(device=reference.device, dtype=reference.dtype)
        for index, member in enumerate(members):
            ensemble._load_member(index, member)
        return ensemble

    @classmethod
    def build(cls, config: Any, seeds: Sequence[int]) -> "_StackedEnsembleVAE":
        """One member per seed, member i with the weights of `build_model(config, seed=seeds[i])`."""
        return cls(config, len(seeds), seeds=list(seeds))

    @classmethod
    def _uninitialised(cls, config: Any, num_members: int) -> "_StackedEnsembleVAE":
        return cls(config, num_members, _initialise=False)  # parameters are filled by the caller

    def member(self, index: int) -> nn.Module:
        """A standalone member model (`member_class`) holding a copy of member `index`'s weights."""
        if isinstance(index, bool) or not isinstance(index, int) or not -self.num_members <= index < self.num_members:
            raise ValueError(f"member index must be an int in [0, {self.num_members}), got {index!r}")
        index %= self.num_members
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten; keep the global RNG untouched
            model = self.member_class(self.config)
        reference = self._reference_parameter()
        model.to(device=reference.device, dtype=reference.dtype)
        self._store_member(index, model)
        model.train(self.training)
        return model

    def to_members(self) -> list[nn.Module]:
        return [self.member(index) for index in range(self.num_members)]

    # -- the VAE interface with a member dimension ---------------------------------------------
    def _check_member_latents(self, z: torch.Tensor, where: str) -> None:
        """Raise ValueError unless z is `(..., M, B, Z)` with this ensemble's M and Z."""
        _check_latent(z, self.latent_dim, where)
        if z.dim() < 3 or z.shape[-3] != self.num_members:
            raise ValueError(
                f"{where} expects latents (..., M={self.num_members}, B, {self.latent_dim}), "
                f"got {tuple(z.shape)}; the member dimension comes third from the end"
            )

    @torch.no_grad()
    def sample_with_latents(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) `(M, n, Z)` and x ~ p(x|z) `(M, n, *data_shape)`, n per member (no gradients)."""
        n = _positive_int("n", n)
        reference = self._reference_parameter()
        z = vdevice.randn((self.num_members, n, self.latent_dim), generator=generator,
                          dtype=reference.dtype, device=reference.device)
        return z, self.likelihood.sample(self.decode(z), generator=generator)

    def extra_repr(self) -> str:
        return f"num_members={self.num_members}, latent_dim={self.latent_dim}, likelihood={self.likelihood!r}"

    # -- save / load (through vaegen_utils.models.save / load) -------------------------------------
    def _save_fields(self) -> dict[str, Any]:
        return {"kind": self.save_kind, "num_members": self.num_members}

    @classmethod
    def _from_saved(cls, config: Any, payload: dict) -> "_StackedEnsembleVAE":
        if not isinstance(config, cls.config_class):
            raise ValueError(f"{cls._saved_config_error}, got family {config.family!r}")
        return cls._uninitialised(config, payload["num_members"])


class EnsembleMLPVAE(_StackedEnsembleVAE):
    """M MLP VAEs of one `MLPVAEConfig`, trained and evaluated at once (β sweeps, seeds; paper C's grid).

    Build with `EnsembleMLPVAE.from_members([MLPVAE, ...])` or `EnsembleMLPVAE.build(config, seeds)`.
    Every output carries the member dimension M in front of the batch dimension (see module docstring).
    Attributes: `config` (the members' config), `likelihood`, `latent_dim`, `data_shape`,
    `param_shape`, `num_members`.
    """

    save_kind: ClassVar[str] = "mlp_vae_ensemble"
    config_class: ClassVar[type] = MLPVAEConfig
    member_class: ClassVar[type[nn.Module]] = MLPVAE
    _config_error: ClassVar[str] = "EnsembleMLPVAE stacks MLP VAEs and needs an MLPVAEConfig"
    _saved_config_error: ClassVar[str] = "an ensemble's config must be an MLPVAEConfig"

    def _build_networks(self) -> None:
        input_dim, output_dim = math.prod(self.data_shape), math.prod(self.param_shape)
        hidden = tuple(self.config.hidden_sizes)
        activation = self.config.activation
        self.encoder = StackedMLP(self.num_members, (input_dim, *hidden, 2 * self.latent_dim), activation)
        self.decoder = StackedMLP(self.num_members, (self.latent_dim, *reversed(hidden), output_dim), activation)

    def _load_member(self, index: int, model: MLPVAE) -> None:
        self.encoder.load_member(index, _encoder_layers(model))
        self.decoder.load_member(index, _decoder_layers(model))

    def _store_member(self, index: int, model: MLPVAE) -> None:
        self.encoder.store_member(index, _encoder_layers(model))
        self.decoder.store_member(index, _decoder_layers(model))

    def _reference_parameter(self) -> torch.Tensor:
        return self.encoder.weights[0]

    # -- the VAE interface with a member dimension ---------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x `(B, *data_shape)` (shared) or `(M, B, *data_shape)` -> mean, log_std `(M, B, Z)` each."""
        flat = self._flatten_data(x, "EnsembleMLPVAE.encode")  # (B, D) or (M, B, D)
        raw = self.encoder(flat)  # (M, B, 2Z)
        mean, raw_scale = raw.chunk(2, dim=-1)  # (M, B, Z) each
        return mean, encoder_log_std(raw_scale, self.config.encoder_std, self.config.softplus_min_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z `(..., M, B, Z)` -> likelihood params `(..., M, B, *param_shape)`."""
        self._check_member_latents(z, "EnsembleMLPVAE.decode")
        if z.dim() == 3:
            return self.decoder(z).unflatten(-1, self.param_shape)  # (M, B, *param_shape)
        leading, batch = z.shape[:-3], z.shape[-2]
        per_member = z.movedim(-3, 0).reshape(self.num_members, -1, self.latent_dim)  # (M, L·B, Z)
        params = self.decoder(per_member)  # (M, L·B, P)
        params = params.reshape(self.num_members, *leading, batch, -1).movedim(0, -3)  # (..., M, B, P)
        return params.unflatten(-1, self.param_shape)

    # -- helpers -----------------------------------------------------------------------------------
    def _flatten_data(self, x: torch.Tensor, where: str) -> torch.Tensor:
        _check_data(x, self.data_shape, where)
        data_dims = len(self.data_shape)
        if x.dim() == data_dims + 1:
            return x.flatten(start_dim=1)  # (B, D), shared by all members
        if x.dim() == data_dims + 2 and x.shape[0] == self.num_members:
            return x.flatten(start_dim=2)  # (M, B, D)
        raise ValueError(
            f"{where} expects x of shape (B, {', '.join(map(str, self.data_shape))}) shared by all members or "
            f"(M={self.num_members}, B, ...) with one batch per member, got {tuple(x.shape)}"
        )


def save(ensemble: EnsembleMLPVAE, folder) -> Any:
    """Same as `vaegen_utils.models.save`: config.json (config + num_members) and weights.pt."""
    from .models import save as save_model

    return save_model(ensemble, folder)


def load(folder, *, map_location: str | torch.device = "cpu") -> EnsembleMLPVAE:
    """Load an ensemble saved by `save`; raises ValueError if the folder holds a single model."""
    from .models import load as load_model

    model = load_model(folder, map_location=map_location)
    if not isinstance(model, EnsembleMLPVAE):
        raise ValueError(f"{folder} holds a single {type(model).__name__}, not an EnsembleMLPVAE; use models.load")
    return model


# ================================================================================================
# Conv ensembles: paper C's CNN beta sweeps as one model (grouped convolutions)
# ================================================================================================
#
# `EnsembleConvVAE` stacks M members of one `ConvVAEConfig` (paper C's strided CNN, no BatchNorm)
# the way `EnsembleMLPVAE` stacks MLPs: the same interface, outputs with a leading member dim.
# Member m's feature maps are channels [m*C, (m+1)*C) of one tensor `(B, M*C, h, w)`, so every
# conv is one `conv2d(..., groups=M)` (the first layer on a shared batch is a plain conv with
# M*C output channels: all members read the same image) and every transposed conv one
# `conv_transpose2d(..., groups=M)`; the Linear heads are `baddbmm`s as in `StackedMLP`.
# Why grouped convs and not torch.func.vmap over functional_call: measured on this 2-core CPU
# (numbers in the docstring of `EnsembleConvVAE`).


class StackedLinear(nn.Module):
    """M independent Linear layers: weight `(M, in, out)`, bias `(M, 1, out)`; input `(M, N, in)`."""

    def __init__(self, num_members: int, fan_in: int, fan_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, fan_in, fan_out))
        self.bias = nn.Parameter(torch.empty(num_members, 1, fan_out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, h, self.weight)  # (M, N, out)

    def load_member(self, index: int, layer: nn.Linear) -> None:
        with torch.no_grad():
            self.weight[index].copy_(layer.weight.t())
            self.bias[index, 0].copy_(layer.bias)

    def store_member(self, index: int, layer: nn.Linear) -> None:
        with torch.no_grad():
            layer.weight.copy_(self.weight[index].t())
            layer.bias.copy_(self.bias[index, 0])


class GroupedConv(nn.Module):
    """M independent Conv2d (or ConvTranspose2d) layers as one grouped layer.

    Conv2d: weight `(M*out, in, k, k)`, member m owns rows [m*out, (m+1)*out).
    ConvTranspose2d: weight `(M*in, out, k, k)` (PyTorch's transposed layout), member m owns rows
    [m*in, (m+1)*in). Bias `(M*out,)`. Input `(N, M*in, H, W)` -> `(N, M*out, H', W')`;
    `shared_input=True` (first encoder layer only): input `(N, in, H, W)` read by every member.
    """

    def __init__(self, num_members: int, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, *, transposed: bool = False):
        super().__init__()
        self.num_members, self.in_channels, self.out_channels = num_members, in_channels, out_channels
        self.stride, self.padding, self.transposed = stride, padding, transposed
        rows, columns = (num_members * in_channels, out_channels) if transposed else (num_members * out_channels, in_channels)
        self.weight = nn.Parameter(torch.empty(rows, columns, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_members * out_channels))

    def forward(self, h: torch.Tensor, *, shared_input: bool = False) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(h, self.weight, self.bias, self.stride, self.padding, groups=self.num_members)
        groups = 1 if shared_input else self.num_members  # shared: one conv with M*out output channels
        return F.conv2d(h, self.weight, self.bias, self.stride, self.padding, groups=groups)

    def _rows(self, index: int) -> slice:
        size = self.in_channels if self.transposed else self.out_channels
        return slice(index * size, (index + 1) * size)

    def load_member(self, index: int, layer: nn.Module) -> None:
        with torch.no_grad():
            self.weight[self._rows(index)].copy_(layer.weight)
            self.bias[index * self.out_channels : (index + 1) * self.out_channels].copy_(layer.bias)

    def store_member(self, index: int, layer: nn.Module) -> None:
        with torch.no_grad():
            layer.weight.copy_(self.weight[self._rows(index)])
            layer.bias.copy_(self.bias[index * self.out_channels : (index + 1) * self.out_channels])


class EnsembleConvEncoder(nn.Module):
    """M members of `models.ConvEncoder`: grouped [Conv + activation] x num_layers, stacked Linear head."""

    def __init__(self, config: ConvVAEConfig, num_members: int):
        super().__init__()
        self.num_members = num_members
        in_channels = config.data_shape[0]
        self.convs = nn.ModuleList(
            GroupedConv(num_members, in_channels if index == 0 else config.channels, config.channels,
                        config.kernel_size, config.stride, config.padding)
            for index in range(config.num_layers)
        )
        self.head = StackedLinear(num_members, math.prod(config.bottleneck_shape), 2 * config.latent_dim)
        self.activation = ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor, *, shared_input: bool) -> torch.Tensor:
        """x `(N, C, H, W)` (shared) or `(N, M*C, H, W)` (member m's images in channels block m) -> `(M, N, 2Z)`."""
        h = x
        for index, conv in enumerate(self.convs):
            h = self.activation(conv(h, shared_input=shared_input and index == 0))  # (N, M*c, h, w)
        count = h.shape[0]
        h = h.reshape(count, self.num_members, -1).transpose(0, 1)  # (M, N, c*h*w), member-major
        return self.head(h)  # (M, N, 2Z)


class EnsembleConvDecoder(nn.Module):
    """M members of `models.ConvDecoder`: stacked Linear + activation, grouped ConvTranspose layers."""

    def __init__(self, config: ConvVAEConfig, num_members: int, output_channels: int):
        super().__init__()
        self.num_members = num_members
        self.bottleneck_shape = tuple(config.bottleneck_shape)
        self.input = StackedLinear(num_members, config.latent_dim, math.prod(self.bottleneck_shape))
        self.deconvs = nn.ModuleList(
            GroupedConv(num_members, config.channels,
                        output_channels if index == config.num_layers - 1 else config.channels,
                        config.kernel_size, config.stride, config.padding, transposed=True)
            for index in range(config.num_layers)
        )
        self.activation = ACTIVATIONS[config.activation]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z `(M, N, Z)` -> `(M, N, C_out, H, W)`."""
        count = z.shape[1]
        h = self.activation(self.input(z))  # (M, N, c*h*w)
        h = h.transpose(0, 1).reshape(count, self.num_members * self.bottleneck_shape[0], *self.bottleneck_shape[1:])
        for index, deconv in enumerate(self.deconvs):
            h = deconv(h)  # (N, M*c, h', w')
            if index < len(self.deconvs) - 1:
                h = self.activation(h)
        return h.reshape(count, self.num_members, -1, *h.shape[-2:]).transpose(0, 1)  # (M, N, C_out, H, W)


class EnsembleConvVAE(_StackedEnsembleVAE):
    """M conv VAEs of one `ConvVAEConfig` (paper C's CNN, Fig. 6) trained and evaluated at once.

    Same interface and member semantics as `EnsembleMLPVAE` (module docstring): `encode(x)` with x
    `(B, C, H, W)` shared or `(M, B, C, H, W)` -> mean, log_std `(M, B, Z)`; `decode(z)` with z
    `(..., M, B, Z)` -> `(..., M, B, *param_shape)`; `log_likelihood(x, z)` -> `(..., M, B)`;
    `member(i)` -> a standalone `ConvVAE`; `from_members` / `build(config, seeds)`. Members do not
    interact (grouped convolutions), so a summed loss trains each as it would train alone.
    No BatchNorm exists in `ConvVAE`, so nothing couples members through batch statistics.

    Speed (one Adam step of 12 members, paper C's CNN, batch 128, one thread on a 2-core CPU shared
    with other jobs, median of 6): grouped convs 1.10 s (1-layer, bf16 autocast) and 2.44 s
    (3-layer, bf16); `torch.vmap(functional_call)` over stacked ConvVAE parameters 1.62 s and 3.97 s;
    a Python loop of 12 ConvVAEs with 12 optimizers 0.86 s and 2.11 s. Grouped convs beat vmap, so
    the ensemble uses them; a plain loop is ~20% faster still on this CPU (the transposed grouped conv
    takes PyTorch's slow path, and every layer here is memory-bound: a 1-layer CNN's feature map is
    64x16x16 per image vs 512 units in the MLP), but it is not one batched model. All three are ~7x
    an MLP sweep's step, which is why paper C's CNN sweeps get a smaller budget in the cpu profile.
    """

    save_kind: ClassVar[str] = "conv_vae_ensemble"
    config_class: ClassVar[type] = ConvVAEConfig
    member_class: ClassVar[type[nn.Module]] = ConvVAE
    _config_error: ClassVar[str] = "EnsembleConvVAE stacks conv VAEs and needs a ConvVAEConfig"
    _saved_config_error: ClassVar[str] = "a conv ensemble's config must be a ConvVAEConfig"

    def _build_networks(self) -> None:
        output_channels = math.prod(self.param_shape) // (self.data_shape[-2] * self.data_shape[-1])
        self.encoder = EnsembleConvEncoder(self.config, self.num_members)
        self.decoder = EnsembleConvDecoder(self.config, self.num_members, output_channels)

    def _layer_pairs(self, model: ConvVAE) -> list[tuple[nn.Module, nn.Module]]:
        """(stacked layer, the standalone member's layer) for every layer with parameters."""
        return [
            *zip(self.encoder.convs, model.encoder.convs, strict=True),
            (self.encoder.head, model.encoder.head),
            (self.decoder.input, model.decoder.input),
            *zip(self.decoder.deconvs, model.decoder.deconvs, strict=True),
        ]

    def _load_member(self, index: int, model: ConvVAE) -> None:
        for stacked, layer in self._layer_pairs(model):
            stacked.load_member(index, layer)

    def _store_member(self, index: int, model: ConvVAE) -> None:
        for stacked, layer in self._layer_pairs(model):
            stacked.store_member(index, layer)

    def _reference_parameter(self) -> torch.Tensor:
        return self.encoder.head.weight

    # -- the VAE interface with a member dimension ---------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x `(B, C, H, W)` (shared) or `(M, B, C, H, W)` -> mean, log_std `(M, B, Z)` each."""
        _check_data(x, self.data_shape, "EnsembleConvVAE.encode")
        if x.dim() == 4:
            raw = self.encoder(x, shared_input=True)  # (M, B, 2Z)
        elif x.dim() == 5 and x.shape[0] == self.num_members:
            members, batch = x.shape[:2]
            grouped = x.transpose(0, 1).reshape(batch, members * self.data_shape[0], *self.data_shape[1:])
            raw = self.encoder(grouped, shared_input=False)  # (M, B, 2Z)
        else:
            raise ValueError(
                f"EnsembleConvVAE.encode expects x of shape (B, {', '.join(map(str, self.data_shape))}) shared by all "
                f"members or (M={self.num_members}, B, ...) with one batch per member, got {tuple(x.shape)}"
            )
        mean, raw_scale = raw.chunk(2, dim=-1)  # (M, B, Z) each
        return mean, encoder_log_std(raw_scale, self.config.encoder_std, self.config.softplus_min_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z `(..., M, B, Z)` -> likelihood params `(..., M, B, *param_shape)`."""
        self._check_member_latents(z, "EnsembleConvVAE.decode")
        leading, batch = z.shape[:-3], z.shape[-2]
        per_member = z.movedim(-3, 0).reshape(self.num_members, -1, self.latent_dim)  # (M, L·B, Z)
        maps = self.decoder(per_member)  # (M, L·B, C_out, H, W)
        params = maps.reshape(self.num_members, *leading, batch, -1).movedim(0, -3)  # (..., M, B, P)
        return params.unflatten(-1, self.param_shape)


# Saved ensemble kinds -> classes, for `models.load` (config.json's "kind" field).
ENSEMBLE_CLASSES: dict[str, type[nn.Module]] = {
    EnsembleMLPVAE.save_kind: EnsembleMLPVAE,
    EnsembleConvVAE.save_kind: EnsembleConvVAE,
}


def ensemble_class_for(config: Any) -> type[nn.Module]:
    """The ensemble class that stacks members of `config`'s family (MLP or conv)."""
    if isinstance(config, MLPVAEConfig):
        return EnsembleMLPVAE
    if isinstance(config, ConvVAEConfig):
        return EnsembleConvVAE
    raise ValueError(
        f"no ensemble class stacks {type(config).__name__} models; ensembles exist for MLPVAEConfig and "
        "ConvVAEConfig (the residual net has BatchNorm, whose batch statistics would couple members)"
    )
