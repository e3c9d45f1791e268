"""Device portability without a GPU (vaegen_utils.device; issue 15 part 1, issue 17 items 8 and 10).

The mistakes a CUDA run would hit (a CPU generator drawing straight onto the device, a tensor
built on the CPU and mixed with device tensors, CPU autocast on device inputs, `.numpy()` or
`.item()` on device tensors, cached results coming back on the device) are caught here by running
every code path for a step or two with its model and data on the `meta` device inside
`device.DeviceGuard`: the guard refuses ops that mix devices and generators that draw onto another
device, and meta tensors have no values, so any unplanned host read raises. The first tests show
that the guard catches each of those patterns. Genuine CUDA checks are in test_device_cuda.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from vaegen_utils import augment, cache, diffusion, estimators, likelihoods, models, results, robustness, training
from vaegen_utils import device as vdevice
from vaegen_utils.ensemble import EnsembleConvVAE, EnsembleMLPVAE
from vaegen_utils.seeding import make_generator

META = torch.device("meta")


def tiny_config(side: int = 8, **changes) -> models.MLPVAEConfig:
    settings = dict(data_shape=(1, side, side), latent_dim=2, hidden_sizes=(16,), likelihood="bernoulli")
    return models.MLPVAEConfig(**{**settings, **changes})


def binary_images(count: int = 40, side: int = 8, seed: int = 0) -> torch.Tensor:
    return (torch.rand((count, 1, side, side), generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def on_meta(model: torch.nn.Module) -> torch.nn.Module:
    return model.to(META)


# ------------------------------------------------------------------------------------------
# The guard catches the mistakes it is for
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mistake",
    [
        # reparameterisation noise drawn with a CPU generator straight onto the mean's device
        lambda: torch.randn((4, 2), generator=make_generator(0), device=META),
        # the beta tensor built on the CPU, multiplied into (M, B) device terms
        lambda: torch.ones((3, 5), device=META) * torch.tensor([0.5, 1.0, 2.0]).view(-1, 1),
        # the batch index built on the CPU, used on device data
        lambda: torch.ones((10, 3), device=META).index_select(0, torch.randperm(4)),
        # an affine matrix built on the CPU for device images
        lambda: torch.nn.functional.affine_grid(torch.eye(2, 3).repeat(2, 1, 1), [2, 1, 4, 4], align_corners=False)
        + torch.zeros((2, 4, 4, 2), device=META),
    ],
    ids=["cpu-generator-onto-device", "cpu-beta", "cpu-batch-index", "cpu-affine-matrix"],
)
def test_guard_refuses_cpu_tensors_and_generators_on_the_device(mistake):
    with vdevice.DeviceGuard(), pytest.raises(vdevice.DeviceMismatchError):
        mistake()


def test_meta_tensors_refuse_host_reads():
    with vdevice.DeviceGuard():
        values = torch.ones(3, device=META)
        with pytest.raises(TypeError, match="numpy"):
            values.numpy()
        with pytest.raises(RuntimeError):
            float(values.sum())


def test_guard_allows_explicit_transfers_and_cpu_scalars():
    with vdevice.DeviceGuard():
        values = torch.ones(3, device=META)
        moved = torch.arange(3.0).to(META)
        scaled = values * torch.tensor(2.0) + moved  # 0-dim CPU tensors are fine on CUDA too
        assert scaled.device == META
        noise = vdevice.randn((3,), generator=make_generator(0), device=META)
        assert noise.device == META and noise.shape == (3,)


def test_autocast_follows_the_device_type():
    assert vdevice.autocast(torch.device("cpu"), True).device == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": the object is still built for CUDA
        assert vdevice.autocast(torch.device("cuda"), True).device == "cuda"
    assert not hasattr(vdevice.autocast(META, True), "device")  # no autocast on meta: a plain context
    assert not hasattr(vdevice.autocast(torch.device("cpu"), False), "device")


# ------------------------------------------------------------------------------------------
# Every code path for a step or two on meta, under the guard
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_training_and_evaluation_stay_on_the_device(precision):
    images = binary_images()
    with vdevice.DeviceGuard():
        model = on_meta(models.build_model(tiny_config(), seed=0))
        result = training.train(
            model, images, training.TrainConfig(epochs=1, batch_size=16, precision=precision), eval_sets={"t": images[:10]}
        )
    assert all(parameter.is_meta for parameter in result.model.parameters())
    assert result.history[-1]["step"] == 3 and result.provenance[0]["device"] == "meta"


def test_ensemble_sweeps_stay_on_the_device():
    with vdevice.DeviceGuard():
        ensemble = on_meta(EnsembleMLPVAE.from_members([models.build_model(tiny_config(), seed=s) for s in range(3)]))
        training.train(ensemble, binary_images(), training.TrainConfig(epochs=1, batch_size=16, beta=[0.5, 1.0, 2.0]))
        ensemble.sample(2, generator=make_generator(0))
        conv = models.bozkurt2021_cnn(num_layers=1, data_shape=(3, 32, 32))
        conv_ensemble = on_meta(EnsembleConvVAE.from_members([models.build_model(conv, seed=s) for s in range(2)]))
        images = (torch.rand((8, 3, 32, 32)) < 0.5).float()
        training.train(conv_ensemble, images, training.TrainConfig(epochs=1, batch_size=4, beta=[0.5, 1.0]))


def test_batch_transforms_and_data_sources_stay_on_the_device():
    images = binary_images()
    with vdevice.DeviceGuard():
        model = on_meta(models.build_model(tiny_config(), seed=0))
        training.train(
            model, images, training.TrainConfig(epochs=2, batch_size=16),
            batch_transform=augment.aug_tuned("mnist", p=0.9), data_source=lambda epoch: images.flip(0),
        )
        training.retrain_encoder(model, images, epochs=1, batch_size=16, batch_transform=training.model_sample_mixture(model))
        colour = torch.rand((6, 3, 8, 8), device=META)
        augment.aug_tuned("cifar10", p=0.9)(colour, make_generator(0))  # hue/saturation matrices


def test_estimators_stay_on_the_device():
    images = binary_images()
    with vdevice.DeviceGuard():
        model = on_meta(models.build_model(tiny_config(), seed=0))
        estimators.iwae_bound(model, images[:5], 10, generator=make_generator(0))
        estimators.gaussian_elbo(model, images[:5], *model.encode(images[:5].to(META)), num_samples=4)
        estimators.amortization_gap(model, images[:5], eval_samples=4, max_steps=2, num_samples=3, generator=make_generator(0))
        mean, log_std = estimators.encode_dataset(model, images)
        minibatch = estimators.rate_decomposition_minibatch(mean, log_std, batch_size=8, generator=make_generator(1))
        full = estimators.rate_decomposition_full(mean, log_std, max_queries=7, generator=make_generator(1))
        assert set(minibatch.to_dict()) == set(full.to_dict())
        model.sample(3, generator=make_generator(0))


@pytest.mark.parametrize(
    "likelihood",
    [
        likelihoods.Bernoulli((1, 4, 4)),
        likelihoods.DiscretizedLogistic((3, 4, 4), channel_coefficients=True),
        likelihoods.DiscretizedMixtureOfLogistics((3, 4, 4), n_components=2, uniform_weight=0.1),
        likelihoods.FixedVarianceGaussian((1, 4, 4), 0.1),
    ],
    ids=lambda likelihood: type(likelihood).__name__,
)
def test_likelihood_samples_stay_on_the_device(likelihood):
    with vdevice.DeviceGuard():
        sample = likelihood.sample(torch.zeros((2, *likelihood.param_shape), device=META), generator=make_generator(0))
    assert sample.is_meta


def test_attack_and_ms_ssim_stay_on_the_device():
    x = torch.rand((3, 1, 16, 16))
    with vdevice.DeviceGuard():
        model = on_meta(models.build_model(tiny_config(16), seed=0))
        attack = robustness.encoder_attack(model, x, steps=2, restarts=2, seed=0)
        gap = robustness.robustness_gap(model, x, attack, window_size=3)
    assert attack.trace.is_meta and attack.max_abs_epsilon.shape == (3,)
    assert isinstance(gap.gap, float)


def test_diffusion_training_and_samplers_stay_on_the_device():
    with vdevice.DeviceGuard():
        run = diffusion.train_diffusion(diffusion.tiny_config(), torch.rand((20, 1, 8, 8)), steps=2, batch_size=8, device="meta")
        assert all(parameter.is_meta for parameter in run.model.parameters())
        for sampler in diffusion.SAMPLERS:
            images = diffusion.sample(run.model, 2, sampler=sampler, steps=2)
            assert images.device.type == "cpu" and images.shape == (2, 1, 8, 8)  # samples come back like data


def test_cached_results_come_back_on_the_cpu_every_time(tmp_path):
    store = cache.RunCache(tmp_path)
    compute = lambda: {"values": torch.ones(3, device=META), "pair": (torch.ones(2, device=META), 1)}  # noqa: E731
    first = store.cached_result("r", {"a": 1}, compute)
    second = store.cached_result("r", {"a": 1}, compute)
    for value in (first, second):
        assert value["values"].device.type == "cpu" and value["pair"][0].device.type == "cpu"
    assert torch.equal(first["values"], second["values"])


# ------------------------------------------------------------------------------------------
# Portable streams: the CPU numbers are those of the plain CPU calls
# ------------------------------------------------------------------------------------------


def test_draws_are_the_cpu_generators_draws():
    assert torch.equal(vdevice.randn((5, 3), generator=make_generator(1)), torch.randn((5, 3), generator=make_generator(1)))
    assert torch.equal(vdevice.randperm(9, generator=make_generator(2)), torch.randperm(9, generator=make_generator(2)))
    assert torch.equal(
        vdevice.randint(0, 7, (4,), generator=make_generator(3)), torch.randint(0, 7, (4,), generator=make_generator(3))
    )
    probabilities = torch.rand((50, 20), generator=make_generator(4))
    sample = likelihoods.Bernoulli((20,)).sample(torch.logit(probabilities), generator=make_generator(5))
    assert torch.equal(sample, torch.bernoulli(torch.sigmoid(torch.logit(probabilities)), generator=make_generator(5)))


@pytest.mark.parametrize(
    "images, divisor",
    [
        (binary_images(), 1.0),
        (torch.randint(0, 256, (30, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float().div_(255.0), 255.0),
        (torch.rand((30, 1, 4, 4), generator=torch.Generator().manual_seed(0)), None),  # not k/255: kept as floats
    ],
    ids=["binary", "levels", "continuous"],
)
def test_staged_images_are_uint8_where_exact_and_batch_bitwise(images, divisor):
    staged = vdevice.stage_images(images, "cpu", compact=True)
    assert staged.divisor == divisor
    assert staged.stored.dtype == (torch.float32 if divisor is None else torch.uint8)
    index = torch.tensor([3, 0, 7, 7])
    assert torch.equal(staged.batch(index), images[index]) and torch.equal(staged.all(), images)
    assert vdevice.stage_images(images, "cpu").stored is images  # on the CPU: no copy, no compaction


# ------------------------------------------------------------------------------------------
# The device setting
# ------------------------------------------------------------------------------------------


def test_resolve_reads_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(vdevice.ENV_DEVICE, raising=False)
    expected_default = "cuda" if torch.cuda.is_available() else "cpu"
    assert vdevice.resolve().type == expected_default
    monkeypatch.setenv(vdevice.ENV_DEVICE, "meta")
    assert vdevice.resolve() == META and vdevice.resolve("cpu").type == "cpu"
    monkeypatch.setenv(vdevice.ENV_DEVICE, "auto")
    assert vdevice.resolve().type == expected_default
    try:
        assert vdevice.use("meta") == META and vdevice.resolve() == META
    finally:
        vdevice.use(None)
    assert vdevice.resolve().type == expected_default


def test_resolve_names_the_fix_for_bad_devices(monkeypatch):
    with pytest.raises(ValueError, match="not a torch device"):
        vdevice.resolve("gpu0")
    monkeypatch.setenv(vdevice.ENV_DEVICE, "nonsense")
    with pytest.raises(ValueError, match=r"\$VAEGEN_DEVICE 'nonsense'"):
        vdevice.resolve()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            vdevice.resolve("cuda")


def test_switches_refuse_unclear_values(monkeypatch):
    monkeypatch.setenv(vdevice.ENV_TF32, "maybe")
    with pytest.raises(ValueError, match="VAEGEN_TF32"):
        vdevice.tf32_enabled()
    monkeypatch.setenv(vdevice.ENV_SYNC_EVERY, "0")
    with pytest.raises(ValueError, match="positive integer"):
        vdevice.sync_every("cuda")


def test_provenance_names_device_threads_and_precision():
    record = vdevice.provenance("cpu")
    assert record["device"] == "cpu" and record["torch_threads"] == torch.get_num_threads()
    assert {"cuda", "cudnn", "torch", "precision", "device_name"} <= set(record)
    assert record["precision"]["float32"] == "ieee"


# ------------------------------------------------------------------------------------------
# NaN guard with deferred reads; the plausibility warning (issue 17 item 10)
# ------------------------------------------------------------------------------------------


def test_deferred_nan_guard_names_the_first_bad_step_and_keeps_the_good_weights(monkeypatch):
    """The GPU's mode on the CPU: the flag is read every 5 steps; fused Adam skips the bad steps."""
    monkeypatch.setenv(vdevice.ENV_SYNC_EVERY, "5")
    images = binary_images(64)
    poisoned = images * float("nan")
    source = lambda epoch: images if epoch == 1 else poisoned  # noqa: E731 - 4 steps per epoch
    model = models.build_model(tiny_config(), seed=0)
    with pytest.raises(training.NonFiniteLossError, match=r"epoch 2, step 5") as raised:
        training.train(model, images, training.TrainConfig(epochs=3, batch_size=16), data_source=source)
    assert raised.value.step == 5 and raised.value.member is None
    reference = models.build_model(tiny_config(), seed=0)  # one clean epoch: the weights before step 5
    training.train(reference, images, training.TrainConfig(epochs=1, batch_size=16), data_source=lambda epoch: images)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_deferred_nan_guard_names_the_ensemble_member(monkeypatch):
    monkeypatch.setenv(vdevice.ENV_SYNC_EVERY, "50")
    ensemble = EnsembleMLPVAE.from_members([models.build_model(tiny_config(), seed=s) for s in range(3)])
    with torch.no_grad():
        ensemble.decoder_parameters()[0][2].fill_(float("nan"))  # member 2 only
    with pytest.raises(training.NonFiniteLossError, match="ensemble member 2") as raised:
        training.train(ensemble, binary_images(64), training.TrainConfig(epochs=1, batch_size=16))
    assert raised.value.step == 1  # read at the epoch's end, located in the window


