"""The engine's workloads and their roofline bounds, for any device (bench.py: CPU, gpu_check.py: CUDA).

Roofline (per workload): a step must do F floating-point operations in matrix products and
convolutions (counted by torch.utils.flop_counter on one real step) and move at least B bytes
through memory. With the machine's own ceilings measured in the same run, a GEMM rate R (large
matrix product, of the dtype the step's products run in) and a memory bandwidth W (a STREAM-like
triad a = b + s*c on arrays far larger than the caches), the step cannot take less than
max(F / R, B / W). The larger term names the bound that applies ("gemm" or "memory"), and
`fraction_of_bound` = that floor / the measured step time (1.0 = at the ceiling).

B is a lower bound, stated per workload: for a training step with Adam it is 32 bytes per
parameter (Adam reads parameter, gradient and both moments and writes parameter and moments,
28 B in float32, and backward writes the gradient, 4 B), plus the input batch once; the weights'
re-reads by forward and backward and every activation are assumed to stay in cache, so real
traffic is higher. For inference (the sampler, IWAE) B is the weights once plus inputs and outputs.
A 12-member paper C sweep step (1-layer MLP, 37.9 M parameters) thus moves >= 1.2 GB.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaegen_utils import diffusion, estimators, models
from vaegen_utils import device as vdevice
from vaegen_utils.ensemble import EnsembleMLPVAE
from vaegen_utils.training import TrainConfig, train

PAPER_C_BETAS = [0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0]  # paper C, footnote 2
ADAM_BYTES_PER_PARAMETER = 32  # module docstring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Minimum wall time of `repeats` calls (the least disturbed run), device work included."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


# --------------------------------------------------------------------------------------------
# Ceilings
# --------------------------------------------------------------------------------------------


def gemm_rate(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...], repeats: int) -> float:
    """Best n x n @ n x n rate over `sizes`, FLOP/s (random data, never zeros)."""
    best = 0.0
    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        a = torch.randn((size, size), generator=generator).to(device=device, dtype=dtype)
        b = torch.randn((size, size), generator=generator).to(device=device, dtype=dtype)
        a @ b  # warm up threads / handles
        seconds = best_time(lambda: a @ b, repeats, device)
        best = max(best, 2 * size**3 / seconds)
    return best


def memory_bandwidth(device: torch.device, elements: int, repeats: int) -> dict:
    """STREAM-like triad a = b + 2 c and copy a = b on float32 arrays of `elements`, bytes/s.

    Bytes counted: triad reads b and c and writes a (12 B per element), copy 8 B per element.
    """
    b = torch.rand(elements, device=device)
    c = torch.rand(elements, device=device)
    a = torch.empty(elements, device=device)
    torch.add(b, c, alpha=2.0, out=a)  # warm up, first touch
    triad = best_time(lambda: torch.add(b, c, alpha=2.0, out=a), repeats, device)
    copy = best_time(lambda: a.copy_(b), repeats, device)
    return {"triad_bytes_per_s": 12 * elements / triad, "copy_bytes_per_s": 8 * elements / copy, "elements": elements}


def count_flops(function: Callable[[], object]) -> int:
    """Matrix-product and convolution FLOPs of one call (torch.utils.flop_counter)."""
    counter = FlopCounterMode(display=False)
    with counter:
        function()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclass
class Workload:
    """One measured step: its time, its counted FLOPs and its minimal bytes (module docstring)."""

    name: str
    description: str
    seconds_per_step: float
    flops_per_step: int
    bytes_per_step: int
    gemm_dtype: str  # the dtype the step's matrix products run in: picks the GEMM ceiling
    extra: dict

    def roofline(self, ceilings: dict) -> dict:
        """The roofline row against `ceilings`, or against the ceilings measured right around this
        workload (`extra["ceilings"]`, see `bracketed`) when present: on a shared machine those
        saw the same load as the workload."""
        ceilings = self.extra.get("ceilings", ceilings)
        gemm = ceilings["gemm_flops_per_s"][self.gemm_dtype]
        bandwidth = ceilings["memory_bytes_per_s"]
        compute_floor = self.flops_per_step / gemm
        memory_floor = self.bytes_per_step / bandwidth
        bound = "gemm" if compute_floor >= memory_floor else "memory"
        floor = max(compute_floor, memory_floor)
        return {
            "description": self.description,
            "seconds_per_step": self.seconds_per_step,
            "steps_per_s": 1.0 / self.seconds_per_step,
            "flops_per_step": self.flops_per_step,
            "bytes_per_step": self.bytes_per_step,
            "gemm_dtype": self.gemm_dtype,
            "bound": bound,
            "bound_rate": gemm if bound == "gemm" else bandwidth,
            "bound_unit": "FLOP/s" if bound == "gemm" else "bytes/s",
            "achieved_flops_per_s": self.flops_per_step / self.seconds_per_step,
            "achieved_bytes_per_s": self.bytes_per_step / self.seconds_per_step,
            "compute_floor_s": compute_floor,
            "memory_floor_s": memory_floor,
            "fraction_of_bound": floor / self.seconds_per_step,
            **{key: value for key, value in self.extra.items() if key != "ceilings"},
            "ceilings_used": {"gemm_flops_per_s": gemm, "memory_bytes_per_s": bandwidth},
        }


def binary_images(count: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random binary images (CPU); throughput does not depend on pixel content."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((count, *shape), generator=generator) < 0.3).float()


def _parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def training_workload(
    name: str,
    description: str,
    build: Callable[[], torch.nn.Module],
    *,
    batch: int,
    steps: int,
    device: torch.device,
    precision: str = "float32",
    beta: float | list[float] = 1.0,
    repeats: int = 2,
) -> Workload:
    """Steps of `training.train` (one epoch of `steps` batches) on `device`: time, FLOPs, bytes."""
    probe = build()
    shape = tuple(probe.data_shape)
    images = binary_images(batch * steps, shape, seed=1)
    config = TrainConfig(epochs=1, batch_size=batch, beta=beta, precision=precision)

    def run(count: int):
        model = build().to(device)
        return lambda: train(model, images[: batch * count], config)

    one_step = run(1)
    one_step()  # warm up (allocator, threads, handles)
    flops = count_flops(run(1))
    seconds = math.inf
    for _ in range(repeats):
        seconds = min(seconds, best_time(run(steps), 1, device) / steps)
    parameters = _parameters(probe)
    return Workload(
        name, description, seconds, flops,
        ADAM_BYTES_PER_PARAMETER * parameters + batch * math.prod(shape) * 4,
        "bfloat16" if precision == "bfloat16" else "float32",
        {"parameters": parameters, "batch": batch, "steps": steps, "precision": precision},
    )


def paper_c_sweep(num_layers: int = 1) -> Callable[[], torch.nn.Module]:
    """Paper C's 12-β sweep as one stacked ensemble (bozkurt2021 MLP, 3x32x32, z=10)."""
    config = models.bozkurt2021_mlp(num_layers=num_layers)
    return lambda: EnsembleMLPVAE.from_members([models.build_model(config, seed=s) for s in range(len(PAPER_C_BETAS))])


