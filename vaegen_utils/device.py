"""Where tensors live: the one device setting, its precision policy, and portable random draws.

One setting picks the device every model, data set and working tensor of the library lives on:
the `device=` argument where a function takes one, else `$VAEGEN_DEVICE` (e.g. `cpu`, `cuda`,
`cuda:1`), else CUDA when available, else the CPU (`resolve`). The notebooks' `DEVICE`
parameter is passed through `resolve` too.

Promise (README, Reproducibility): the same seed, the same device kind, the same library versions
and the same torch thread count give the same numbers. The random *streams* are the same on
every device: every draw (batch order, reparameterisation noise, augmentation parameters, attack
starts, diffusion noise, samples) comes from a seeded CPU `torch.Generator` and is copied to the
device (`randn`, `rand`, `randint`, `randperm` here), so a GPU run sees exactly the draws a CPU
run sees; CPU and GPU results then differ only by the arithmetic (kernels, reduction order,
TF32/bf16). Drawing on the CPU costs a host-to-device copy of the noise, small next to the
matrix products it feeds (B x Z floats per step for a VAE, one image batch for the UNet).

Precision policy (`precision_policy`, recorded by `provenance`):
- float32 means IEEE float32 on every device: on CUDA, TF32 is switched off for matrix products
  and cuDNN convolutions (`apply_policy`), so evaluation numbers never carry TF32 rounding;
  `VAEGEN_TF32=1` switches it on (faster float32 training on Ampere/Hopper).
- bfloat16 is opt-in per run (`TrainConfig.precision`, `train_diffusion(precision=...)`) and is
  autocast of the training forward pass on the device of the inputs (`autocast`); losses, Adam
  and every evaluation stay float32.
- `torch.compile` is off unless `VAEGEN_COMPILE=1` (benchmarks/gpu_check.sh measures whether it
  pays on a GPU; on the 2-core CPU here it does not).

Host transfers are explicit: `to_host` is the one place device tensors come back to the CPU
(results, checks every N steps); code that reads `.item()` or `.numpy()` elsewhere is a bug on
a GPU (a host sync per step, or an error). On the `meta` device (shapes only, used by the
device tests) `to_host` returns zeros of the right shape, so shape-only runs go through.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

ENV_DEVICE = "VAEGEN_DEVICE"
ENV_TF32 = "VAEGEN_TF32"
ENV_COMPILE = "VAEGEN_COMPILE"
ENV_SYNC_EVERY = "VAEGEN_SYNC_EVERY"

# Device types torch.autocast accepts; others (meta) run without autocast.
_AUTOCAST_TYPES = ("cpu", "cuda", "xpu", "mps", "hpu")
# Optimizer steps between two reads of the device-side NaN flag (training's loss monitor) on
# accelerators; on the CPU a read costs nothing, so every step is checked.
DEFAULT_SYNC_EVERY = 50


# --------------------------------------------------------------------------------------------
# The device setting
# --------------------------------------------------------------------------------------------


_process_default: str | torch.device | None = None


def use(device: str | torch.device | None) -> torch.device:
    """Make `device` this process's default (a notebook's `DEVICE` parameter); None restores the
    environment's choice. Returns the resolved device (errors as `resolve`)."""
    global _process_default
    resolved = resolve(device)
    _process_default = None if device is None or str(device).strip().lower() in ("", "auto") else resolved
    return resolved