def test_a_diverging_loss_warns_with_step_and_terms():
    """lr 1e4 diverged to ELBO -2.8e36 without a word before; now the first implausible step is named."""
    images = binary_images(256)
    with pytest.warns(training.ImplausibleLossWarning, match=r"epoch 1, step \d+: loss=.*rate=.*distortion="):
        training.train(models.build_model(tiny_config(), seed=0), images, training.TrainConfig(epochs=2, batch_size=64, learning_rate=1e4))


def test_healthy_training_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", training.ImplausibleLossWarning)
        training.train(models.build_model(tiny_config(), seed=0), binary_images(64), training.TrainConfig(epochs=2, batch_size=16))


# ------------------------------------------------------------------------------------------
# Provenance: recorded, never part of a key (issue 17 item 8)
# ------------------------------------------------------------------------------------------


def test_run_config_records_each_session_and_reuse_on_other_threads_warns(tmp_path):
    images = binary_images(64)
    run_dir = tmp_path / "run"
    threads = torch.get_num_threads()
    training.train(models.build_model(tiny_config(), seed=0), images, training.TrainConfig(epochs=1, batch_size=16), run_dir=run_dir)
    stored = training.io.read_json(run_dir / training.RUN_CONFIG_FILE)
    assert [record["torch_threads"] for record in stored["provenance"]] == [threads]
    torch.set_num_threads(threads + 1)
    try:
        with pytest.warns(training.ProvenanceWarning, match=f"with {threads} torch threads"):
            reused = training.train(
                models.build_model(tiny_config(), seed=0), images, training.TrainConfig(epochs=1, batch_size=16), run_dir=run_dir
            )
    finally:
        torch.set_num_threads(threads)
    assert reused.resumed_from == 1 and len(reused.provenance) == 1  # a finished run is reused, not retrained


def test_cache_keys_hold_no_device_or_thread_count():
    images = binary_images(16)
    key = lambda: cache.config_key(  # noqa: E731
        cache.training_key_config(tiny_config(), training.TrainConfig(epochs=1), {"d": 1}, images, {"t": images})
    )
    before = key()
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert key() == before
    finally:
        torch.set_num_threads(threads)
    assert "device" not in cache.canonical_json(
        cache.training_key_config(tiny_config(), training.TrainConfig(epochs=1), {"d": 1}, images)
    )


def test_results_record_the_device(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(tmp_path))
    path = results.write_results(
        "vaegen_datasets", profile="smoke", seed=0, config={}, metrics={"x": 1.0}, claims=[], runtime_s=0.1
    )
    machine = results.load_results(path)["machine"]
    assert machine["device"]["torch_threads"] == machine["torch_threads"]
    assert "precision" in machine["device"]