def stacked(config: models.MLPVAEConfig, members: int) -> Callable[[], torch.nn.Module]:
    return lambda: EnsembleMLPVAE.from_members([models.build_model(config, seed=s) for s in range(members)])


def ensemble_vs_sequential(device: torch.device, steps: int, precision: str = "float32") -> dict:
    """Paper C's 12-β sweep: one stacked ensemble vs 12 single-model runs one after another."""
    config = models.bozkurt2021_mlp(num_layers=1)
    batch = 128
    images = binary_images(batch * steps, tuple(config.data_shape), seed=1)
    members = [models.build_model(config, seed=seed).to(device) for seed in range(len(PAPER_C_BETAS))]
    ensemble = EnsembleMLPVAE.from_members(members)

    def sequential():
        for member, beta in zip(members, PAPER_C_BETAS):
            train(member, images, TrainConfig(epochs=1, batch_size=batch, beta=beta, precision=precision))

    def batched():
        train(ensemble, images, TrainConfig(epochs=1, batch_size=batch, beta=PAPER_C_BETAS, precision=precision))

    batched()  # warm up both paths once
    sequential()
    sequential_seconds = ensemble_seconds = math.inf
    for _ in range(2):  # alternate, keep the best of each
        sequential_seconds = min(sequential_seconds, best_time(sequential, 1, device))
        ensemble_seconds = min(ensemble_seconds, best_time(batched, 1, device))
    return {
        "members": len(PAPER_C_BETAS),
        "steps": steps,
        "precision": precision,
        "model": "bozkurt2021 MLP, 1 hidden layer of 512, z=10, 3x32x32, batch 128",
        "sequential_s": sequential_seconds,
        "ensemble_s": ensemble_seconds,
        "ratio": sequential_seconds / ensemble_seconds,
    }


def unet_train_workload(device: torch.device, *, batch: int, steps: int, precision: str) -> Workload:
    """DDPM training steps of the shipped cpu-profile UNet (diffusion.cpu_config, 1.05 M parameters)."""
    config = diffusion.cpu_config()
    images = torch.rand((batch * 4, *config.data_shape), generator=torch.Generator().manual_seed(0))
    options = dict(batch_size=batch, precision=precision, device=device, ema_decay=None, progress=False)
    diffusion.train_diffusion(config, images, steps=1, **options)  # warm up
    flops = count_flops(lambda: diffusion.train_diffusion(config, images, steps=1, **options))
    seconds = best_time(lambda: diffusion.train_diffusion(config, images, steps=steps, **options), 1, device)
    build = diffusion.build_diffusion_model(config, seed=0)
    parameters = _parameters(build)
    # Includes building the model and staging the images once per call (small next to `steps` steps).
    return Workload(
        "unet_train_step", "DDPM step, cpu-profile UNet (32-64-64, 1.05 M parameters), 28x28",
        seconds / steps, flops, ADAM_BYTES_PER_PARAMETER * parameters + batch * math.prod(config.data_shape) * 4,
        "bfloat16" if precision == "bfloat16" else "float32",
        {"parameters": parameters, "batch": batch, "steps": steps, "precision": precision},
    )