def resolve(device: str | torch.device | None = None) -> torch.device:
    """The device to use: `device` if given, else the `use(...)` default, else $VAEGEN_DEVICE, else
    CUDA when available, else CPU ('auto' and '' count as not given).

    A CUDA device that this torch cannot use raises ValueError naming the fix. Resolving a CUDA
    device applies the precision policy (`apply_policy`).
    """
    source = "device argument"
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        env = os.environ.get(ENV_DEVICE, "").strip()
        if _process_default is not None:
            device, source = _process_default, "device.use(...)"
        elif env and env.lower() != "auto":
            device, source = env, f"${ENV_DEVICE}"
        else:
            device, source = ("cuda" if torch.cuda.is_available() else "cpu"), "default"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"{source} {device!r} is not a torch device ({error}); use 'cpu', 'cuda', 'cuda:1', ... "
            f"or unset ${ENV_DEVICE} for the default (CUDA when available, else CPU)"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{source} asks for {str(resolved)!r} but this torch ({torch.__version__}) sees no CUDA GPU; "
                f"use device='cpu' / {ENV_DEVICE}=cpu, or install a CUDA build of torch on a GPU machine"
            )
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"{source} asks for cuda:{index} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        resolved = torch.device("cuda", index)
        apply_policy(resolved)
    return resolved


