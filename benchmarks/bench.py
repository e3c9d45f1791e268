"""Speed of the vaegen engine on this CPU, each workload against its own roofline bound, in one run.

Writes benchmarks/results.json and prints a table. Run with `benchmarks/run.sh` (or
`python benchmarks/bench.py --quick` for a fast, noisier pass). The GPU counterpart is
benchmarks/gpu_check.sh.

Measured in one process, minutes apart (so ratios are comparable even on a shared machine):
- ceilings (benchmarks/workloads.py): the best float32 and bfloat16 GEMM rates (n x n products,
  all torch threads) and the memory bandwidth of a STREAM-like triad on arrays far beyond the
  caches;
- workloads: training steps of the zhang2022 MLP, paper B's and paper A's MLPs (3 seeds stacked),
  paper C's 12-β sweep (float32 and bf16 autocast), the cpu-profile UNet's DDPM step and DDIM
  network evaluation, IWAE K=1000; each with its counted FLOPs, its minimal bytes, the bound that
  applies ("gemm" or "memory") and `fraction_of_bound` (workloads.py docstring);
- ratios: engine vs a DataLoader loop with per-sample collation (how seed 001's code and pythae
  train), the 12-member β ensemble vs 12 sequential runs, IWAE batched vs the per-point loop of
  pythae's `get_nll`, bf16 autocast vs float32 (paper C's 3-layer MLP).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import workloads  # noqa: E402
from vaegen_utils import estimators, io, models  # noqa: E402
from vaegen_utils import device as vdevice  # noqa: E402
from vaegen_utils.training import TrainConfig, train  # noqa: E402

PAPER_C_BETAS = workloads.PAPER_C_BETAS
CPU = torch.device("cpu")


def best_time(function, repeats: int) -> float:
    return workloads.best_time(function, repeats, CPU)


binary_images = workloads.binary_images


class PerSampleDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset: uint8 storage, one sample converted per __getitem__."""

    def __init__(self, uint8_images: np.ndarray):
        self.uint8_images = uint8_images

    def __len__(self) -> int:
        return len(self.uint8_images)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.uint8_images[index]).float().div(255.0)  # ToTensor
        return torch.round(image), 0  # seed 001's fixed binarization, (image, label) pairs


def engine_throughput(config, images: torch.Tensor) -> float:
    """Images/s of `training.train` (one epoch, batch 100) for the zhang2022 MLP."""
    train(models.build_model(config, seed=0), images[:2000], TrainConfig(epochs=1, batch_size=100))  # warm-up
    model = models.build_model(config, seed=0)
    seconds = best_time(lambda: train(model, images, TrainConfig(epochs=1, batch_size=100)), 1)
    return len(images) / seconds


