"""Speed of the vaegen engine, measured side by side in one run on this machine.

Every number is a ratio of two timings taken in the same process, minutes apart, with the
machine's own fp32 matmul rate as the yardstick, so results are comparable across machines.
Writes benchmarks/results.json and prints a table. Run with `benchmarks/run.sh` (or
`python benchmarks/bench.py --quick` for a fast, noisier pass).

Measured:
- matmul_gflops: the best fp32 GEMM rate of this machine (n x n @ n x n, all torch threads);
- engine: seed-001 MLP VAE (784-500-500-10, Bernoulli, batch 100, Adam) trained by
  `vaegen_utils.training.train`, in images/s and GFLOP/s (3x the forward FLOPs per image);
- dataloader: the same model and loss trained by a plain torch DataLoader loop with per-sample
  collation and a per-sample transform (how seed 001's code and pythae train);
- ensemble vs sequential: a 12-member beta sweep (paper C's 12 betas, its 1-layer MLP on 3x32x32
  inputs, batch 128) as one stacked ensemble vs 12 single models trained one after another;
- iwae batched vs loop: IWAE with K=1000 on 100 data points, one batched call vs the per-point
  loop of pythae's `get_nll` (chunks of 100 importance samples, the point re-encoded each chunk).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vaegen_utils import estimators, io, models  # noqa: E402
from vaegen_utils.ensemble import EnsembleMLPVAE  # noqa: E402
from vaegen_utils.training import TrainConfig, train  # noqa: E402

PAPER_C_BETAS = [0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0]  # paper C, footnote 2


def best_time(function, repeats: int) -> float:
    """Minimum wall time of `repeats` calls (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(size: int, repeats: int) -> float:
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b  # warm up the BLAS threads
    seconds = best_time(lambda: a @ b, repeats)
    return 2 * size**3 / seconds / 1e9


def mlp_forward_flops(config) -> int:
    """Multiply-adds x 2 of every Linear layer of an MLP VAE, per image (encoder + decoder)."""
    model = models.build_model(config, seed=0)
    return 2 * sum(module.in_features * module.out_features for module in model.modules() if isinstance(module, torch.nn.Linear))


def binary_images(count: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random binary images; throughput does not depend on pixel content."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((count, *shape), generator=generator) < 0.3).float()


def engine_throughput(config, images: torch.Tensor, epochs: int) -> float:
    model = models.build_model(config, seed=0)
    train_config = TrainConfig(epochs=1, batch_size=100, learning_rate=1e-3, seed=0)
    train(model, images[:2000], train_config)  # warm-up: allocator, threads, Adam state
    model = models.build_model(config, seed=0)
    train_config = TrainConfig(epochs=epochs, batch_size=100, learning_rate=1e-3, seed=0)
    start = time.perf_counter()
    train(model, images, train_config)
    return epochs * len(images) / (time.perf_counter() - start)


class PerSampleDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset: uint8 storage, one sample converted per __getitem__."""

    def __init__(self, uint8_images: np.ndarray):
        self.uint8_images = uint8_images

    def __len__(self) -> int:
        return len(self.uint8_images)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.uint8_images[index]).float().div(255.0)  # ToTensor
        return torch.round(image), 0  # seed 001's fixed binarization, (image, label) pairs


def dataloader_throughput(config, images: torch.Tensor, epochs: int) -> float:
    """The plain loop of seed 001's code / pythae: DataLoader, per-sample collation, Adam."""
    uint8_images = (images * 255).to(torch.uint8).numpy()
    loader = torch.utils.data.DataLoader(PerSampleDataset(uint8_images), batch_size=100, shuffle=True)
    model = models.build_model(config, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run(num_epochs: int, limit: int | None = None) -> int:
        seen = 0
        for _ in range(num_epochs):
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

    run(1, limit=20)  # warm-up
    start = time.perf_counter()
    seen = run(epochs)
    return seen / (time.perf_counter() - start)


def ensemble_vs_sequential(steps: int) -> dict:
    """Paper C's 12-beta sweep: one stacked ensemble vs 12 sequential single-model runs."""
    config = models.bozkurt2021_mlp(num_layers=1)
    batch = 128
    images = binary_images(batch * steps, tuple(config.data_shape), seed=1)
    members = [models.build_model(config, seed=seed) for seed in range(len(PAPER_C_BETAS))]

    def sequential():
        for member, beta in zip(members, PAPER_C_BETAS):
            train(member, images, TrainConfig(epochs=1, batch_size=batch, beta=beta, seed=0))

    ensemble = EnsembleMLPVAE.from_members(members)

    def batched():
        train(ensemble, images, TrainConfig(epochs=1, batch_size=batch, beta=PAPER_C_BETAS, seed=0))

    batched()  # warm-up both paths once
    sequential_seconds = ensemble_seconds = math.inf
    for _ in range(2):  # alternate, keep the best of each
        sequential_seconds = min(sequential_seconds, best_time(sequential, 1))
        ensemble_seconds = min(ensemble_seconds, best_time(batched, 1))
    return {
        "members": len(PAPER_C_BETAS),
        "steps": steps,
        "model": "bozkurt2021 MLP, 1 hidden layer of 512, z=10, 3x32x32, batch 128",
        "sequential_s": sequential_seconds,
        "ensemble_s": ensemble_seconds,
        "ratio": sequential_seconds / ensemble_seconds,
    }


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
        "batched_points_per_s": num_points / batched_seconds,
        "ratio": loop_seconds / batched_seconds,
    }


def bfloat16_vs_float32(steps: int) -> dict:
    """Training steps of paper C's 3-layer MLP in float32 vs under bf16 autocast (AMX CPUs)."""
    config = models.bozkurt2021_mlp(num_layers=3)
    images = binary_images(128 * steps, tuple(config.data_shape), seed=3)
    seconds = {}
    for precision in ("float32", "bfloat16"):
        model = models.build_model(config, seed=0)
        train(model, images[:1280], TrainConfig(epochs=1, batch_size=128, precision=precision))  # warm-up
        seconds[precision] = best_time(
            lambda: train(model, images, TrainConfig(epochs=1, batch_size=128, precision=precision)), 2
        )
    return {
        "model": "bozkurt2021 MLP, 3 hidden layers of 512, z=10, 3x32x32, batch 128",
        "steps": steps,
        "float32_s": seconds["float32"],
        "bfloat16_s": seconds["bfloat16"],
        "ratio": seconds["float32"] / seconds["bfloat16"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (noisier)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results.json"), help="where to write the JSON")
    args = parser.parse_args()
    quick = args.quick

    torch.manual_seed(0)
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "quick": quick,
    }

    print("measuring the matmul yardstick ...", flush=True)
    results["matmul_gflops"] = max(matmul_gflops(size, 3 if quick else 5) for size in (1024, 2048))

    print("measuring the engine and the DataLoader loop (seed-001 MLP) ...", flush=True)
    config = models.zhang2022_mlp()
    images = binary_images(10_000 if quick else 20_000, tuple(config.data_shape), seed=0)
    flops_per_image = 3 * mlp_forward_flops(config)  # forward + backward (2x forward)
    # Alternate the two loops and keep each one's best round, so a burst of other work on the
    # machine cannot favour one side.
    rounds = 2 if quick else 3
    engine_images_per_s = loader_images_per_s = 0.0
    for _ in range(rounds):
        engine_images_per_s = max(engine_images_per_s, engine_throughput(config, images, epochs=1))
        loader_images_per_s = max(loader_images_per_s, dataloader_throughput(config, images, epochs=1))
    results["engine"] = {
        "images_per_s": engine_images_per_s,
        "gflops": engine_images_per_s * flops_per_image / 1e9,
        "flops_per_image": flops_per_image,
    }
    results["dataloader"] = {
        "images_per_s": loader_images_per_s,
        "gflops": loader_images_per_s * flops_per_image / 1e9,
    }

    print("measuring the 12-member beta-sweep ensemble vs sequential runs ...", flush=True)
    results["ensemble"] = ensemble_vs_sequential(steps=20 if quick else 60)

    print("measuring IWAE K=1000 batched vs per-point loop ...", flush=True)
    results["iwae"] = iwae_batched_vs_loop(num_points=50 if quick else 100, num_samples=1000)

    print("measuring bf16 autocast vs float32 training (paper C 3-layer MLP) ...", flush=True)
    results["bfloat16"] = bfloat16_vs_float32(steps=20 if quick else 50)
    results["bfloat16_vs_float32"] = results["bfloat16"]["ratio"]

    targets = {"engine_vs_matmul": 0.8, "engine_vs_dataloader": 1.5, "ensemble_vs_sequential": 2.0, "iwae_batched_vs_loop": 10.0}
    ratios = {
        "engine_vs_matmul": results["engine"]["gflops"] / results["matmul_gflops"],
        "engine_vs_dataloader": engine_images_per_s / loader_images_per_s,
        "ensemble_vs_sequential": results["ensemble"]["ratio"],
        "iwae_batched_vs_loop": results["iwae"]["ratio"],
    }
    results.update(ratios)
    results["targets"] = targets
    results["meets_target"] = {name: bool(ratios[name] >= target) for name, target in targets.items()}
    io.atomic_write_json(args.output, results)

    print()
    print(f"machine: {results['machine']['cpu_count']} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul yardstick: {results['matmul_gflops']:.1f} GFLOP/s")
    print(f"engine: {engine_images_per_s:,.0f} images/s = {results['engine']['gflops']:.1f} GFLOP/s; "
          f"DataLoader loop: {loader_images_per_s:,.0f} images/s")
    print(f"{'ratio':<26}{'measured':>10}{'target':>10}  met")
    for name, target in targets.items():
        print(f"{name:<26}{ratios[name]:>10.2f}{target:>10.1f}  {'yes' if ratios[name] >= target else 'NO'}")
    print(f"bfloat16_vs_float32 (no target; the lever for paper C's sweeps): {results['bfloat16_vs_float32']:.2f}")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