def of(module_or_tensor: Any) -> torch.device:
    """The device a model (its first parameter or buffer) or a tensor lives on; CPU for a module without tensors."""
    if isinstance(module_or_tensor, torch.Tensor):
        return module_or_tensor.device
    for tensor in module_or_tensor.parameters():
        return tensor.device
    for tensor in module_or_tensor.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device` (a no-op when it is there already); host-to-device copies are non-blocking."""
    return tensor.to(device, non_blocking=True)


def to_host(value: Any) -> Any:
    """`value` with every tensor detached and on the CPU (dicts, lists, tuples and dataclasses' fields walked).

    The one place where results leave the device. Meta tensors (no values) become CPU zeros of
    their shape and dtype.
    """
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            return torch.zeros(value.shape, dtype=value.dtype)
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {key: to_host(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuple
        return type(value)(*(to_host(item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_host(item) for item in value)
    return value


def host_float(tensor: torch.Tensor) -> float:
    """A one-element device tensor as a Python float (a host sync: use it outside per-step loops)."""
    return float(to_host(tensor))


# --------------------------------------------------------------------------------------------
# Portable random draws: CPU generator -> device
# --------------------------------------------------------------------------------------------


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def randn(shape: Sequence[int], *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> torch.Tensor:
    """N(0, 1) draws from `generator` (or the global CPU RNG), made on the generator's device, then moved.

    Identical values on every device (module docstring): `torch.randn(..., generator=cpu, device=cuda)`
    would raise, and a CUDA generator would give another stream.
    """
    draws = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=_generator_device(generator))
    return draws if device is None else to_device(draws, device)


def rand(shape: Sequence[int], *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
         device: torch.device | str | None = None) -> torch.Tensor:
    """U[0, 1) draws from `generator`, made on its device, then moved (see `randn`)."""
    draws = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=_generator_device(generator))
    return draws if device is None else to_device(draws, device)


def randint(low: int, high: int, shape: Sequence[int], *, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.int64, device: torch.device | str | None = None) -> torch.Tensor:
    """Integers in [low, high) from `generator`, made on its device, then moved (see `randn`)."""
    draws = torch.randint(low, high, tuple(shape), generator=generator, dtype=dtype, device=_generator_device(generator))
    return draws if device is None else to_device(draws, device)


def randperm(n: int, *, generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> torch.Tensor:
    """A permutation of 0..n-1 from `generator`, made on its device, then moved (see `randn`)."""
    draws = torch.randperm(n, generator=generator, device=_generator_device(generator))
    return draws if device is None else to_device(draws, device)


# --------------------------------------------------------------------------------------------
# Precision policy
# --------------------------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"${name}={os.environ[name]!r} is not a switch; use 1 or 0")


def tf32_enabled() -> bool:
    """Whether float32 matrix products and convolutions may use TF32 on CUDA ($VAEGEN_TF32, default off)."""
    return _env_flag(ENV_TF32)


def compile_enabled() -> bool:
    """Whether training compiles the model's forward pass with torch.compile ($VAEGEN_COMPILE, default off)."""
    return _env_flag(ENV_COMPILE)


def apply_policy(device: torch.device | str) -> None:
    """Set the TF32 switches explicitly for a CUDA device (idempotent); nothing to do elsewhere.

    The CPU's float32 arithmetic is never changed, so CPU numbers do not depend on this module.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return
    precision = "tf32" if tf32_enabled() else "ieee"
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = precision
        conv.fp32_precision = precision
    else:  # pragma: no cover - older torch
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def precision_policy(device: torch.device | str) -> dict:
    """The arithmetic a device runs: float32 matmul/conv precision, bf16 autocast support."""
    device = torch.device(device)
    policy = {
        "float32": "ieee",
        "bfloat16": "autocast of the training forward pass where a run asks for it (losses, Adam, evaluation in float32)",
        "compile": compile_enabled(),
    }
    if device.type == "cuda":
        policy["float32"] = "tf32" if tf32_enabled() else "ieee"
        policy["bf16_supported"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return policy


@contextlib.contextmanager
def _no_autocast():
    yield


def autocast(device_or_tensor: Any, enabled: bool, dtype: torch.dtype = torch.bfloat16):
    """bf16 autocast for the device type of `device_or_tensor` (a device, a tensor or a model).

    Never hard-coded to the CPU: on CUDA inputs this is CUDA autocast, on CPU inputs CPU autocast;
    devices without autocast (meta) run unchanged.
    """
    device = device_or_tensor if isinstance(device_or_tensor, (torch.device, str)) else of(device_or_tensor)
    device_type = torch.device(device).type
    if not enabled or device_type not in _AUTOCAST_TYPES:
        return _no_autocast()
    return torch.autocast(device_type, dtype=dtype, enabled=True)


def sync_every(device: torch.device | str) -> int:
    """Optimizer steps between host reads of training's device-side loss flags.

    $VAEGEN_SYNC_EVERY when set (on any device: the tests use it to run the GPU's deferred checks on
    the CPU); else 1 on the CPU (a read is free, and the NaN guard then stops before the bad step,
    exactly as it always did) and DEFAULT_SYNC_EVERY elsewhere, where each read stalls the GPU's queue.
    """
    value = os.environ.get(ENV_SYNC_EVERY, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"${ENV_SYNC_EVERY}={value!r} must be a positive integer (steps between NaN checks)")
        return int(value)
    return 1 if torch.device(device).type == "cpu" else DEFAULT_SYNC_EVERY


def maybe_compile(function):
    """torch.compile(function) when $VAEGEN_COMPILE=1, else function unchanged."""
    return torch.compile(function) if compile_enabled() else function


# --------------------------------------------------------------------------------------------
# Data on the device
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedImages:
    """An image set on the device: uint8 levels plus a scale where that is exact, else as given.

    `batch(index)` returns float32 images bit-identical to `original[index]`: levels k become
    k * scale with scale = 1 (binary data) or k / 255 (greyscale/colour, the data module's
    k/255 convention, computed the same way). uint8 storage takes a quarter of the memory and
    of the bytes each batch reads.
    """

    stored: torch.Tensor
    divisor: float | None  # None: stored is the float data itself; 1.0 binary; 255.0 levels k/255
    dtype: torch.dtype

    @property
    def shape(self) -> torch.Size:
        return self.stored.shape

    @property
    def device(self) -> torch.device:
        return self.stored.device

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        x = self.stored.index_select(0, index)
        if self.divisor is None:
            return x
        x = x.to(self.dtype)
        return x if self.divisor == 1.0 else x.div_(self.divisor)

    def all(self) -> torch.Tensor:
        if self.divisor is None:
            return self.stored
        x = self.stored.to(self.dtype)
        return x if self.divisor == 1.0 else x.div_(self.divisor)


def stage_images(images: torch.Tensor, device: torch.device | str, *, compact: bool | None = None) -> StagedImages:
    """Put an image set on `device`, as uint8 levels where that reproduces every value exactly.

    compact: store uint8 when exact (default: on accelerators only; on the CPU the float tensor is
    used as is, no copy). The exactness check runs where the images are, once per training run.
    """
    device = torch.device(device)
    if compact is None:
        compact = device.type not in ("cpu", "meta")
    on_device = to_device(images, device)
    if compact and images.dtype == torch.float32 and not images.is_meta and images.numel():
        for divisor in (1.0, 255.0):
            levels = torch.round(on_device * divisor)
            if bool(((levels >= 0) & (levels <= 255)).all()):
                codes = levels.to(torch.uint8)
                restored = codes.to(torch.float32)
                restored = restored if divisor == 1.0 else restored.div_(divisor)
                if torch.equal(restored, on_device):
                    return StagedImages(codes, divisor, torch.float32)
    return StagedImages(on_device, None, images.dtype)


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


def provenance(device: torch.device | str | None = None) -> dict:
    """What ran the numbers: device, GPU name, CUDA/cuDNN versions, precision policy, torch threads.

    Recorded in every results JSON (`results.write_results`: machine.device) and every training
    run's config.json (`provenance`), never in a cache key: a CPU notebook reuses GPU-trained runs.
    """
    try:
        device = resolve(device)
    except ValueError:
        device = torch.device(device) if device is not None else torch.device("cpu")
    record: dict[str, Any] = {
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "precision": precision_policy(device),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(device)
        record["device_name"] = properties.name
        record["device_memory_gib"] = round(properties.total_memory / 2**30, 1)
        record["compute_capability"] = f"{properties.major}.{properties.minor}"
    return record


# --------------------------------------------------------------------------------------------
# A device check that needs no GPU
# --------------------------------------------------------------------------------------------


class DeviceMismatchError(RuntimeError):
    """An op mixed tensors of two devices, or a generator drew onto another device than its own."""


def _tensors_in(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors_in(item)


class DeviceGuard(torch.overrides.TorchFunctionMode):
    """Within `with DeviceGuard():`, raise DeviceMismatchError where a CUDA run would fail or sync.

    Checks every torch function and tensor method called: (1) a `generator=` whose device type
    differs from the device the draws are made on (`torch.randn(..., generator=cpu, device=cuda)`
    raises on CUDA); (2) tensor inputs on more than one device, counting every non-scalar tensor
    and every scalar off the CPU (CUDA accepts only 0-dim CPU tensors beside its own). Explicit
    transfers (`to`, `copy_`, `cpu`, ...) are allowed. Run code with its model and data on the
    `meta` device under this guard and a CPU tensor mixed in, a CPU generator drawing onto the
    device, or a host read (`.item()`, `.numpy()`: meta has no values) shows on a machine without
    a GPU (tests/test_device.py; a shape-only dry run of full-size jobs can use it the same way).
    """

    _TRANSFERS = frozenset(
        {
            torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.type,
            torch.Tensor.__setstate__, torch.Tensor.__reduce_ex__, torch.Tensor.__deepcopy__, torch.Tensor.set_,
            torch.Tensor.new_tensor, torch.Tensor.pin_memory, torch._foreach_copy_,
            torch._has_compatible_shallow_copy_type,  # a query nn.Module.to asks
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator):
            target = kwargs.get("device")
            if target is None:
                first = next(_tensors_in(args), None)
                target = first.device if first is not None else "cpu"
            if torch.device(target).type != generator.device.type:
                raise DeviceMismatchError(
                    f"{getattr(func, '__name__', func)} draws onto {torch.device(target)} with a generator on "
                    f"{generator.device}: draw on the generator's device and copy (vaegen_utils.device.randn)"
                )
        if func not in self._TRANSFERS:
            devices = {
                tensor.device for tensor in _tensors_in((args, kwargs)) if tensor.dim() > 0 or tensor.device.type != "cpu"
            }
            if len(devices) > 1:
                raise DeviceMismatchError(
                    f"{getattr(func, '__qualname__', func)} mixes tensors on {sorted(map(str, devices))}; move the "
                    f"CPU-made tensor to the data's device (vaegen_utils.device.to_device, or device= when creating it)"
                )
        return func(*args, **kwargs)
