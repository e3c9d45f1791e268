"""Several same-config MLP VAEs run as one module: stacked weights and batched matrix products.

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

from .likelihoods import Likelihood
from .models import (
    ACTIVATIONS,
    MLPVAE,
    MLPVAEConfig,
    Shape,
    _check_data,
    _check_latent,
    _positive_int,
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


class EnsembleMLPVAE(nn.Module):
    """M MLP VAEs of one `MLPVAEConfig`, trained and evaluated at once (β sweeps, seeds; paper C's grid).

    Build with `EnsembleMLPVAE.from_members([MLPVAE, ...])` or `EnsembleMLPVAE.build(config, seeds)`.
    Every output carries the member dimension M in front of the batch dimension (see module docstring).
    Attributes: `config` (the members' config), `likelihood`, `latent_dim`, `data_shape`,
    `param_shape`, `num_members`.
    """

    save_kind: ClassVar[str] = "mlp_vae_ensemble"

    def __init__(
        self, config: MLPVAEConfig, num_members: int, *, seeds: Sequence[int] | None = None, _initialise: bool = True
    ):
        """M members initialised as `build_model(config, seed=seeds[i])` would be.

        Without seeds, members are initialised from the global torch RNG, like M consecutive
        `MLPVAE(config)` constructions.
        """
        super().__init__()
        if not isinstance(config, MLPVAEConfig):
            raise ValueError(f"EnsembleMLPVAE stacks MLP VAEs and needs an MLPVAEConfig, got {type(config).__name__}")
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
        input_dim, output_dim = math.prod(self.data_shape), math.prod(self.param_shape)
        hidden = tuple(config.hidden_sizes)
        self.encoder = StackedMLP(num_members, (input_dim, *hidden, 2 * self.latent_dim), config.activation)
        self.decoder = StackedMLP(num_members, (self.latent_dim, *reversed(hidden), output_dim), config.activation)
        if _initialise:
            for index in range(num_members):
                seed = None if seeds is None else seeds[index]
                self._load_member(index, build_model(config, seed=seed))

    # -- construction and extraction -------------------------------------------------------------
    @classmethod
    def from_members(cls, members: Sequence[MLPVAE]) -> "EnsembleMLPVAE":
        """Stack copies of M standalone MLPVAEs with equal configs (the members are not modified)."""
        members = list(members)
        if not members:
            raise ValueError("from_members needs at least one MLPVAE")
        for index, member in enumerate(members):
            if not isinstance(member, MLPVAE):
                raise ValueError(f"member {index} is a {type(member).__name__}; EnsembleMLPVAE stacks MLPVAE models only")
            if member.config != members[0].config:
                raise ValueError(
                    f"member {index} has config {member.config} but member 0 has {members[0].config}; "
                    f"all members must share one MLPVAEConfig (vary β or the seed, not the architecture)"
                )
        reference = next(members[0].parameters())
        ensemble = cls._uninitialised(members[0].config, len(members))
        ensemble.to(device=reference.device, dtype=reference.dtype)
        for index, member in enumerate(members):
            ensemble._load_member(index, member)
        return ensemble

    @classmethod
    def build(cls, config: MLPVAEConfig, seeds: Sequence[int]) -> "EnsembleMLPVAE":
        """One member per seed, member i with the weights of `build_model(config, seed=seeds[i])`."""
        return cls(config, len(seeds), seeds=list(seeds))

    @classmethod
    def _uninitialised(cls, config: MLPVAEConfig, num_members: int) -> "EnsembleMLPVAE":
        return cls(config, num_members, _initialise=False)  # parameters are filled by the caller

    def member(self, index: int) -> MLPVAE:
        """A standalone MLPVAE holding a copy of member `index`'s weights."""
        if isinstance(index, bool) or not isinstance(index, int) or not -self.num_members <= index < self.num_members:
            raise ValueError(f"member index must be an int in [0, {self.num_members}), got {index!r}")
        index %= self.num_members
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten; keep the global RNG untouched
            model = MLPVAE(self.config)
        reference = self.encoder.weights[0]
        model.to(device=reference.device, dtype=reference.dtype)
        self.encoder.store_member(index, _encoder_layers(model))
        self.decoder.store_member(index, _decoder_layers(model))
        model.train(self.training)
        return model

    def to_members(self) -> list[MLPVAE]:
        return [self.member(index) for index in range(self.num_members)]

    def _load_member(self, index: int, model: MLPVAE) -> None:
        self.encoder.load_member(index, _encoder_layers(model))
        self.decoder.load_member(index, _decoder_layers(model))

    # -- the VAE interface with a member dimension ---------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x `(B, *data_shape)` (shared) or `(M, B, *data_shape)` -> mean, log_std `(M, B, Z)` each."""
        flat = self._flatten_data(x, "EnsembleMLPVAE.encode")  # (B, D) or (M, B, D)
        raw = self.encoder(flat)  # (M, B, 2Z)
        mean, raw_scale = raw.chunk(2, dim=-1)  # (M, B, Z) each
        return mean, encoder_log_std(raw_scale, self.config.encoder_std, self.config.softplus_min_std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z `(..., M, B, Z)` -> likelihood params `(..., M, B, *param_shape)`."""
        _check_latent(z, self.latent_dim, "EnsembleMLPVAE.decode")
        if z.dim() < 3 or z.shape[-3] != self.num_members:
            raise ValueError(
                f"EnsembleMLPVAE.decode expects latents (..., M={self.num_members}, B, {self.latent_dim}), "
                f"got {tuple(z.shape)}; the member dimension comes third from the end"
            )
        if z.dim() == 3:
            return self.decoder(z).unflatten(-1, self.param_shape)  # (M, B, *param_shape)
        leading, batch = z.shape[:-3], z.shape[-2]
        per_member = z.movedim(-3, 0).reshape(self.num_members, -1, self.latent_dim)  # (M, L·B, Z)
        params = self.decoder(per_member)  # (M, L·B, P)
        params = params.reshape(self.num_members, *leading, batch, -1).movedim(0, -3)  # (..., M, B, P)
        return params.unflatten(-1, self.param_shape)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over data dims: x `(B, ...)` or `(M, B, ...)`, z `(S, M, B, Z)` -> `(S, M, B)`."""
        return self.likelihood.log_prob(x, self.decode(z))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())

    @torch.no_grad()
    def sample_with_latents(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) `(M, n, Z)` and x ~ p(x|z) `(M, n, *data_shape)`, n per member (no gradients)."""
        n = _positive_int("n", n)
        reference = self.encoder.weights[0]
        z = torch.randn((self.num_members, n, self.latent_dim), generator=generator,
                        dtype=reference.dtype, device=reference.device)
        return z, self.likelihood.sample(self.decode(z), generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples from each member's p(x): `(M, n, *data_shape)`."""
        return self.sample_with_latents(n, generator)[1]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's likelihood mean of decode(encoder mean): `(M, B, *data_shape)`."""
        mean, _ = self.encode(x)
        return self.likelihood.mean(self.decode(mean))

    def num_parameters(self) -> int:
        """Total over all members (M times a member's count)."""
        return sum(parameter.numel() for parameter in self.parameters())

    def extra_repr(self) -> str:
        return f"num_members={self.num_members}, latent_dim={self.latent_dim}, likelihood={self.likelihood!r}"

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

    # -- save / load (through vaegen_utils.models.save / load) -------------------------------------
    def _save_fields(self) -> dict[str, Any]:
        return {"kind": self.save_kind, "num_members": self.num_members}

    @classmethod
    def _from_saved(cls, config: Any, payload: dict) -> "EnsembleMLPVAE":
        if not isinstance(config, MLPVAEConfig):
            raise ValueError(f"an ensemble's config must be an MLPVAEConfig, got family {config.family!r}")
        return cls._uninitialised(config, payload["num_members"])


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
