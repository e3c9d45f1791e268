"""Checks that need a real CUDA GPU (marker `cuda`: skipped without one; benchmarks/gpu_check.sh runs them).

Each compares a GPU run with the same call on the CPU: the random streams must be identical (the
draws come from CPU generators), the numbers equal up to arithmetic, and nothing may come back on
the device where the CPU is promised. Tolerances: float32 GPU vs CPU results agree to ~1e-5
relative per operation (other kernels and reduction orders; TF32 is off by default), a few
training steps to 1e-4; bf16 autocast to a few 1e-2.
"""

from __future__ import annotations

import pytest
import torch

from vaegen_utils import cache, diffusion, estimators, models, robustness, training
from vaegen_utils import device as vdevice
from vaegen_utils.ensemble import EnsembleMLPVAE
from vaegen_utils.seeding import make_generator

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def config(side: int = 8) -> models.MLPVAEConfig:
    return models.MLPVAEConfig(data_shape=(1, side, side), latent_dim=2, hidden_sizes=(32,), likelihood="bernoulli")


def images(count: int = 128, side: int = 8) -> torch.Tensor:
    return (torch.rand((count, 1, side, side), generator=torch.Generator().manual_seed(0)) < 0.4).float()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def test_resolve_defaults_to_cuda_and_sets_the_tf32_policy(monkeypatch):
    monkeypatch.delenv(vdevice.ENV_DEVICE, raising=False)
    monkeypatch.delenv(vdevice.ENV_TF32, raising=False)
    assert vdevice.resolve().type == "cuda"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    record = vdevice.provenance()
    assert record["device"].startswith("cuda") and record["device_name"] and record["cuda"]


def test_noise_is_the_cpu_stream_on_the_gpu():
    cpu = vdevice.randn((4, 3), generator=make_generator(7))
    gpu = vdevice.randn((4, 3), generator=make_generator(7), device=CUDA)
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    mean = torch.zeros((4, 3), device=CUDA)
    assert torch.equal(estimators.reparameterize(mean, mean, generator=make_generator(7)).cpu(), cpu)


@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-4), ("bfloat16", 5e-2)])
def test_training_on_the_gpu_matches_the_cpu(precision, tolerance):
    data = images()
    run = {}
    for name, where in (("cpu", "cpu"), ("gpu", CUDA)):
        model = models.build_model(config(), seed=0).to(where)
        result = training.train(
            model, data, training.TrainConfig(epochs=2, batch_size=32, precision=precision), eval_sets={"t": data[:64]}
        )
        run[name] = result
    assert all(parameter.is_cuda for parameter in run["gpu"].model.parameters())
    assert run["gpu"].provenance[0]["device"].startswith("cuda")
    errors = [relative_error(a, b) for a, b in zip(run["gpu"].model.parameters(), run["cpu"].model.parameters())]
    assert max(errors) < tolerance, errors
    assert run["gpu"].history[-1]["elbo"] == pytest.approx(run["cpu"].history[-1]["elbo"], rel=tolerance)


def test_ensemble_sweep_on_the_gpu_matches_its_members():
    data = images()
    members = [models.build_model(config(), seed=s) for s in range(3)]
    ensemble = EnsembleMLPVAE.from_members(members).to(CUDA)
    training.train(ensemble, data, training.TrainConfig(epochs=1, batch_size=32, beta=[0.5, 1.0, 2.0], member_seeds=[1, 2, 3]))
    for index, (member, beta, seed) in enumerate(zip(members, [0.5, 1.0, 2.0], [1, 2, 3])):
        single = member.to(CUDA)
        training.train(single, data, training.TrainConfig(epochs=1, batch_size=32, beta=beta, member_seeds=[seed]))
        stacked = ensemble.member(index)
        errors = [relative_error(a, b) for a, b in zip(stacked.parameters(), single.parameters())]
        assert max(errors) < 1e-4, (index, errors)


def test_deferred_nan_guard_on_the_gpu_names_the_step_and_keeps_good_weights(monkeypatch):
    monkeypatch.delenv(vdevice.ENV_SYNC_EVERY, raising=False)
    data = images(64)
    source = lambda epoch: data if epoch == 1 else data * float("nan")  # noqa: E731 - 2 steps per epoch
    model = models.build_model(config(), seed=0).to(CUDA)
    with pytest.raises(training.NonFiniteLossError, match=r"epoch 2, step 3"):
        training.train(model, data, training.TrainConfig(epochs=4, batch_size=32), data_source=source)
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())


def test_staged_data_is_uint8_on_the_gpu_and_batches_are_bitwise():
    greys = torch.randint(0, 256, (50, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float().div_(255.0)
    staged = vdevice.stage_images(greys, CUDA)
    assert staged.stored.dtype == torch.uint8 and staged.stored.is_cuda
    index = torch.tensor([4, 1, 1, 9], device=CUDA)
    assert torch.equal(staged.batch(index).cpu(), greys[index.cpu()])


def test_cache_fingerprint_and_results_are_device_independent(tmp_path):
    data = images()
    assert cache.data_fingerprint(data.to(CUDA)) == cache.data_fingerprint(data)
    store = cache.RunCache(tmp_path)
    first = store.cached_result("r", {"a": 1}, lambda: {"x": torch.arange(3.0, device=CUDA)})
    second = store.cached_result("r", {"a": 1}, lambda: {"x": torch.arange(3.0, device=CUDA)})
    assert first["x"].device.type == "cpu" and second["x"].device.type == "cpu"


def test_estimators_and_attack_on_the_gpu_match_the_cpu():
    data = images(16, side=16)
    cpu_model = models.build_model(config(16), seed=0).eval()
    gpu_model = models.build_model(config(16), seed=0).to(CUDA).eval()
    iwae = [estimators.iwae_bound(m, data, 50, generator=make_generator(0)) for m in (cpu_model, gpu_model)]
    assert relative_error(iwae[1], iwae[0]) < 1e-5
    attacks = [robustness.encoder_attack(m, data[:4], steps=3, restarts=2, seed=0) for m in (cpu_model, gpu_model)]
    assert relative_error(attacks[1].trace, attacks[0].trace) < 1e-3
    gaps = [robustness.robustness_gap(m, data[:4], a, seed=0) for m, a in zip((cpu_model, gpu_model), attacks)]
    assert gaps[1].gap == pytest.approx(gaps[0].gap, abs=1e-3)


def test_diffusion_on_the_gpu_draws_the_cpu_noise_and_returns_cpu_samples():
    data = torch.rand((64, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    runs = {name: diffusion.train_diffusion(diffusion.tiny_config(), data, steps=3, batch_size=16, device=where)
            for name, where in (("cpu", "cpu"), ("gpu", CUDA))}
    assert runs["gpu"].losses == pytest.approx(runs["cpu"].losses, rel=1e-3)
    for sampler in diffusion.SAMPLERS:
        samples = {name: diffusion.sample(run.model, 4, sampler=sampler, steps=3, seed=1) for name, run in runs.items()}
        assert samples["gpu"].device.type == "cpu"
        assert (samples["gpu"] - samples["cpu"]).abs().max() < 1e-2