def unet_sampler_workload(device: torch.device, *, batch: int, steps: int, precision: str) -> Workload:
    """DDIM sampling with the cpu-profile UNet: one step = one network evaluation of `batch` images."""
    config = diffusion.cpu_config()
    model = diffusion.build_diffusion_model(config, seed=0).to(device)
    options = dict(sampler="ddim", steps=steps, batch_size=batch, precision=precision)
    diffusion.sample(model, batch, **dict(options, steps=1))  # warm up
    flops = count_flops(lambda: diffusion.sample(model, batch, **dict(options, steps=1)))
    seconds = best_time(lambda: diffusion.sample(model, batch, **options), 2, device)
    parameters = _parameters(model)
    image_bytes = batch * math.prod(config.data_shape) * 4
    return Workload(
        "unet_sampler", f"DDIM network evaluation of {batch} images, cpu-profile UNet",
        seconds / steps, flops, 4 * parameters + 2 * image_bytes,
        "bfloat16" if precision == "bfloat16" else "float32",
        {"parameters": parameters, "batch": batch, "ddim_steps": steps, "precision": precision,
         "images_per_s": batch / seconds},
    )


def iwae_workload(device: torch.device, *, points: int, num_samples: int) -> Workload:
    """IWAE K samples for `points` data points (zhang2022 MLP), batched and chunked (estimators.iwae_bound)."""
    config = models.zhang2022_mlp()
    model = models.build_model(config, seed=0).to(device).eval()
    x = binary_images(points, tuple(config.data_shape), seed=2)

    def call():
        return estimators.iwae_bound(model, x, num_samples, generator=torch.Generator().manual_seed(0))

    call()
    flops = count_flops(call)
    seconds = best_time(call, 2, device)
    parameters = _parameters(model)
    return Workload(
        "iwae_k1000", f"IWAE K={num_samples} on {points} points, zhang2022 MLP (forward only)",
        seconds, flops, 4 * parameters + points * math.prod(config.data_shape) * 4, "float32",
        {"parameters": parameters, "points": points, "num_samples": num_samples, "points_per_s": points / seconds},
    )


def combine_ceilings(first: dict, second: dict) -> dict:
    """The larger of two measurements of each ceiling (start and end of a run): on a shared machine a
    burst of other work can only lower a measured rate, and a ceiling below a workload's achieved
    rate would give fractions above 1."""
    combined = dict(first)
    combined["gemm_flops_per_s"] = {
        dtype: max(first["gemm_flops_per_s"][dtype], second["gemm_flops_per_s"][dtype]) for dtype in first["gemm_flops_per_s"]
    }
    combined["memory_bytes_per_s"] = max(first["memory_bytes_per_s"], second["memory_bytes_per_s"])
    combined["measurements"] = [first, second]
    return combined


def bracketed(measure: Callable[[], Workload], device: torch.device) -> Workload:
    """`measure()` with quick ceilings measured just before and just after it, kept with the workload."""
    before = ceilings(device, quick=True)
    workload = measure()
    workload.extra["ceilings"] = combine_ceilings(before, ceilings(device, quick=True))
    return workload


def small_gemm_rate(device: torch.device, batch: int, inputs: int, outputs: int, repeats: int = 20) -> float:
    """FLOP/s of one (batch x inputs) @ (inputs x outputs) product: the rate a step's own layer shapes allow."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, inputs), generator=generator).to(device)
    w = torch.randn((inputs, outputs), generator=generator).to(device)
    for _ in range(3):
        x @ w
    return 2 * batch * inputs * outputs / best_time(lambda: x @ w, repeats, device)


def ceilings(device: torch.device, *, quick: bool) -> dict:
    """The GEMM rates (float32, bfloat16) and the memory bandwidth of `device`, measured now."""
    repeats = 3 if quick else 5
    sizes = (1024, 2048) if device.type == "cpu" else (4096, 8192)
    elements = (2**25 if device.type == "cpu" else 2**28) // (2 if quick else 1)
    bandwidth = memory_bandwidth(device, elements, repeats)
    return {
        "gemm_flops_per_s": {
            "float32": gemm_rate(device, torch.float32, sizes, repeats),
            "bfloat16": gemm_rate(device, torch.bfloat16, sizes, repeats),
        },
        "memory_bytes_per_s": bandwidth["triad_bytes_per_s"],
        "memory": bandwidth,
        "gemm_sizes": list(sizes),
        "float32_policy": vdevice.precision_policy(device)["float32"],
    }
