"""The GPU half of the benchmarks: workloads against their roofline bounds, ensembles, bf16, a real slice.

Run by benchmarks/gpu_check.sh (which also runs the CUDA-marked tests); writes
benchmarks/results-gpu.json. Every number comes from this one run on this one GPU:

- ceilings: float32 (IEEE, TF32 off: the library's policy) and bfloat16 GEMM rates of 4096/8192
  products, and the device memory bandwidth (triad and copy on 1 GiB arrays);
- workloads (benchmarks/workloads.py, same code as the CPU run): paper C's 12-β sweep step
  (float32 and bf16), paper B's ensemble, paper A's MLP, the zhang2022-MLP engine, the UNet's DDPM
  step and DDIM network evaluation, IWAE K=1000; steps/s, bound ("gemm"/"memory") and fraction;
- ensemble vs sequential: the 12-β sweep as one stacked model vs 12 runs (goal >= 5x on a GPU);
- torch.compile on/off for the paper C sweep step (VAEGEN_COMPILE): does it pay here?
- bf16 vs float32 agreement: the 12-β sweep trained both ways from the same weights on the same
  batches, per-member ELBO after training (evaluated in float32) and the loss trajectories;
- a real paper-profile slice: paper C's 1-layer MLP sweep (12 β) on the full random split
  (81,920 Tetrominoes) through `bozkurt2021.run_sweep` for about 60 s of training, with its
  evaluation, giving the measured time per 1,000 iterations and for the paper's 257k.

Usage: python benchmarks/gpu_check.py [--quick] [--output PATH] [--slice-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import workloads  # noqa: E402
from vaegen_utils import device as vdevice  # noqa: E402
from vaegen_utils import io, models  # noqa: E402
from vaegen_utils.training import TrainConfig, train  # noqa: E402


def stage(results: dict, name: str, function) -> None:
    """Run one part; record its result or its error (the other parts still run)."""
    started = time.perf_counter()
    print(f"[gpu_check] {name} ...", flush=True)
    try:
        results[name] = function()
    except Exception as error:  # noqa: BLE001 - reported in the JSON and the exit status
        results.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        print(f"[gpu_check] {name} FAILED: {type(error).__name__}: {error}", flush=True)
    print(f"[gpu_check] {name}: {time.perf_counter() - started:.1f} s", flush=True)


def compile_on_off(device: torch.device, steps: int) -> dict:
    """Seconds per paper C sweep step (bf16) without and with VAEGEN_COMPILE=1, compile time excluded.

    One model per setting, trained once to warm up (and compile: dynamo's cache holds it for the
    same model object), then timed over `steps` steps.
    """
    config = models.bozkurt2021_mlp(num_layers=1)
    images = workloads.binary_images(128 * steps, tuple(config.data_shape), seed=7)
    train_config = TrainConfig(epochs=1, batch_size=128, beta=workloads.PAPER_C_BETAS, precision="bfloat16")
    seconds = {}
    for flag in ("0", "1"):
        os.environ[vdevice.ENV_COMPILE] = flag
        try:
            model = workloads.paper_c_sweep(1)().to(device)
            warm = time.perf_counter()
            train(model, images[: 128 * 5], train_config)
            warmup_seconds = time.perf_counter() - warm
            timed = workloads.best_time(lambda: train(model, images, train_config), 2, device) / steps
            seconds["compiled" if flag == "1" else "eager"] = timed
            seconds[f"warmup_s_{'compiled' if flag == '1' else 'eager'}"] = warmup_seconds
        finally:
            os.environ.pop(vdevice.ENV_COMPILE, None)
    return {**seconds, "speedup": seconds["eager"] / seconds["compiled"], "pays": seconds["compiled"] < 0.95 * seconds["eager"]}


def bf16_agreement(device: torch.device, steps: int) -> dict:
    """The 12-β sweep trained in float32 and in bf16 autocast from the same weights and batches."""
    config = models.bozkurt2021_mlp(num_layers=1)
    batch = 128
    images = workloads.binary_images(batch * steps, tuple(config.data_shape), seed=5)
    evaluation = workloads.binary_images(2000, tuple(config.data_shape), seed=6)
    out = {}
    weights = {}
    for precision in ("float32", "bfloat16"):
        model = workloads.paper_c_sweep(1)().to(device)
        result = train(
            model, images, TrainConfig(epochs=1, batch_size=batch, beta=workloads.PAPER_C_BETAS, precision=precision),
            eval_sets={"eval": evaluation},
        )
        out[precision] = {"elbo": result.final("eval")["elbo"]}
        weights[precision] = [parameter.detach().double().cpu() for parameter in model.parameters()]
    elbo32, elbo16 = out["float32"]["elbo"], out["bfloat16"]["elbo"]
    relative = [abs(a - b) / abs(a) for a, b in zip(elbo32, elbo16)]
    parameter_error = max(
        float((a - b).norm() / a.norm().clamp_min(1e-30)) for a, b in zip(weights["float32"], weights["bfloat16"])
    )
    return {
        "steps": steps,
        "betas": workloads.PAPER_C_BETAS,
        "elbo_float32": elbo32,
        "elbo_bfloat16": elbo16,
        "max_relative_elbo_difference": max(relative),
        "max_relative_parameter_difference": parameter_error,
        "agrees_within_1_percent": max(relative) < 0.01,
    }


def paper_c_slice(seconds: float, steps_per_s_estimate: float) -> dict:
    """Paper C's 1-layer MLP 12-β sweep on the full random split for about `seconds` of training."""
    from vaegen_utils import bozkurt2021, cache, tetrominoes

    started = time.perf_counter()
    data = tetrominoes.load_tetrominoes()
    split = bozkurt2021.tetromino_split(data, "random")
    data_seconds = time.perf_counter() - started
    per_epoch = bozkurt2021.steps_per_epoch(split.num_train)
    epochs = max(1, round(seconds * steps_per_s_estimate / per_epoch))
    spec = bozkurt2021.SweepSpec(architecture="mlp1", iterations=epochs * per_epoch)
    with tempfile.TemporaryDirectory() as folder:
        store = cache.RunCache(folder)
        wall = time.perf_counter()
        result = bozkurt2021.run_sweep(spec, split, cache=store)
        wall = time.perf_counter() - wall
    iterations = result["iterations"]
    per_iteration = result["train_seconds"] / iterations
    return {
        "split": "random (CV 82k/82k)",
        "num_train": result["num_train"],
        "architecture": "mlp1",
        "betas": len(spec.betas),
        "precision": spec.precision,
        "epochs": result["epochs"],
        "iterations": iterations,
        "train_seconds": result["train_seconds"],
        "wall_seconds_with_evaluation": wall,
        "data_seconds": data_seconds,
        "steps_per_s": iterations / result["train_seconds"],
        "seconds_per_1000_iterations": 1000 * per_iteration,
        "hours_for_paper_257k_iterations_one_sweep": bozkurt2021.PAPER_ITERATIONS * per_iteration / 3600,
        "test_elbo": result["test"]["elbo"],
        "train_elbo": result["train"]["elbo"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run of this script)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results-gpu.json"))
    parser.add_argument("--slice-seconds", type=float, default=60.0)
    parser.add_argument("--device", default=None, help="default: CUDA; 'cpu' only for a smoke run of this script")
    args = parser.parse_args()
    device = vdevice.resolve(args.device)
    if device.type != "cuda" and args.device is None:
        print(f"[gpu_check] no CUDA device (resolved {device}); this script measures a GPU", flush=True)
        return 2
    vdevice.use(device)  # the slice trains through the library's default device
    quick = args.quick
    scale = 0.2 if quick else 1.0
    steps = lambda count: max(3, int(count * scale))  # noqa: E731
    results: dict = {"device": vdevice.provenance(device), "quick": quick}
    started = time.perf_counter()

    stage(results, "ceilings_start", lambda: workloads.ceilings(device, quick=quick))
    measured: list[workloads.Workload] = []

    def run_workloads() -> list[str]:
        mlp = lambda name, description, build, batch, count, **options: measured.append(  # noqa: E731
            workloads.bracketed(lambda: workloads.training_workload(
                name, description, build, batch=batch, steps=steps(count), device=device, **options), device)
        )
        for precision in ("float32", "bfloat16"):
            mlp(f"paper_c_sweep_step_{precision}", f"paper C 12-β sweep, 1-layer MLP (512), batch 128, {precision}",
                workloads.paper_c_sweep(1), 128, 300, precision=precision, beta=workloads.PAPER_C_BETAS)
        mlp("paper_c_sweep_step_3layer_bfloat16", "paper C 12-β sweep, 3-layer MLP (512), batch 128, bfloat16",
            workloads.paper_c_sweep(3), 128, 200, precision="bfloat16", beta=workloads.PAPER_C_BETAS)
        mlp("paper_b_ensemble", "paper B MLP (3 hidden layers of 500), 3 seeds stacked, batch 100",
            workloads.stacked(models.zhang2022_mlp(num_hidden_layers=3), 3), 100, 400)
        mlp("paper_a_mlp", "paper A MLP (1024-512-512-16), 3 seeds stacked, batch 100",
            workloads.stacked(models.xiao2024_mlp(), 3), 100, 400)
        mlp("engine_seed001", "zhang2022 MLP (784-500-500-10, Bernoulli), batch 100",
            lambda: models.build_model(models.zhang2022_mlp(), seed=0), 100, 400)
        for measure in (
            lambda: workloads.unet_train_workload(device, batch=128, steps=steps(60), precision="bfloat16"),
            lambda: workloads.unet_sampler_workload(device, batch=250, steps=20, precision="bfloat16"),
            lambda: workloads.iwae_workload(device, points=1000, num_samples=1000),
        ):
            measured.append(workloads.bracketed(measure, device))
        return [workload.name for workload in measured]

    stage(results, "workload_names", run_workloads)
    stage(results, "ensemble_vs_sequential", lambda: workloads.ensemble_vs_sequential(device, steps=steps(100)))
    stage(results, "compile", lambda: compile_on_off(device, steps=steps(200)))
    stage(results, "bf16_vs_float32", lambda: bf16_agreement(device, steps=steps(400)))
    stage(results, "ceilings_end", lambda: workloads.ceilings(device, quick=quick))
    if "ceilings_start" in results and "ceilings_end" in results:
        ceilings = workloads.combine_ceilings(results.pop("ceilings_start"), results.pop("ceilings_end"))
        results["ceilings"] = ceilings
        results["workloads"] = {workload.name: workload.roofline(ceilings) for workload in measured}
    sweep = results.get("workloads", {}).get("paper_c_sweep_step_bfloat16", {})
    estimate = sweep.get("steps_per_s", 100.0)
    stage(results, "paper_c_slice", lambda: paper_c_slice(args.slice_seconds * (0.25 if quick else 1.0), estimate))
    results["wall_s"] = time.perf_counter() - started
    io.atomic_write_json(args.output, results)

    print()
    print(f"device: {results['device'].get('device_name')} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    if "ceilings" in results:
        gemm = results["ceilings"]["gemm_flops_per_s"]
        print(f"ceilings: GEMM fp32 {gemm['float32'] / 1e12:.1f} TFLOP/s, bf16 {gemm['bfloat16'] / 1e12:.1f} TFLOP/s, "
              f"memory {results['ceilings']['memory_bytes_per_s'] / 1e12:.2f} TB/s")
        print(f"{'workload':<36}{'steps/s':>10}{'bound':>8}{'fraction':>10}")
        for name, row in results["workloads"].items():
            print(f"{name:<36}{row['steps_per_s']:>10.1f}{row['bound']:>8}{row['fraction_of_bound']:>10.3f}")
    for name in ("ensemble_vs_sequential", "compile", "bf16_vs_float32", "paper_c_slice"):
        if name in results:
            print(f"{name}: {json.dumps(results[name], default=str)[:400]}")
    if results.get("errors"):
        print(f"FAILED parts: {sorted(results['errors'])}")
    print(f"wrote {args.output} ({results['wall_s']:.0f} s)")
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
