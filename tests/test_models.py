"""Tests of vaegen_utils.models: shapes, presets, seeding, parameter split, save/load, validation."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from vaegen_utils import models
from vaegen_utils.likelihoods import LIKELIHOODS
from vaegen_utils.models import (
    ConvVAE,
    ConvVAEConfig,
    MLPVAE,
    MLPVAEConfig,
    ResidualConvVAE,
    ResidualConvVAEConfig,
    build_model,
    config_from_dict,
)

FAMILY_CLASSES = {"mlp": MLPVAE, "conv": ConvVAE, "residual_conv": ResidualConvVAE}

HAS_MOL = models.MIXTURE_OF_LOGISTICS in LIKELIHOODS
LIKELIHOOD_OPTIONS = {
    "bernoulli": {},
    "fixed_variance_gaussian": {"sigma": 0.1},
    "discretized_logistic": {},
    models.MIXTURE_OF_LOGISTICS: {"n_components": 3},
}
LIKELIHOOD_NAMES = [name for name in LIKELIHOOD_OPTIONS if name in LIKELIHOODS]


def small_config(family: str, data_shape=(3, 32, 32), likelihood="bernoulli", **overrides):
    """Small, fast configs of each family (the architecture, not the paper's width)."""
    options = LIKELIHOOD_OPTIONS[likelihood]
    if family == "mlp":
        fields = dict(data_shape=data_shape, latent_dim=6, hidden_sizes=(24, 16))
        cls = MLPVAEConfig
    elif family == "conv":
        fields = dict(data_shape=data_shape, latent_dim=6, channels=8, num_layers=3)
        cls = ConvVAEConfig
    else:
        fields = dict(data_shape=data_shape, channels=8, latent_channels=2)
        cls = ResidualConvVAEConfig
    fields.update(likelihood=likelihood, likelihood_options=options)
    fields.update(overrides)
    return cls(**fields)


def make_data(likelihood: str, shape, generator: torch.Generator) -> torch.Tensor:
    if likelihood == "bernoulli":
        return torch.rand(shape, generator=generator).round()
    return torch.randint(0, 256, shape, generator=generator).float() / 255.0


FAMILY_SHAPES = [
    ("mlp", (1, 28, 28)),
    ("mlp", (1, 32, 32)),
    ("mlp", (3, 32, 32)),
    ("conv", (3, 32, 32)),
    ("conv", (1, 32, 32)),
    ("residual_conv", (3, 32, 32)),
]


@pytest.mark.parametrize("likelihood", LIKELIHOOD_NAMES)
@pytest.mark.parametrize("family,data_shape", FAMILY_SHAPES)
def test_interface_shapes(family, data_shape, likelihood):
    if likelihood == models.MIXTURE_OF_LOGISTICS and data_shape[0] not in (1, 3):
        pytest.skip("mixture of logistics is defined for 1 or 3 channels")
    config = small_config(family, data_shape, likelihood)
    model = build_model(config, seed=0).eval()
    assert type(model) is FAMILY_CLASSES[family]
    generator = torch.Generator().manual_seed(1)
    batch = 3
    x = make_data(likelihood, (batch, *data_shape), generator)
    latent_dim = model.latent_dim
    assert model.data_shape == tuple(data_shape)
    assert model.config is config
    assert model.likelihood.name == likelihood

    mean, log_std = model.encode(x)
    assert mean.shape == (batch, latent_dim) and log_std.shape == (batch, latent_dim)
    assert torch.isfinite(mean).all() and torch.isfinite(log_std).all()

    params = model.decode(mean)
    assert params.shape == (batch, *model.likelihood.param_shape)

    z = torch.randn(4, batch, latent_dim, generator=generator)  # (S, B, Z)
    log_likelihood = model.log_likelihood(x, z)
    assert log_likelihood.shape == (4, batch)
    assert torch.isfinite(log_likelihood).all()
    if likelihood != "fixed_variance_gaussian":  # densities of discrete data are probabilities
        assert (log_likelihood <= 1e-4).all()

    samples = model.sample(5, generator=generator)
    assert samples.shape == (5, *data_shape)
    if likelihood != "fixed_variance_gaussian":
        assert samples.min() >= 0.0 and samples.max() <= 1.0
    latents, samples = model.sample_with_latents(2, generator=generator)
    assert latents.shape == (2, latent_dim) and samples.shape == (2, *data_shape)
    reconstruction = model.reconstruct(x)
    assert reconstruction.shape == x.shape
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", ["mlp", "conv", "residual_conv"])
def test_decode_accepts_any_leading_dims(family):
    model = build_model(small_config(family, likelihood="discretized_logistic"), seed=0).eval()
    z = torch.randn(2, 3, 4, model.latent_dim, generator=torch.Generator().manual_seed(0))
    params = model.decode(z)
    assert params.shape == (2, 3, 4, *model.likelihood.param_shape)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(params[i, j], model.decode(z[i, j]), rtol=1e-5, atol=1e-5)
    # a single latent vector without batch dims
    assert model.decode(z[0, 0, 0]).shape == model.likelihood.param_shape


@pytest.mark.parametrize("family", ["mlp", "conv", "residual_conv"])
def test_log_likelihood_broadcasts_samples_against_batch(family):
    model = build_model(small_config(family), seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    x = make_data("bernoulli", (3, 3, 32, 32), generator)
    z = torch.randn(2, 3, model.latent_dim, generator=generator)
    values = model.log_likelihood(x, z)
    for s in range(2):
        expected = model.likelihood.log_prob(x, model.decode(z[s]))
        torch.testing.assert_close(values[s], expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", ["mlp", "conv", "residual_conv"])
def test_encoder_decoder_parameters_are_disjoint_and_complete(family):
    model = build_model(small_config(family), seed=0)
    encoder = {id(p) for p in model.encoder_parameters()}
    decoder = {id(p) for p in model.decoder_parameters()}
    everything = {id(p) for p in model.parameters()}
    assert encoder and decoder
    assert not encoder & decoder
    assert encoder | decoder == everything
    assert isinstance(model.encoder_parameters(), list)


def test_encoder_parameters_only_affect_encode():
    model = build_model(small_config("mlp"), seed=0)
    x = make_data("bernoulli", (2, 3, 32, 32), torch.Generator().manual_seed(0))
    mean, log_std = model.encode(x)
    (mean.sum() + log_std.sum()).backward()
    assert all(p.grad is not None for p in model.encoder_parameters())
    assert all(p.grad is None for p in model.decoder_parameters())


@pytest.mark.parametrize("family", ["mlp", "conv", "residual_conv"])
def test_same_seed_same_weights_and_global_rng_untouched(family):
    config = small_config(family)
    state_before = torch.random.get_rng_state()
    first, second, other = build_model(config, seed=7), build_model(config, seed=7), build_model(config, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state_before)
    for (name, a), (_, b), (_, c) in zip(first.state_dict().items(), second.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name
    random_init = [(name, a, c) for (name, a), (_, c) in zip(first.named_parameters(), other.named_parameters())
                   if a.dim() > 1]  # BatchNorm scales/shifts start at 1/0 whatever the seed
    assert random_init and all(not torch.equal(a, c) for _, a, c in random_init)


def test_build_model_accepts_config_dict():
    config = small_config("conv")
    model = build_model(config.to_dict(), seed=3)
    assert isinstance(model, ConvVAE) and model.config == config


@pytest.mark.parametrize("family", ["mlp", "conv", "residual_conv"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, family):
    model = build_model(small_config(family, likelihood="discretized_logistic"), seed=0)
    x = make_data("discretized_logistic", (4, 3, 32, 32), torch.Generator().manual_seed(0))
    with torch.no_grad():  # in train mode: moves BatchNorm running statistics away from their init
        model.decode(model.encode(x)[0])
    model.eval()
    folder = models.save(model, tmp_path / "model")
    assert (folder / "config.json").is_file() and (folder / "weights.pt").is_file()
    saved = json.loads((folder / "config.json").read_text())
    assert saved["config"]["family"] == family
    assert saved["likelihood_config"]["name"] == "discretized_logistic"

    loaded = models.load(folder).eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    z = torch.randn(2, 4, model.latent_dim, generator=torch.Generator().manual_seed(1))
    for original, reloaded in zip(model.encode(x), loaded.encode(x)):
        assert torch.equal(original, reloaded)
    assert torch.equal(model.log_likelihood(x, z), loaded.log_likelihood(x, z))


def test_load_rejects_config_that_does_not_match_weights(tmp_path):
    folder = models.save(build_model(small_config("mlp"), seed=0), tmp_path / "model")
    payload = json.loads((folder / "config.json").read_text())
    payload["config"]["hidden_sizes"] = [32, 16]
    del payload["weights_sha256"]  # as if written by hand: only the shapes can tell
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="does not describe the weights") as error:
        models.load(folder)
    assert str(folder) in str(error.value) and "delete" in str(error.value)


def test_load_detects_weights_from_another_save(tmp_path):
    first = models.save(build_model(small_config("mlp"), seed=0), tmp_path / "a")
    second = models.save(build_model(small_config("mlp"), seed=1), tmp_path / "b")
    (first / "weights.pt").write_bytes((second / "weights.pt").read_bytes())
    with pytest.raises(ValueError, match="SHA-256") as error:
        models.load(first)
    assert str(first) in str(error.value)


def test_load_missing_or_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.load(tmp_path / "nothing")
    folder = models.save(build_model(small_config("mlp"), seed=0), tmp_path / "model")
    weights = (folder / "weights.pt").read_bytes()

    (folder / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights.pt is missing"):
        models.load(folder)

    (folder / "weights.pt").write_bytes(weights[: len(weights) // 2])
    payload = json.loads((folder / "config.json").read_text())
    del payload["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="cannot be read") as error:
        models.load(folder)
    assert str(folder) in str(error.value)

    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        models.load(folder)

    (folder / "config.json").write_text(json.dumps({"format": "vaegen_utils.models", "kind": "vae",
                                                    "config": {"family": "mlp", "latent_dim": -1}}))
    with pytest.raises(ValueError, match="latent_dim") as error:
        models.load(folder)
    assert str(folder) in str(error.value)


def test_config_dict_round_trip_is_json():
    for config in [small_config("mlp", likelihood="fixed_variance_gaussian"), small_config("conv"),
                   small_config("residual_conv", residual_kernel_sizes=(3, 3)), models.zhang2022_mlp()]:
        data = json.loads(json.dumps(config.to_dict()))
        assert config_from_dict(data) == config
        assert data["family"] == config.family
    with pytest.raises(ValueError, match="unknown model family"):
        config_from_dict({"family": "transformer"})
    with pytest.raises(ValueError, match="no field"):
        config_from_dict({"family": "mlp", "depth": 3})
    with pytest.raises(ValueError, match="'family' key"):
        config_from_dict({"latent_dim": 3})


@pytest.mark.parametrize(
    "cls,overrides,message",
    [
        (MLPVAEConfig, {"latent_dim": 0}, "latent_dim must be an integer"),
        (MLPVAEConfig, {"latent_dim": 2.5}, "latent_dim must be an integer"),
        (MLPVAEConfig, {"hidden_sizes": (512, -1)}, r"hidden_sizes\[1\] must be an integer >= 1"),
        (MLPVAEConfig, {"hidden_sizes": ()}, r"hidden_sizes needs at least 1 value"),
        (MLPVAEConfig, {"hidden_sizes": 512}, "hidden_sizes must be a list"),
        (MLPVAEConfig, {"data_shape": (1, 0, 28)}, r"data_shape\[1\] must be an integer >= 1"),
        (MLPVAEConfig, {"likelihood": "gaussian"}, "unknown likelihood 'gaussian'; choose one of"),
        (MLPVAEConfig, {"likelihood": "bernoulli", "likelihood_options": {"sigma": 1.0}}, "does not accept likelihood_options"),
        (MLPVAEConfig, {"likelihood": "fixed_variance_gaussian", "likelihood_options": {"sigma": -1.0}}, "sigma must be positive"),
        (MLPVAEConfig, {"likelihood_options": {"x": float("nan")}}, "plain JSON values"),
        (MLPVAEConfig, {"activation": "gelu2"}, "unknown activation 'gelu2'"),
        (MLPVAEConfig, {"encoder_std": "sigmoid"}, "unknown encoder_std"),
        (MLPVAEConfig, {"softplus_min_std": -1e-3}, "softplus_min_std"),
        (ConvVAEConfig, {"data_shape": (784,)}, r"\(channels, height, width\)"),
        (ConvVAEConfig, {"data_shape": (1, 28, 28), "num_layers": 3}, "not divisible by stride"),
        (ConvVAEConfig, {"kernel_size": 3, "stride": 2}, "kernel_size - stride must be even"),
        (ConvVAEConfig, {"channels": 0}, "channels must be an integer >= 1"),
        (ResidualConvVAEConfig, {"data_shape": (3, 30, 30)}, "divisible by 4"),
        (ResidualConvVAEConfig, {"residual_kernel_sizes": (3, 2)}, "two odd kernel sizes"),
        (ResidualConvVAEConfig, {"residual_skip": "none"}, "unknown residual_skip"),
        (ResidualConvVAEConfig, {"latent_channels": 0}, "latent_channels must be an integer >= 1"),
    ],
)
def test_config_validation_errors(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**overrides)


def test_configs_are_frozen_and_copy_their_options():
    options = {"sigma": 0.2}
    config = MLPVAEConfig(likelihood="fixed_variance_gaussian", likelihood_options=options)
    options["sigma"] = 5.0
    assert config.likelihood_options == {"sigma": 0.2}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 3
    assert dataclasses.replace(config, latent_dim=3).latent_dim == 3
    assert MLPVAEConfig(hidden_sizes=[8, 4]).hidden_sizes == (8, 4)


def test_bad_inputs_raise_actionable_errors():
    model = build_model(small_config("mlp", data_shape=(1, 28, 28)), seed=0)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*got \(2, 1, 32, 32\)"):
        model.encode(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="x.float\\(\\) / 255"):
        model.encode(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="MLPVAEConfig"):
        ConvVAE(small_config("mlp"))


def test_presets_match_the_papers():
    # Paper B (official code): 784 -> 500 -> 500 -> (10, 10); decoder 10 -> 500 -> 500 -> 784.
    model = build_model(models.zhang2022_mlp(), seed=0)
    assert [(l.in_features, l.out_features) for l in [*model.encoder.hidden, model.encoder.head]] == [(784, 500), (500, 500), (500, 20)]
    assert [(l.in_features, l.out_features) for l in [*model.decoder.hidden, model.decoder.output]] == [(10, 500), (500, 500), (500, 784)]
    assert models.zhang2022_mlp(num_hidden_layers=3).hidden_sizes == (500, 500, 500)
    assert models.zhang2022_mlp("discretized_logistic").build_likelihood().param_shape == (2, 1, 28, 28)
    # Paper A (App. B.1): 1024 -> 512 -> 512 -> 16 and mirrored.
    model = build_model(models.xiao2024_mlp(), seed=0)
    assert [(l.in_features, l.out_features) for l in [*model.encoder.hidden, model.encoder.head]] == [(1024, 512), (512, 512), (512, 32)]
    assert [(l.in_features, l.out_features) for l in [*model.decoder.hidden, model.decoder.output]] == [(16, 512), (512, 512), (512, 1024)]
    # Paper C (Sec. 4.3): 3072 -> 512 (x1 or x3) -> 10, Bernoulli; CNN 64 channels k4 s2.
    for layers in (1, 3):
        config = models.bozkurt2021_mlp(layers)
        assert config.hidden_sizes == (512,) * layers and config.latent_dim == 10 and config.data_shape == (3, 32, 32)
        cnn = models.bozkurt2021_cnn(layers)
        assert cnn.bottleneck_shape == (64, 32 // 2**layers, 32 // 2**layers)
    cnn = build_model(models.bozkurt2021_cnn(3), seed=0)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in cnn.encoder.convs] == [
        (3, 64, (4, 4), (2, 2), (1, 1)), (64, 64, (4, 4), (2, 2), (1, 1)), (64, 64, (4, 4), (2, 2), (1, 1))]
    assert cnn.decoder.deconvs[-1].out_channels == 3
    # Residual nets: latent on 8x8, d_z = 64 m_z.
    assert models.zhang2022_resnet(4).latent_dim == 256
    assert models.zhang2022_resnet().residual_kernel_sizes == (3, 1)
    if HAS_MOL:
        config = models.xiao2024_resnet()
        assert config.latent_dim == 64 and config.channels == 256 and config.residual_kernel_sizes == (3, 3)
    for name, preset in models.PRESETS.items():
        if name == "xiao2024_resnet" and not HAS_MOL:
            continue
        assert preset().to_dict()["family"] in models.MODEL_CLASSES


def test_paper_size_residual_net_runs_at_cifar_shape():
    likelihood = models.MIXTURE_OF_LOGISTICS if HAS_MOL else "discretized_logistic"
    config = models.xiao2024_resnet(likelihood=likelihood) if HAS_MOL else models.zhang2022_resnet(1, likelihood=likelihood)
    model = build_model(config, seed=0).eval()
    x = make_data(likelihood, (2, 3, 32, 32), torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean, log_std = model.encode(x)
        assert mean.shape == (2, 64)
        assert model.decode(mean).shape == (2, *model.likelihood.param_shape)
        assert torch.isfinite(model.log_likelihood(x, mean.unsqueeze(0))).all()
    encoder_convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert encoder_convs[0].kernel_size == (4, 4) and encoder_convs[0].bias is None
    assert encoder_convs[-1].out_channels == 2 and encoder_convs[-1].kernel_size == (1, 1)
    transposed = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(transposed) == 2 and all(t.stride == (2, 2) for t in transposed)


def test_residual_latent_is_the_flattened_map():
    model = build_model(small_config("residual_conv"), seed=0).eval()
    x = make_data("bernoulli", (2, 3, 32, 32), torch.Generator().manual_seed(0))
    mean, log_std = model.encode(x)
    maps = model.encoder(x)  # (B, 2 m_z, 8, 8)
    assert model.latent_shape == (2, 8, 8) and model.latent_dim == 128
    torch.testing.assert_close(mean, maps[:, :2].flatten(1))
    torch.testing.assert_close(log_std, torch.log(F.softplus(maps[:, 2:].flatten(1)) + 1e-6))


def test_residual_block_skip_variants():
    block = models.ResidualBlock(4, (3, 3), skip="relu_input").eval()
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(block(x), F.relu(x) + block.block(x))
    block.skip_from_relu = False
    torch.testing.assert_close(block(x), x + block.block(x))
    assert block.block[4].kernel_size == (3, 3)


def test_std_parameterisations():
    raw = torch.tensor([-200.0, -30.0, -10.0, 0.0, 5.0, 50.0], requires_grad=True)
    reference = torch.log(F.softplus(raw.detach().double()))
    stable = models.log_softplus(raw)
    torch.testing.assert_close(stable.double(), reference, rtol=1e-6, atol=1e-6)
    stable.sum().backward()
    assert torch.isfinite(raw.grad).all()
    floored = models.encoder_log_std(raw, "softplus", 1e-6)
    assert floored.min() >= math.log(1e-6) - 1e-6
    assert torch.equal(models.encoder_log_std(raw, "exp", 1e-6), raw)
    # "exp" models return the head output as log sigma
    model = build_model(small_config("mlp", encoder_std="exp"), seed=0)
    x = make_data("bernoulli", (2, 3, 32, 32), torch.Generator().manual_seed(0))
    _, log_std = model.encode(x)
    torch.testing.assert_close(log_std, model.encoder(x.flatten(1))[:, 6:])