def dataloader_throughput(config, images: torch.Tensor) -> float:
    """The plain loop of seed 001's code / pythae: DataLoader, per-sample collation, Adam."""
    uint8_images = (images * 255).to(torch.uint8).numpy()
    loader = torch.utils.data.DataLoader(PerSampleDataset(uint8_images), batch_size=100, shuffle=True)
    model = models.build_model(config, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run(limit: int | None = None) -> int:
        seen = 0
        for step, (x, _) in enumerate(loader):
            if limit is not None and step >= limit:
                break
            terms = estimators.beta_elbo(model, x)
            loss = -terms.elbo.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(x)
        return seen

    run(limit=20)  # warm-up
    start = time.perf_counter()
    seen = run()
    return seen / (time.perf_counter() - start)


def iwae_per_point_loop(model, x: torch.Tensor, num_samples: int, chunk: int = 100) -> torch.Tensor:
    """The per-data-point IWAE loop of pythae's `get_nll` (its default batch_size=100), our code.

    For each data point: repeat it `chunk` times, encode the copies, draw one z per copy, score
    log p(x, z) - log q(z|x), and repeat num_samples // chunk times; then one logsumexp - log K.
    """
    values = []
    with torch.no_grad():
        for index in range(len(x)):
            repeated = x[index : index + 1].expand(chunk, *x.shape[1:])  # (chunk, C, H, W)
            log_weights = []
            for _ in range(num_samples // chunk):
                mean, log_std = model.encode(repeated)  # (chunk, Z) each
                z = estimators.reparameterize(mean, log_std)
                log_weights.append(
                    model.log_likelihood(repeated, z)
                    + estimators.standard_normal_log_density(z)
                    - estimators.gaussian_log_density(z, mean, log_std)
                )
            log_weights = torch.cat(log_weights)  # (K,)
            values.append(torch.logsumexp(log_weights, 0) - math.log(len(log_weights)))
    return torch.stack(values)


def iwae_batched_vs_loop(num_points: int, num_samples: int) -> dict:
    """`estimators.iwae_bound` (batched over points, chunked over K) vs the per-point loop."""
    config = models.zhang2022_mlp()
    model = models.build_model(config, seed=0).eval()
    x = binary_images(num_points, tuple(config.data_shape), seed=2)

    def batched():
        return estimators.iwae_bound(model, x, num_samples, generator=torch.Generator().manual_seed(0))

    def loop():
        return iwae_per_point_loop(model, x, num_samples)

    # Both estimate the same quantity: check they agree before timing them.
    difference = (batched().mean() - loop().mean()).abs().item()
    batched_seconds = loop_seconds = math.inf
    for _ in range(2):  # alternate, keep the best of each
        batched_seconds = min(batched_seconds, best_time(batched, 1))
        loop_seconds = min(loop_seconds, best_time(loop, 1))
    return {
        "points": num_points,
        "num_samples": num_samples,
        "baseline": "per data point, chunks of 100 samples with the point re-encoded (pythae get_nll)",
        "mean_abs_difference_nats": difference,
        "batched_s": batched_seconds,
        "loop_s": loop_seconds,
        "ratio": loop_seconds / batched_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (noisier)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results.json"), help="where to write the JSON")
    args = parser.parse_args()
    quick = args.quick
    load_start = os.getloadavg()[0]
    started = time.perf_counter()

    torch.manual_seed(0)
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": vdevice.provenance("cpu"),
        },
        "quick": quick,
    }

    print("measuring the ceilings (GEMM float32/bfloat16, memory triad) ...", flush=True)
    first_ceilings = workloads.ceilings(CPU, quick=quick)

    steps = 10 if quick else 30
    measured = []

    def add(measure) -> None:  # each workload between two quick ceiling measurements (same load)
        measured.append(workloads.bracketed(measure, CPU))

    print("measuring the training workloads ...", flush=True)
    add(lambda: workloads.training_workload(
        "engine_seed001", "zhang2022 MLP (784-500-500-10, Bernoulli), batch 100",
        lambda: models.build_model(models.zhang2022_mlp(), seed=0), batch=100, steps=steps * 2, device=CPU))
    add(lambda: workloads.training_workload(
        "paper_b_ensemble", "paper B MLP (3 hidden layers of 500), 3 seeds stacked, batch 100",
        workloads.stacked(models.zhang2022_mlp(num_hidden_layers=3), 3), batch=100, steps=steps, device=CPU))
    add(lambda: workloads.training_workload(
        "paper_a_mlp", "paper A MLP (1024-512-512-16), 3 seeds stacked, batch 100",
        workloads.stacked(models.xiao2024_mlp(), 3), batch=100, steps=steps, device=CPU))
    for precision in ("float32", "bfloat16"):
        add(lambda: workloads.training_workload(
            f"paper_c_sweep_step_{precision}", f"paper C 12-β sweep, 1-layer MLP (512), batch 128, {precision}",
            workloads.paper_c_sweep(1), batch=128, steps=max(5, steps // 2), device=CPU, precision=precision,
            beta=PAPER_C_BETAS))
    print("measuring the UNet and IWAE workloads ...", flush=True)
    add(lambda: workloads.unet_train_workload(CPU, batch=128, steps=2 if quick else 4, precision="bfloat16"))
    add(lambda: workloads.unet_sampler_workload(CPU, batch=250, steps=2 if quick else 4, precision="float32"))
    add(lambda: workloads.iwae_workload(CPU, points=50 if quick else 100, num_samples=1000))
    print("measuring the ceilings again ...", flush=True)
    ceilings = workloads.combine_ceilings(first_ceilings, workloads.ceilings(CPU, quick=quick))
    results["ceilings"] = ceilings
    results["workloads"] = {workload.name: workload.roofline(ceilings) for workload in measured}
    # What the steps' own layer shapes allow: the largest GEMM of each MLP at its batch size.
    results["small_gemm_flops_per_s"] = {
        "100x784x500 (zhang2022 MLP, batch 100)": workloads.small_gemm_rate(CPU, 100, 784, 500),
        "100x1024x512 (paper A MLP, batch 100)": workloads.small_gemm_rate(CPU, 100, 1024, 512),
        "128x3072x512 (paper C MLP, batch 128)": workloads.small_gemm_rate(CPU, 128, 3072, 512),
    }

    print("measuring the ratios (engine vs DataLoader, ensemble vs sequential, IWAE, bf16) ...", flush=True)
    config = models.zhang2022_mlp()
    images = binary_images(10_000 if quick else 20_000, tuple(config.data_shape), seed=0)
    engine = loader = 0.0
    for _ in range(2 if quick else 3):  # alternate, keep each one's best round
        engine = max(engine, engine_throughput(config, images))
        loader = max(loader, dataloader_throughput(config, images))
    results["engine_vs_dataloader"] = {"engine_images_per_s": engine, "dataloader_images_per_s": loader, "ratio": engine / loader}
    results["ensemble_vs_sequential"] = workloads.ensemble_vs_sequential(CPU, steps=10 if quick else 30)
    results["iwae_batched_vs_loop"] = iwae_batched_vs_loop(num_points=50 if quick else 100, num_samples=1000)
    bf16 = results["workloads"]["paper_c_sweep_step_bfloat16"]["seconds_per_step"]
    fp32 = results["workloads"]["paper_c_sweep_step_float32"]["seconds_per_step"]
    results["bfloat16_vs_float32"] = fp32 / bf16

    targets = {"fraction_of_bound": 0.7, "engine_vs_dataloader": 1.5, "ensemble_vs_sequential": 2.0, "iwae_batched_vs_loop": 10.0}
    results["targets"] = targets
    results["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    results["wall_s"] = time.perf_counter() - started
    io.atomic_write_json(args.output, results)

    gemm = ceilings["gemm_flops_per_s"]
    print()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {load_start:.1f} -> {results['load_average_1min']['end']:.1f}")
    print(f"ceilings: GEMM fp32 {gemm['float32'] / 1e9:.0f} GFLOP/s, bf16 {gemm['bfloat16'] / 1e9:.0f} GFLOP/s; "
          f"memory triad {ceilings['memory_bytes_per_s'] / 1e9:.1f} GB/s")
    print(f"{'workload':<30}{'ms/step':>10}{'GFLOP':>9}{'MB':>9}{'bound':>8}{'fraction':>10}")
    for name, row in results["workloads"].items():
        print(f"{name:<30}{row['seconds_per_step'] * 1e3:>10.2f}{row['flops_per_step'] / 1e9:>9.2f}"
              f"{row['bytes_per_step'] / 1e6:>9.1f}{row['bound']:>8}{row['fraction_of_bound']:>10.2f}")
    for shape, rate in results["small_gemm_flops_per_s"].items():
        print(f"GEMM at a step's own shape {shape}: {rate / 1e9:.0f} GFLOP/s")
    print(f"engine vs DataLoader {results['engine_vs_dataloader']['ratio']:.2f}; ensemble vs sequential "
          f"{results['ensemble_vs_sequential']['ratio']:.2f}; IWAE batched vs loop {results['iwae_batched_vs_loop']['ratio']:.2f}; "
          f"bf16 vs fp32 (paper C sweep) {results['bfloat16_vs_float32']:.2f}")
    print(f"\nwrote {args.output} ({results['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
